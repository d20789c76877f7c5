"""投诉建议 and 办不成事: submit (after WeChat's content check), route to a handler, reply,
satisfaction, one reopen, and the sweep that closes reports the resident never answered.

Lifecycle: submitted -> replied -> closed (satisfied / unsatisfied / timeout). From replied, or
from a close the resident marked unsatisfied, the resident may reopen once: reopened -> replied
-> closed. Every transition is a conditional UPDATE on ``version`` so two clicks can't both win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from models.catalogue import Hall, ServiceItem
from models.feedback import (
    CloseReason,
    Feedback,
    FeedbackEvent,
    FeedbackKind,
    FeedbackStatus,
    Moderation,
)
from models.users import User, UserRole
from services import audit, clock, jobs, notifications, people, ratelimit
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.scope import scope_of
from services.scrub import scrub_public
from services.settings import get_settings
from services.workcalendar import add_working_days

OPEN_STATUSES = (FeedbackStatus.submitted, FeedbackStatus.reopened)
KIND_LABELS = {
    FeedbackKind.complaint: "投诉",
    FeedbackKind.suggestion: "建议",
    FeedbackKind.unresolved: "办不成事",
}


def due_days(kind: FeedbackKind) -> int:
    days = get_settings().feedback_due_days
    return int(days.get(kind.value, days.get("complaint", 5)))


def is_overdue(fb: Feedback, *, now: datetime | None = None) -> bool:
    return fb.status in OPEN_STATUSES and (now or clock.now()) > fb.due_at


async def check_content(*, user_id: int, text: str, field: str = "text") -> Moderation:
    """WeChat's msgSecCheck on what a resident wrote: risky is refused before anything is
    stored; review is stored but kept out of public view until staff decide."""
    from services.wechat import wechat  # the gateway is configured by the app factory

    user = await User.get(id=user_id)
    verdict = await wechat().check_text(openid=user.openid, text=text)
    if verdict.suggest == "risky":
        raise AppError(ErrorCode.content_rejected, fields={field: "内容未通过安全检查"})
    return Moderation.passed if verdict.suggest == "pass" else Moderation.review


@dataclass(frozen=True)
class _Subject:
    case_id: int | None
    hall: Hall | None
    item_code: str | None
    department: str


async def _subject(
    *, actor: Principal, case_id: int | None, hall_code: str | None, item_code: str | None
) -> _Subject:
    from models.cases import Case  # the cases domain is optional for a report

    department: str | None = None
    hall: Hall | None = None
    if hall_code is not None:
        hall = await Hall.get_or_none(code=hall_code)
        if hall is None:
            raise AppError(ErrorCode.validation_failed, fields={"hall_code": "大厅不存在"})
    if item_code is not None and not await ServiceItem.exists(code=item_code):
        raise AppError(ErrorCode.validation_failed, fields={"item_code": "事项不存在"})
    if case_id is not None:
        case = await Case.get_or_none(id=case_id)
        # Someone else's case looks exactly like a missing one.
        if case is None or case.applicant_id != actor.user_id:  # type: ignore[attr-defined]
            raise not_found("办件")
        department = case.department
        # The case's own snapshot wins; the catalogue may since have changed.
        hall = hall or await Hall.get_or_none(code=case.hall_code)
        item_code = item_code or case.item_code
    if department is None and item_code is not None:
        item = await ServiceItem.get_or_none(code=item_code)
        department = item.department if item else None
    if department is None and hall is not None:
        department = hall.name
    return _Subject(case_id=case_id, hall=hall, item_code=item_code,
                    department=department or get_settings().feedback_default_department)


async def submit(
    *,
    actor: Principal,
    kind: FeedbackKind,
    text: str,
    photos: list[str],
    case_id: int | None = None,
    hall_code: str | None = None,
    item_code: str | None = None,
    publish: bool = True,
) -> Feedback:
    text = text.strip()
    if not text:
        raise AppError(ErrorCode.validation_failed, fields={"text": "请填写内容"})
    s = get_settings()
    # Each report costs a WeChat content check and a staff member's time.
    await ratelimit.hit(f"feedback:{actor.user_id}", limit=s.feedback_daily_limit,
                        window_seconds=86400, message="今天提交的诉求较多，请明天再提交")
    subject = await _subject(actor=actor, case_id=case_id, hall_code=hall_code,
                             item_code=item_code)
    moderation = await check_content(user_id=actor.user_id, text=text)
    now = clock.now()
    async with in_transaction():
        fb = await Feedback.create(
            user_id=actor.user_id, kind=kind, text=text, photos={"refs": photos},
            case_id=subject.case_id, hall=subject.hall, item_code=subject.item_code,
            moderation=moderation, is_public=moderation is Moderation.passed, publish=publish,
            department=subject.department, status=FeedbackStatus.submitted,
            due_at=add_working_days(now, due_days(kind)),
        )
        await FeedbackEvent.create(feedback=fb, actor_id=actor.user_id, action="submitted",
                                   note=f"{KIND_LABELS[kind]}，承办：{subject.department}")
    return fb


async def access_feedback(actor: Principal, feedback_id: int, *, for_change: bool = False,
                          lock: bool = False) -> Feedback:
    """The one decision on who sees a report: its author, and staff whose scope covers its
    hall or department (services/scope.py); anyone else gets not_found. ``for_change``
    (assign, reply, moderate): staff in scope only; the author's own actions go through
    ``get_own``. ``lock``: FOR UPDATE, inside the caller's transaction."""
    q = Feedback.filter(id=feedback_id)
    fb = await (q.select_for_update() if lock else q).select_related("hall", "user__person").first()
    if fb is None:
        raise not_found("诉求")
    in_scope = actor.is_staff and (await scope_of(actor)).covers(
        hall_id=fb.hall_id, hall_code=fb.hall.code if fb.hall else None,  # type: ignore[attr-defined]
        department=fb.department)
    if in_scope or (not for_change and fb.user_id == actor.user_id):  # type: ignore[attr-defined]
        return fb
    raise not_found("诉求")


