"""Every notice to a person goes through ``notify``: kept in their message centre, then sent.

``notify`` claims a unique ``dedup_key`` — the delivery record (``Notification``) and the
message-centre row are written in one transaction — so a retried job, a second worker or a
replayed event can't message the same user twice about the same thing, and a notice can't be
sent without being kept. It then runs ``deliver(notification_id)``:

1. WeChat subscribe message, spending the user's per-template balance (skipped: not
   subscribed / no balance / muted; failed: refused or WeChat down);
2. if that didn't reach them and the notice matters (``services.messages.KINDS``), an SMS to
   their verified phone, within ``sms_daily_limit`` a day;
3. if a community worker booked for them (``relay_to``), the worker is told what reached the
   person and what didn't.

Nothing here fails the caller: the row records why a channel didn't work. ``deliver`` takes a
stored id so an outbox dispatcher or a job can run it after commit; it claims the row
(pending -> sending) first, so running it twice sends once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from models.messages import Message, MessageCategory, SmsQuota
from models.notifications import Notification, SubscriptionBalance
from models.users import Person, User
from services import clock, messages, outbox, pii, sms
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden
from services.people import P_PHONE
from services.scope import scope_of
from services.settings import get_settings
from services.wechat import wechat

log = logging.getLogger(__name__)


def template_id(template: str) -> str:
    return get_settings().wechat_templates.get(template, template)


def template_of(tmpl_id: str) -> str | None:
    """Our name for a WeChat template id (what wx.requestSubscribeMessage answers with)."""
    for name, tid in get_settings().wechat_templates.items():
        if tid == tmpl_id:
            return name
    return None


async def record_subscription(
    *, user_id: int, template: str, accepted: bool, long_term: bool = False
) -> SubscriptionBalance:
    """What wx.requestSubscribeMessage answered: each acceptance of a one-time template is
    worth one message."""
    row, _ = await SubscriptionBalance.get_or_create(user_id=user_id, template=template)
    if accepted:
        if long_term:
            row.long_term = True
        else:
            await SubscriptionBalance.filter(id=row.id).update(balance=F("balance") + 1)
        row.muted = False
        await row.save(update_fields=["long_term", "muted", "updated_at"])
    await row.refresh_from_db()
    return row


async def set_muted(*, user_id: int, template: str, muted: bool) -> SubscriptionBalance:
    row, _ = await SubscriptionBalance.get_or_create(user_id=user_id, template=template)
    row.muted = muted
    await row.save(update_fields=["muted", "updated_at"])
    return row


async def _spend(user_id: int, template: str) -> str | None:
    """Take one message from the user's balance; return why not if we can't."""
    row = await SubscriptionBalance.get_or_none(user_id=user_id, template=template)
    if row is None:
        return "not_subscribed"
    if row.muted:
        return "muted"
    if row.long_term:
        return None
    # Conditional decrement: two senders can't both spend the last unit.
    spent = await SubscriptionBalance.filter(id=row.id, balance__gt=0).update(
        balance=F("balance") - 1
    )
    return None if spent else "no_balance"


async def notify(
    *, user_id: int, template: str, data: dict[str, Any], dedup_key: str, page: str = "",
    title: str | None = None, body: str | None = None, action_path: str = "",
    relay_to: int | None = None, category: MessageCategory | None = None,
    hall_code: str = "", department: str = "",
) -> Notification | None:
    """Keep and send once per ``dedup_key``. Returns the new record, or None if it was already
    handled. ``title``/``body``/``category`` override the centre's defaults for the template;
    ``relay_to`` is the worker to tell how the notice went. ``hall_code``/``department``: where
    the notice's business is, for scoped figures (left out: only city-wide staff count it)."""
    kind = messages.kind_of(template)
    key = dedup_key[:191]
    text = (body or kind.render(messages.flat(data)))[:500]
    try:
        async with in_transaction():
            note = await Notification.create(user_id=user_id, template=template, dedup_key=key,
                                             data=data, page=page, relay_to_id=relay_to,
                                             hall_code=hall_code[:32],
                                             department=department[:64])
            await Message.create(user_id=user_id, category=category or kind.category,
                                 template=template,
                                 title=(title or kind.title)[:64], body=text, page=page,
                                 action_path=action_path, dedup_key=key)
    except IntegrityError:
        return None
    return await deliver(note.id)


