"""好差评: rating a finished case or a checked-in appointment (一事一评), and the rectification
a bad rating opens: reply within 15 working days, a follow-up visit (回访), escalation when late.

一事一评 is the unique index on (target_type, target_id): the check before inserting only gives
a friendly answer early, the index is what makes two concurrent submissions end as one rating.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.catalogue import ServiceItem
from models.feedback import Moderation
from models.ratings import (
    BAD_LEVELS,
    LEVEL_LABELS,
    Rating,
    RectificationStatus,
    RectificationTask,
    TargetType,
    VisitResult,
)
from services import clock, jobs, notifications
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.feedback import check_content
from services.scope import scope_of
from services.settings import get_settings
from services.workcalendar import add_working_days

# Case statuses after which the applicant may rate (办结).
FINISHED_CASE_STATUSES = ("approved", "rejected", "result_delivered", "closed")
RATABLE_APPOINTMENT_STATUSES = ("checked_in",)


@dataclass(frozen=True)
class _Target:
    department: str
    hall_code: str


async def _case_target(*, actor: Principal, case_id: int) -> _Target:
    from models.cases import Case

    case = await Case.get_or_none(id=case_id)
    if case is None or case.applicant_id != actor.user_id:  # type: ignore[attr-defined]
        raise not_found("办件")
    if case.status.value not in FINISHED_CASE_STATUSES:
        raise AppError(ErrorCode.rating_not_open)
    return _Target(department=case.department, hall_code=case.hall_code)


async def _appointment_target(*, actor: Principal, appointment_id: int) -> _Target:
    from models.appointments import Appointment

    appt = await Appointment.get_or_none(id=appointment_id).select_related("hall")
    if appt is None or appt.resident_id != actor.user_id:  # type: ignore[attr-defined]
        raise not_found("预约")
    status = getattr(appt.status, "value", appt.status)
    if status not in RATABLE_APPOINTMENT_STATUSES:
        raise AppError(ErrorCode.rating_not_open, "到厅签到办理后才能评价")
    item = await ServiceItem.get_or_none(code=appt.item_code) if appt.item_code else None
    return _Target(department=item.department if item else appt.hall.name,
                   hall_code=appt.hall.code)


def label_of(level: int) -> str:
    return LEVEL_LABELS[level]


async def rate(
    *,
    actor: Principal,
    target_type: TargetType,
    target_id: int,
    level: int,
    tags: list[str],
    text: str = "",
) -> Rating:
    if level not in LEVEL_LABELS:
        raise AppError(ErrorCode.validation_failed, fields={"level": "评价等级应为1到5"})
    if target_type is TargetType.case:
        target = await _case_target(actor=actor, case_id=target_id)
    else:
        target = await _appointment_target(actor=actor, appointment_id=target_id)
    if await Rating.filter(target_type=target_type, target_id=target_id).exists():
        raise AppError(ErrorCode.already_rated)
    text = text.strip()
    visible = True
    if text:
        visible = await check_content(user_id=actor.user_id, text=text) is Moderation.passed
    now = clock.now()
    try:
        async with in_transaction():
            rating = await Rating.create(
                target_type=target_type, target_id=target_id, rater_id=actor.user_id,
                level=level, label=label_of(level), tags={"tags": sorted(set(tags))},
                text=text, text_visible=visible, department=target.department,
                hall_code=target.hall_code)
            if level in BAD_LEVELS:
                # Same transaction: a bad rating without its rectification task can't exist.
                await RectificationTask.create(
                    rating=rating, department=target.department, hall_code=target.hall_code,
                    due_at=add_working_days(now, get_settings().rectification_due_days))
    except IntegrityError as exc:
        raise AppError(ErrorCode.already_rated) from exc
    return rating


async def list_mine(*, actor: Principal, cursor: int | None, limit: int) -> list[Rating]:
    qs = Rating.filter(rater_id=actor.user_id).prefetch_related("rectification").order_by("-id")
    if cursor:
        qs = qs.filter(id__lt=cursor)
    return await qs.limit(limit + 1)


async def task_of(rating: Rating) -> RectificationTask | None:
    return await RectificationTask.get_or_none(rating_id=rating.id)


def task_overdue(task: RectificationTask, *, now: datetime | None = None) -> bool:
    return task.status is RectificationStatus.open and (now or clock.now()) > task.due_at


async def list_tasks(
    *,
    actor: Principal,
    status: RectificationStatus | None = None,
    department: str | None = None,
    escalated: bool | None = None,
    cursor: int | None = None,
    limit: int = 20,
) -> list[RectificationTask]:
    if not actor.is_staff:
        raise forbidden()
    in_scope = (await scope_of(actor)).q(hall_code="hall_code", department="department")
    qs = RectificationTask.filter(in_scope).select_related("rating__rater__person").order_by("-id")
    if status is not None:
        qs = qs.filter(status=status)
    if department:
        qs = qs.filter(department=department)
    if escalated is not None:
        qs = qs.filter(escalated=escalated)
    if cursor:
        qs = qs.filter(id__lt=cursor)
    return await qs.limit(limit + 1)


async def access_rectification(actor: Principal, task_id: int, *, for_change: bool = False,
                               lock: bool = False) -> RectificationTask:
    """The one decision on who sees a rectification task: staff whose scope covers the rated
    hall or department (services/scope.py); anyone else gets not_found. Reading and acting
    need the same scope, so ``for_change`` adds nothing here. ``lock``: FOR UPDATE, inside
    the caller's transaction."""
    if not actor.is_staff:
        raise forbidden()
    q = RectificationTask.filter(id=task_id)
    task = await (q.select_for_update() if lock else q).select_related(
        "rating__rater__person").first()
    if task is None or not (await scope_of(actor)).covers(hall_code=task.hall_code,
                                                          department=task.department):
        raise not_found("整改任务")
    return task