async def get_for(*, actor: Principal, feedback_id: int) -> Feedback:
    return await access_feedback(actor, feedback_id)


async def get_own(*, actor: Principal, feedback_id: int) -> Feedback:
    """Resident-facing routes: one's own reports only, whatever roles one holds."""
    fb = await Feedback.get_or_none(id=feedback_id, user_id=actor.user_id).select_related("hall")
    if fb is None:
        raise not_found("诉求")
    return fb


async def events_of(feedback_id: int) -> list[FeedbackEvent]:
    return await FeedbackEvent.filter(feedback_id=feedback_id).order_by("id")


async def list_mine(*, actor: Principal, cursor: int | None, limit: int) -> list[Feedback]:
    qs = Feedback.filter(user_id=actor.user_id).select_related("hall").order_by("-id")
    if cursor:
        qs = qs.filter(id__lt=cursor)
    return await qs.limit(limit + 1)


async def list_public(
    *, kind: FeedbackKind | None, cursor: int | None, limit: int
) -> list[Feedback]:
    """The board: what moderation let through and the resident agreed to show. Render it
    through ``masked_copy``, never the raw fields."""
    qs = Feedback.filter(is_public=True, publish=True).select_related(
        "hall", "user__person").order_by("-id")
    if kind is not None:
        qs = qs.filter(kind=kind)
    if cursor:
        qs = qs.filter(id__lt=cursor)
    return await qs.limit(limit + 1)


@dataclass(frozen=True)
class MaskedCopy:
    text: str
    reply: str | None
    notes: dict[int, str]  # event id -> note