# --- delivery -------------------------------------------------------------------------------


async def deliver(notification_id: int) -> Notification:
    """WeChat, then SMS for notices that matter, then the booking worker. Runs once per row."""
    claimed = await Notification.filter(id=notification_id, status="pending").update(
        status="sending")
    note = await Notification.get(id=notification_id)
    if not claimed:
        return note
    user = await User.get(id=note.user_id)  # type: ignore[attr-defined]
    skipped = await _spend(user.id, note.template)
    if skipped:
        note.status, note.detail = "skipped", skipped
    else:
        outcome = await wechat().send_subscribe_message(
            openid=user.openid, template_id=template_id(note.template),
            data=messages.flat(note.data), page=note.page or None)
        note.status = "sent" if outcome.ok else "failed"
        note.detail = outcome.detail
        note.sent_at = clock.now() if outcome.ok else None
        if not outcome.ok:
            log.info("subscribe message not delivered", extra={"errcode": outcome.errcode})
    if note.status != "sent" and messages.kind_of(note.template).matters:
        note.sms_status, note.sms_detail = await _sms_fallback(user, note)
    await note.save(update_fields=["status", "detail", "sent_at", "sms_status", "sms_detail"])
    if note.relay_to_id is not None:  # type: ignore[attr-defined]
        await _relay(user, note)
    return note


async def _phone_of(user: User) -> str | None:
    """The person's verified phone, decrypted only to send."""
    enc = user.phone_enc
    if not enc and user.person_id is not None:  # type: ignore[attr-defined]
        person = await Person.get_or_none(id=user.person_id)  # type: ignore[attr-defined]
        enc = person.phone_enc if person is not None else None
    return pii.decrypt(enc, purpose=P_PHONE) if enc else None


async def _take_sms_quota(user_id: int) -> bool:
    """One SMS from today's allowance. The conditional increment holds the limit when two
    deliveries race for the last one."""
    limit = get_settings().sms_daily_limit
    row, _ = await SmsQuota.get_or_create(user_id=user_id, day=clock.today())
    taken = await SmsQuota.filter(id=row.id, count__lt=limit).update(count=F("count") + 1)
    return bool(taken)


SMS_PARAM_CHARS = 20


async def _sms_fallback(user: User, note: Notification) -> tuple[str, str]:
    if note.detail == "muted":
        # The person switched this kind off: an SMS would override their choice.
        return "muted", ""
    phone = await _phone_of(user)
    if phone is None:
        return "no_phone", ""
    if not await _take_sms_quota(user.id):
        return "limited", f"daily limit {get_settings().sms_daily_limit}"
    msg = await Message.get_or_none(dedup_key=note.dedup_key)
    kind = messages.kind_of(note.template)
    # Approved notification templates commonly cap each variable at 20 characters; the full
    # text waits in the message centre, which the template's fixed wording points to.
    params = [(msg.title if msg else kind.title)[:SMS_PARAM_CHARS],
              (msg.body if msg else "")[:SMS_PARAM_CHARS]]
    tid = get_settings().sms_templates.get(note.template, note.template)
    outcome = await sms.provider().send(phone=phone, template_id=tid, params=params)
    return ("sent" if outcome.ok else "failed"), outcome.detail[:255]