async def get_task(*, actor: Principal, task_id: int) -> RectificationTask:
    return await access_rectification(actor, task_id)


async def reply_task(*, actor: Principal, task_id: int, text: str) -> RectificationTask:
    """The department's rectification: what was wrong and what changed."""
    task = await get_task(actor=actor, task_id=task_id)
    now = clock.now()
    async with in_transaction() as conn:
        moved = await RectificationTask.filter(
            id=task.id, status=RectificationStatus.open).using_db(conn).update(
            status=RectificationStatus.replied, reply=text.strip(), replied_at=now,
            replied_by_id=actor.user_id, updated_at=now)
        if not moved:
            raise AppError(ErrorCode.rectification_state, "该整改任务已答复")
        await notifications.notify_after_commit(
            user_id=task.rating.rater_id,  # type: ignore[attr-defined]
            template="feedback_reply",
            data={"thing1": {"value": "差评整改"}, "thing2": {"value": text.strip()[:20]},
                  "time3": {"value": clock.local(now).strftime("%Y-%m-%d %H:%M")}},
            dedup_key=f"rectification_reply:{task.id}",
            page="pages/ratings/mine", using_db=conn,
        )
    return await get_task(actor=actor, task_id=task_id)


async def follow_up(
    *, actor: Principal, task_id: int, result: VisitResult, note: str
) -> RectificationTask:
    """回访: after the reply, staff ask the resident; recording it closes the task."""
    task = await get_task(actor=actor, task_id=task_id)
    now = clock.now()
    moved = await RectificationTask.filter(id=task.id, status=RectificationStatus.replied).update(
        status=RectificationStatus.closed, visit_result=result, visit_note=note.strip(),
        visited_at=now, visited_by_id=actor.user_id, updated_at=now)
    if not moved:
        raise AppError(ErrorCode.rectification_state, "整改答复后才能回访，且只回访一次")
    return await get_task(actor=actor, task_id=task_id)


def escalation_level(due_at: datetime, now: datetime) -> int:
    """0 before the deadline; 1 once it passed; one more level for every further
    ``rectification_escalate_every_days`` working days, up to ``rectification_max_level``."""
    s = get_settings()
    if now <= due_at:
        return 0
    level = 1
    while level < s.rectification_max_level and now > add_working_days(
        due_at, level * s.rectification_escalate_every_days
    ):
        level += 1
    return level


async def escalate_overdue(*, now: datetime | None = None, batch: int = 500) -> int:
    """Mark open tasks past their deadline escalated, raising the level as they stay late.
    Idempotent: a task already at its level is left alone."""
    now = now or clock.now()
    late = await RectificationTask.filter(
        status=RectificationStatus.open, due_at__lt=now,
        escalation_level__lt=get_settings().rectification_max_level,
    ).order_by("due_at").limit(batch)
    changed = 0
    for task in late:
        level = escalation_level(task.due_at, now)
        if level <= task.escalation_level:
            continue
        # Conditional on the level seen: two sweeps racing raise it once.
        changed += await RectificationTask.filter(
            id=task.id, status=RectificationStatus.open, escalation_level=task.escalation_level
        ).update(escalated=True, escalation_level=level, escalated_at=now,
                 updated_at=now)
    return changed


@jobs.periodic("ratings.escalate", every_seconds=900)
async def _escalate_sweep() -> None:
    await escalate_overdue()