def masked_copy(fb: Feedback, events: Sequence[FeedbackEvent] = ()) -> MaskedCopy:
    """What anyone but the author sees of a report — the public board and staff lists and
    details: text, reply and event notes (a reopen reason is the resident's words) through
    ``scrub_public``, with the author's own name masked wherever it appears. ``fb.user.person``
    must be loaded (``access_feedback``, ``list_public`` and ``list_for_staff`` do). The stored
    report keeps the original for its author and for staff through the audited ``reveal``."""
    names = people.names_to_mask(fb.user.person)
    return MaskedCopy(text=scrub_public(fb.text, names=names),
                      reply=scrub_public(fb.reply, names=names) if fb.reply is not None else None,
                      notes={e.id: scrub_public(e.note, names=names) for e in events})


@dataclass(frozen=True)
class RevealedFeedback:
    feedback: Feedback
    events: list[FeedbackEvent]


async def reveal(*, actor: Principal, feedback_id: int, reason: str,
                 request_id: str = "") -> RevealedFeedback:
    """The full text of a report for staff in scope who need it (a phone number to call back, an
    address to visit), written to the audit log before anything is returned — as
    ``people.reveal`` does for a person's fields."""
    if not actor.is_staff:
        raise forbidden()
    reason = reason.strip()
    if len(reason) < 4:
        raise AppError(ErrorCode.validation_failed, "查看诉求原文须说明事由",
                       fields={"reason": "请填写查看事由（至少4个字）"})
    fb = await access_feedback(actor, feedback_id)
    await audit.record(actor=actor, person_id=fb.user.person_id,  # type: ignore[attr-defined]
                       action="feedback.reveal", fields_read=["feedback.text", "feedback.reply"],
                       reason=reason, request_id=request_id)
    return RevealedFeedback(feedback=fb, events=await events_of(fb.id))


async def set_publication(*, actor: Principal, feedback_id: int, publish: bool) -> Feedback:
    """The resident shows or withdraws their own report on the public board. Only the owner:
    staff decide moderation, not the resident's consent."""
    fb = await get_own(actor=actor, feedback_id=feedback_id)
    if fb.publish == publish:
        return fb  # a repeated click changes nothing and records nothing
    async with in_transaction():
        await Feedback.filter(id=fb.id).update(publish=publish, version=F("version") + 1,
                                               updated_at=clock.now())
        await FeedbackEvent.create(feedback_id=fb.id, actor_id=actor.user_id,
                                   action="published" if publish else "unpublished",
                                   note="居民同意公开" if publish else "居民撤回公开")
    return await get_own(actor=actor, feedback_id=feedback_id)


async def list_for_staff(
    *,
    actor: Principal,
    status: FeedbackStatus | None = None,
    kind: FeedbackKind | None = None,
    moderation: Moderation | None = None,
    department: str | None = None,
    overdue: bool | None = None,
    cursor: int | None = None,
    limit: int = 20,
) -> list[Feedback]:
    if not actor.is_staff:
        raise forbidden()
    in_scope = (await scope_of(actor)).q(hall_id="hall_id", department="department")
    qs = Feedback.filter(in_scope).select_related("hall", "user__person").order_by("-id")
    if status is not None:
        qs = qs.filter(status=status)
    if kind is not None:
        qs = qs.filter(kind=kind)
    if moderation is not None:
        qs = qs.filter(moderation=moderation)
    if department:
        qs = qs.filter(department=department)
    if overdue is True:
        qs = qs.filter(status__in=OPEN_STATUSES, due_at__lt=clock.now())
    elif overdue is False:
        qs = qs.exclude(status__in=OPEN_STATUSES, due_at__lt=clock.now())
    if cursor:
        qs = qs.filter(id__lt=cursor)
    return await qs.limit(limit + 1)