async def _relay(user: User, note: Notification) -> None:
    person = await Person.get_or_none(id=user.person_id) if user.person_id else None  # type: ignore[attr-defined]
    who = person.name_masked if person is not None else "代办对象"
    msg = await Message.get_or_none(dedup_key=note.dedup_key)
    what = msg.title if msg is not None else messages.kind_of(note.template).title
    if note.status == "sent":
        how = "已通过微信告知本人"
    elif note.sms_status == "sent":
        how = "微信未送达，已短信告知本人"
    else:
        how = "未能通过微信或短信告知本人，请电话或上门告知"
    await notify(
        user_id=note.relay_to_id,  # type: ignore[attr-defined]
        template="on_behalf_relay",
        data={"thing1": who, "thing2": what, "thing3": how[:20]},
        dedup_key=f"{note.dedup_key}:relay"[:191],
        page=note.page, hall_code=note.hall_code, department=note.department,
        body=f"您为{who}代办的事项有新通知「{what}」：{(msg.body if msg else '')}。{how}。",
    )


# --- consent --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentAsk:
    template: str
    template_id: str
    label: str
    long_term: bool


def consent_for(action: str) -> list[ConsentAsk]:
    """Which templates the mini program should request before ``action``."""
    if action not in messages.CONSENT_FOR_ACTION:
        raise AppError(ErrorCode.validation_failed,
                       fields={"action": "可选：" + "、".join(messages.CONSENT_FOR_ACTION)})
    long_term = set(get_settings().wechat_long_term_templates)
    return [ConsentAsk(t, template_id(t), messages.kind_of(t).label, t in long_term)
            for t in messages.CONSENT_FOR_ACTION[action]]


# What wx.requestSubscribeMessage answers per template id.
CONSENT_RESULTS = ("accept", "reject", "ban", "filter")


async def record_consent(*, user_id: int, results: dict[str, str]) -> list[str]:
    """Record the mini program's subscribe result. Only 'accept' grants anything, and whether
    it is long-term is ours to know (the templates WeChat grants 长期订阅), not the client's to
    say. Returns the templates that were accepted."""
    bad = {k: "未知的模板" for k in results if template_of(k) is None}
    bad |= {k: "取值应为 accept/reject/ban/filter" for k, v in results.items()
            if v not in CONSENT_RESULTS}
    if bad:
        raise AppError(ErrorCode.validation_failed, fields=bad)
    long_term = set(get_settings().wechat_long_term_templates)
    accepted = []
    for tid, answer in results.items():
        name = template_of(tid)
        assert name is not None
        if answer == "accept":
            await record_subscription(user_id=user_id, template=name, accepted=True,
                                      long_term=name in long_term)
            accepted.append(name)
    return accepted


@dataclass(frozen=True)
class NoticeSetting:
    template: str
    label: str
    category: str
    wechat: str  # long_term | one_time | not_subscribed | muted
    wechat_remaining: int | None
    sms_fallback: bool


@dataclass(frozen=True)
class PersonSettings:
    phone: str | None
    sms_daily_limit: int
    sms_sent_today: int
    notices: list[NoticeSetting]


async def settings_of(user_id: int) -> PersonSettings:
    """What this person will and won't receive, per kind of notice. Everything reaches the
    message centre; this says what also goes by WeChat or SMS."""
    user = await User.get(id=user_id)
    phone_masked = user.phone_masked
    if phone_masked is None and user.person_id is not None:  # type: ignore[attr-defined]
        person = await Person.get_or_none(id=user.person_id)  # type: ignore[attr-defined]
        phone_masked = person.phone_masked if person is not None else None
    balances = {b.template: b for b in await SubscriptionBalance.filter(user_id=user_id)}
    quota = await SmsQuota.get_or_none(user_id=user_id, day=clock.today())
    out = []
    for name, kind in messages.KINDS.items():
        if name == "on_behalf_relay":
            continue
        b = balances.get(name)
        if b is None:
            state, remaining = "not_subscribed", None
        elif b.muted:
            state, remaining = "muted", None
        elif b.long_term:
            state, remaining = "long_term", None
        else:
            state = "one_time" if b.balance > 0 else "not_subscribed"
            remaining = b.balance
        out.append(NoticeSetting(name, kind.label, str(kind.category), state, remaining,
                                 kind.matters and phone_masked is not None and state != "muted"))
    return PersonSettings(phone=phone_masked, sms_daily_limit=get_settings().sms_daily_limit,
                          sms_sent_today=quota.count if quota else 0, notices=out)


# --- figures for staff ----------------------------------------------------------------------


