"""站内消息: what each kind of notice is (category, title, whether it matters enough for an SMS
fallback) and the person's message centre — list, unread counts, read/unread.

Rows are written only by ``services.notifications.notify`` (one path for every notice); this
module reads them and flips their read mark. Visibility is decided in one place,
``access_message``: a message is its recipient's alone, anyone else gets 404.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tortoise.functions import Count

from models.messages import Message, MessageCategory
from services import clock
from services.auth import Principal
from services.errors import not_found

C = MessageCategory


def flat(data: dict[str, Any]) -> dict[str, str]:
    """Callers pass WeChat's ``{"key": {"value": v}}`` or plain ``{"key": v}``; both mean v."""
    out: dict[str, str] = {}
    for k, v in data.items():
        if isinstance(v, dict) and "value" in v:
            v = v["value"]
        out[k] = str(v)
    return out


def _join(d: dict[str, str]) -> str:
    return "；".join(v for v in d.values() if v)


def _appointment(d: dict[str, str]) -> str:
    return f"{d.get('thing1', '')} {d.get('time2', '')}，办理：{d.get('thing3', '')}"


def _case(d: dict[str, str]) -> str:
    note = d.get("note", "")
    return f"{d.get('title', '')}：{d.get('status', '')}" + (f"。{note}" if note else "")


def _policy(d: dict[str, str]) -> str:
    return f"{d.get('thing1', '')}（{d.get('thing2', '')}，{d.get('time3', '')}）"


def _reply(d: dict[str, str]) -> str:
    return f"您的{d.get('thing1', '')}已答复：{d.get('thing2', '')}"


@dataclass(frozen=True)
class NoticeKind:
    category: MessageCategory
    title: str
    label: str  # what the settings page calls it
    # A notice that matters goes by SMS when WeChat can't deliver it (appointment
    # confirmation and reminder, supplement request, result ready).
    matters: bool
    render: Callable[[dict[str, str]], str] = _join


KINDS: dict[str, NoticeKind] = {
    "appointment_booked": NoticeKind(C.appointments, "预约成功", "预约成功通知", True,
                                     _appointment),
    "appointment_reminder": NoticeKind(C.appointments, "预约提醒", "预约办理提醒", True,
                                       _appointment),
    "waitlist_promoted": NoticeKind(C.appointments, "候补成功", "候补成功通知", True,
                                    _appointment),
    "case_status": NoticeKind(C.cases, "办件进度", "办件进度通知", False, _case),
    "case_supplement": NoticeKind(C.cases, "需要补正材料", "补正材料通知", True, _case),
    "case_result": NoticeKind(C.cases, "办理结果已出", "办理结果通知", True, _case),
    "helper_assigned": NoticeKind(C.cases, "帮办员已接单", "帮办员接单通知", False),
    "rating_invite": NoticeKind(C.cases, "邀请您评价", "好差评邀请", False),
    "policy_published": NoticeKind(C.policies, "政策推送", "政策推送", False, _policy),
    "feedback_reply": NoticeKind(C.complaints, "投诉建议已答复", "投诉建议答复通知", False,
                                 _reply),
    "helper_offered": NoticeKind(C.helper_offers, "新的帮办任务", "帮办任务派单通知", False),
    "on_behalf_relay": NoticeKind(C.appointments, "代办对象通知情况", "代办对象通知情况", False),
}

# What to ask for before an action (wx.requestSubscribeMessage takes at most 3 templates).
CONSENT_FOR_ACTION: dict[str, list[str]] = {
    "booking": ["appointment_booked", "appointment_reminder", "waitlist_promoted"],
    "applying": ["case_supplement", "case_result", "case_status"],
    "complaining": ["feedback_reply"],
    "rating": ["feedback_reply"],
    "helping": ["helper_offered"],
    "policies": ["policy_published"],
}


def kind_of(template: str) -> NoticeKind:
    return KINDS.get(template) or NoticeKind(C.cases, "消息通知", template, False)


# --- the centre -----------------------------------------------------------------------------


async def access_message(actor: Principal, message_id: int, *,
                         for_change: bool = False, lock: bool = False) -> Message:
    """The one visibility rule: the recipient only. Another person's id is simply absent.
    Changing one's own message needs nothing more, so ``for_change`` asks for the same."""
    q = Message.filter(id=message_id, user_id=actor.user_id)
    if lock:
        q = q.select_for_update()
    row = await q.first()
    if row is None:
        raise not_found("消息")
    return row


async def list_mine(*, actor: Principal, category: MessageCategory | None, unread: bool,
                    cursor: int | None, limit: int) -> list[Message]:
    """Newest first; ``limit + 1`` rows so the caller knows whether there is a next page."""
    q = Message.filter(user_id=actor.user_id)
    if category is not None:
        q = q.filter(category=category)
    if unread:
        q = q.filter(read_at__isnull=True)
    if cursor:
        q = q.filter(id__lt=cursor)
    return await q.order_by("-id").limit(limit + 1)


async def unread_counts(*, actor: Principal) -> dict[str, int]:
    rows = await (Message.filter(user_id=actor.user_id, read_at__isnull=True)
                  .annotate(n=Count("id")).group_by("category").values("category", "n"))
    return {str(r["category"]): int(r["n"]) for r in rows}


async def mark(*, actor: Principal, message_id: int, read: bool) -> Message:
    row = await access_message(actor, message_id, for_change=True)
    if read and row.read_at is None:
        # Conditional: the first read time stays the read time.
        await Message.filter(id=row.id, read_at__isnull=True).update(read_at=clock.now())
    elif not read and row.read_at is not None:
        await Message.filter(id=row.id).update(read_at=None)
    await row.refresh_from_db()
    return row


async def mark_all_read(*, actor: Principal, category: MessageCategory | None) -> int:
    q = Message.filter(user_id=actor.user_id, read_at__isnull=True)
    if category is not None:
        q = q.filter(category=category)
    return await q.update(read_at=clock.now())