async def _transition(fb: Feedback, *, expect: tuple[FeedbackStatus, ...],
                      changes: dict[str, Any], error: ErrorCode = ErrorCode.feedback_state
                      ) -> None:
    """UPDATE ... WHERE id AND version AND status: the loser of a race gets a 409."""
    moved = await Feedback.filter(id=fb.id, version=fb.version, status__in=expect).update(
        version=F("version") + 1, updated_at=clock.now(), **changes)
    if not moved:
        raise AppError(error)
    for key, value in changes.items():
        setattr(fb, key, value)
    fb.version += 1


async def assign(
    *, actor: Principal, feedback_id: int, handler_id: int | None, department: str | None
) -> Feedback:
    if not actor.is_staff:
        raise forbidden()
    if handler_id is None and not department:
        raise AppError(ErrorCode.validation_failed,
                       fields={"handler_id": "请指定承办人或承办部门"})
    fb = await access_feedback(actor, feedback_id, for_change=True)
    changes: dict[str, Any] = {}
    if handler_id is not None:
        roles = await UserRole.filter(user_id=handler_id).values_list("role", flat=True)
        handler = Principal(handler_id, frozenset(str(r) for r in roles))
        target_department = (department or "").strip() or fb.department
        # The handler must be staff who can see the report once assigned (their scope
        # covers its hall or its department), or the task would vanish from every list.
        if not handler.is_staff or not (await scope_of(handler)).covers(
                hall_id=fb.hall_id, hall_code=fb.hall.code if fb.hall else None,  # type: ignore[attr-defined]
                department=target_department):
            raise AppError(ErrorCode.validation_failed,
                           fields={"handler_id": "承办人须为该诉求所属大厅或部门的工作人员"})
        changes["handler_id"] = handler_id
    if department:
        changes["department"] = department.strip()
    async with in_transaction():
        await _transition(fb, expect=OPEN_STATUSES, changes=changes)
        await FeedbackEvent.create(
            feedback_id=fb.id, actor_id=actor.user_id, action="assigned",
            note=f"承办部门：{fb.department}" + (f"，承办人 #{handler_id}" if handler_id else ""))
    return await Feedback.get(id=fb.id).select_related("hall")


async def moderate(*, actor: Principal, feedback_id: int, approve: bool) -> Feedback:
    """Staff decide on a report WeChat sent to human review."""
    if not actor.is_staff:
        raise forbidden()
    fb = await access_feedback(actor, feedback_id, for_change=True)
    verdict = Moderation.approved if approve else Moderation.hidden
    async with in_transaction():
        moved = await Feedback.filter(id=fb.id, moderation=Moderation.review).update(
            moderation=verdict, is_public=approve, version=F("version") + 1,
            updated_at=clock.now())
        if not moved:
            raise AppError(ErrorCode.feedback_state, "该诉求无需人工审核")
        await FeedbackEvent.create(feedback_id=fb.id, actor_id=actor.user_id,
                                   action="moderated", note="公开" if approve else "不公开")
    return await Feedback.get(id=fb.id).select_related("hall")


async def reply(*, actor: Principal, feedback_id: int, text: str) -> Feedback:
    if not actor.is_staff:
        raise forbidden()
    text = text.strip()
    if not text:
        raise AppError(ErrorCode.validation_failed, fields={"text": "请填写答复内容"})
    fb = await access_feedback(actor, feedback_id, for_change=True)
    now = clock.now()
    async with in_transaction() as conn:
        changes: dict[str, Any] = {"status": FeedbackStatus.replied, "reply": text,
                                   "replied_at": now, "replied_by_id": actor.user_id}
        if fb.handler_id is None:  # type: ignore[attr-defined]
            changes["handler_id"] = actor.user_id
        await _transition(fb, expect=OPEN_STATUSES, changes=changes)
        await FeedbackEvent.create(feedback_id=fb.id, actor_id=actor.user_id, action="replied",
                                   note=text)
        await notifications.notify_after_commit(
            user_id=fb.user_id,  # type: ignore[attr-defined]
            template="feedback_reply",
            data={"thing1": {"value": KIND_LABELS[fb.kind]},
                  "thing2": {"value": text[:20]},
                  "time3": {"value": clock.local(now).strftime("%Y-%m-%d %H:%M")}},
            # One message per reply round: a retried request doesn't message twice.
            dedup_key=f"feedback_reply:{fb.id}:{fb.reopen_count}",
            hall_code=fb.hall.code if fb.hall else "", department=fb.department,
            page=f"pages/feedback/detail?id={fb.id}", using_db=conn,
        )
    return fb