@dataclass
class DeliveryFigures:
    day: date
    template: str
    total: int = 0
    sent: int = 0
    failed: int = 0
    pending: int = 0
    skipped: dict[str, int] | None = None
    sms: dict[str, int] | None = None


MAX_FIGURE_DAYS = 92


async def figures(*, actor: Principal, start: date, end: date) -> list[DeliveryFigures]:
    """Per day and template: sent, failed, skipped by reason, SMS fallbacks by outcome; only
    the notices whose business lies in the actor's scope (services/scope.py), like every
    staff figure: a clerk's hall, an approver's department, a supervisor's region, an admin's
    city. Notices about no hall count for the city-wide (admins, the city's supervisor, a
    city department's approvers for their department's)."""
    if not actor.is_staff:
        raise forbidden()
    if end < start:
        raise AppError(ErrorCode.validation_failed, fields={"to": "结束日期不能早于开始日期"})
    if (end - start).days >= MAX_FIGURE_DAYS:
        raise AppError(ErrorCode.validation_failed,
                       fields={"from": f"一次最多查询{MAX_FIGURE_DAYS}天"})
    lo = datetime(start.year, start.month, start.day, tzinfo=clock.SHANGHAI)
    hi = lo + timedelta(days=(end - start).days + 1)
    sc = await scope_of(actor)
    rows = await Notification.filter(sc.q(hall_code="hall_code", department="department"),
                                      created_at__gte=lo, created_at__lt=hi).values_list(
        "created_at", "template", "status", "detail", "sms_status")
    table: dict[tuple[date, str], DeliveryFigures] = {}
    for created, template, status, detail, sms_status in rows:
        day = clock.local(created).date()
        f = table.setdefault((day, template), DeliveryFigures(day, template, skipped={}, sms={}))
        assert f.skipped is not None and f.sms is not None
        f.total += 1
        if status == "sent":
            f.sent += 1
        elif status == "failed":
            f.failed += 1
        elif status == "skipped":
            f.skipped[detail] = f.skipped.get(detail, 0) + 1
        else:
            f.pending += 1
        if sms_status:
            f.sms[sms_status] = f.sms.get(sms_status, 0) + 1
    return [table[k] for k in sorted(table)]
SEND = "notifications.send"


async def notify_after_commit(
    *, user_id: int, template: str, data: dict[str, Any], dedup_key: str, page: str = "",
    title: str | None = None, body: str | None = None, action_path: str = "",
    relay_to: int | None = None, category: MessageCategory | None = None,
    hall_code: str = "", department: str = "",
    using_db: BaseDBAsyncClient | None = None,
) -> None:
    """Promise ``notify(...)`` in the caller's transaction (pass its connection): the outbox
    keeps it in the message centre and sends it once the transaction has committed, and never
    if it rolls back. This is how a request sends a notice; ``notify`` itself is what the
    outbox (and sweeps that already run after their commits) call."""
    await outbox.add(SEND, {"user_id": user_id, "template": template, "data": data,
                            "dedup_key": dedup_key, "page": page, "title": title,
                            "body": body, "action_path": action_path, "relay_to": relay_to,
                            "category": str(category) if category is not None else None,
                            "hall_code": hall_code, "department": department},
                     f"notify:{dedup_key}", using_db=using_db)


@outbox.handler(SEND)
async def _send_promised(payload: dict[str, Any]) -> None:
    category = payload.get("category")
    relay_to = payload.get("relay_to")
    await notify(user_id=int(payload["user_id"]), template=str(payload["template"]),
                 data=dict(payload["data"]), dedup_key=str(payload["dedup_key"]),
                 page=str(payload.get("page", "")), title=payload.get("title"),
                 body=payload.get("body"), action_path=str(payload.get("action_path") or ""),
                 relay_to=int(relay_to) if relay_to is not None else None,
                 category=MessageCategory(category) if category else None,
                 # Promises written before notices carried their place have neither.
                 hall_code=str(payload.get("hall_code") or ""),
                 department=str(payload.get("department") or ""))