async def answer(*, actor: Principal, feedback_id: int, satisfied: bool,
                 note: str = "") -> Feedback:
    """The resident's satisfaction answer closes a replied report either way; an unsatisfied
    resident may still reopen it once afterwards."""
    fb = await get_own(actor=actor, feedback_id=feedback_id)
    async with in_transaction():
        await _transition(fb, expect=(FeedbackStatus.replied,), changes={
            "status": FeedbackStatus.closed, "satisfied": satisfied,
            "satisfaction_note": note.strip()[:500],
            "close_reason": CloseReason.satisfied if satisfied else CloseReason.unsatisfied,
            "closed_at": clock.now()})
        await FeedbackEvent.create(feedback_id=fb.id, actor_id=actor.user_id,
                                   action="satisfied" if satisfied else "unsatisfied",
                                   note=note.strip())
    return await get_own(actor=actor, feedback_id=feedback_id)


async def reopen(*, actor: Principal, feedback_id: int, reason: str) -> Feedback:
    fb = await get_own(actor=actor, feedback_id=feedback_id)
    if fb.reopen_count >= 1:
        raise AppError(ErrorCode.feedback_reopen_used)
    reopenable = fb.status is FeedbackStatus.replied or (
        fb.status is FeedbackStatus.closed and fb.close_reason is CloseReason.unsatisfied)
    if not reopenable:
        raise AppError(ErrorCode.feedback_state, "答复后如不满意才能重新办理")
    now = clock.now()
    async with in_transaction():
        # reopen_count in the WHERE too: two reopen clicks racing leave exactly one reopen.
        moved = await Feedback.filter(
            id=fb.id, version=fb.version, reopen_count=0,
            status__in=(FeedbackStatus.replied, FeedbackStatus.closed),
        ).update(
            status=FeedbackStatus.reopened, reopen_count=1, satisfied=False,
            close_reason=None, closed_at=None, due_at=add_working_days(now, due_days(fb.kind)),
            version=F("version") + 1, updated_at=now)
        if not moved:
            raise AppError(ErrorCode.feedback_reopen_used)
        await FeedbackEvent.create(feedback_id=fb.id, actor_id=actor.user_id,
                                   action="reopened", note=reason.strip())
    return await get_own(actor=actor, feedback_id=feedback_id)


async def autoclose_replied(*, now: datetime | None = None, batch: int = 500) -> int:
    """Close reports replied more than ``feedback_autoclose_days`` ago that the resident never
    answered. Reads the truth from the database, so a missed tick loses nothing."""
    now = now or clock.now()
    cutoff = now - timedelta(days=get_settings().feedback_autoclose_days)
    due = await Feedback.filter(status=FeedbackStatus.replied,
                                replied_at__lt=cutoff).order_by("id").limit(batch)
    closed = 0
    for fb in due:
        async with in_transaction():
            moved = await Feedback.filter(id=fb.id, version=fb.version,
                                          status=FeedbackStatus.replied).update(
                status=FeedbackStatus.closed, close_reason=CloseReason.timeout, closed_at=now,
                version=F("version") + 1, updated_at=now)
            if moved:
                closed += 1
                await FeedbackEvent.create(feedback_id=fb.id, action="timeout",
                                           note="逾期未评价，系统自动办结")
    return closed


@jobs.periodic("feedback.autoclose", every_seconds=3600)
async def _autoclose_sweep() -> None:
    await autoclose_replied()
