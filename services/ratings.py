"""好差评: rating a finished case or a checked-in appointment (一事一评), and the rectification
a bad rating opens: reply within 15 working days, a follow-up visit (回访), escalation when late.

一事一评 is the unique index on (target_type, target_id): the check before inserting only gives
a friendly answer early, the index is what makes two concurrent submissions end as one rating.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.catalogue import ServiceItem
from models.feedback import Moderation
from models.ratings import (
    BAD_LEVELS,
    LEVEL_LABELS,
    Rating,
    RatingReview,
    RatingStaff,
    RectificationStatus,
    RectificationTask,
    ReviewVerdict,
    TargetType,
    VisitResult,
)
from models.users import Role
from services import clock, jobs, notifications, people
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.feedback import check_content
from services.scope import scope_of
from services.scrub import scrub_public
from services.settings import get_settings
from services.workcalendar import add_working_days

# Case statuses after which the applicant may rate (办结).
FINISHED_CASE_STATUSES = ("approved", "rejected", "result_delivered", "closed")
RATABLE_APPOINTMENT_STATUSES = ("checked_in",)


@dataclass(frozen=True)
class _Target:
    department: str
    hall_code: str
    case_id: int | None = None


async def _case_target(*, actor: Principal, case_id: int) -> _Target:
    from models.cases import Case

    case = await Case.get_or_none(id=case_id)
    if case is None or case.applicant_id != actor.user_id:  # type: ignore[attr-defined]
        raise not_found("办件")
    if case.status.value not in FINISHED_CASE_STATUSES:
        raise AppError(ErrorCode.rating_not_open)
    return _Target(department=case.department, hall_code=case.hall_code, case_id=case.id)


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
        async with in_transaction() as conn:
            if target_type is TargetType.appointment:
                await _lock_appointment(target_id)
            rating = await Rating.create(
                target_type=target_type, target_id=target_id, rater_id=actor.user_id,
                level=level, label=label_of(level), tags={"tags": sorted(set(tags))},
                text=text, text_visible=visible, department=target.department,
                hall_code=target.hall_code)
            # The rating reaches the people who served (issue 12), not only the hall.
            await _tie_to_staff(rating, using_db=conn)
            if level in BAD_LEVELS:
                # Same transaction: a bad rating without its rectification task can't exist.
                await RectificationTask.create(
                    rating=rating, department=target.department, hall_code=target.hall_code,
                    due_at=add_working_days(now, get_settings().rectification_due_days))
    except IntegrityError as exc:
        raise AppError(ErrorCode.already_rated) from exc
    return rating


async def list_mine(*, actor: Principal, cursor: int | None, limit: int) -> list[Rating]:
    qs = Rating.filter(rater_id=actor.user_id).order_by("-id")
    if cursor:
        qs = qs.filter(id__lt=cursor)
    return await qs.limit(limit + 1)


async def task_of(rating: Rating) -> RectificationTask | None:
    return await RectificationTask.get_or_none(rating_id=rating.id)


async def tasks_of(ratings: list[Rating]) -> dict[int, RectificationTask]:
    """The rectification tasks of these ratings (only bad ones have one), by rating id: one
    query for a page of the rater's own ratings."""
    if not ratings:
        return {}
    return {t.rating_id: t for t in await RectificationTask.filter(  # type: ignore[attr-defined]
        rating_id__in=[r.id for r in ratings])}


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


@dataclass(frozen=True)
class MaskedTaskText:
    rating_text: str
    reply: str | None
    visit_note: str | None


def masked_task_text(task: RectificationTask) -> MaskedTaskText:
    """What staff see of the free text on a rectification task: the rater's words (empty while
    moderation holds them), the reply and the 回访 note, through ``scrub_public`` with the
    rater's own name masked wherever it appears. The rater is reached through the masked
    phone and the audited ``/admin/persons/{id}/reveal``, never through what the text repeats.
    ``task.rating.rater.person`` must be loaded (``access_rectification``, ``list_tasks``)."""
    rating = task.rating
    names = people.names_to_mask(rating.rater.person)
    return MaskedTaskText(
        rating_text=scrub_public(rating.text, names=names) if rating.text_visible else "",
        reply=scrub_public(task.reply, names=names) if task.reply is not None else None,
        visit_note=(scrub_public(task.visit_note, names=names)
                    if task.visit_note is not None else None))


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
            hall_code=task.hall_code, department=task.department,
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


# --- 好差评 that reaches people (issue 12) ------------------------------------------------------
#
# A case's rating is tied to every staff member who served it (services/approval/served.py).
# A bad rating counts against them only once a supervisor found it valid (差评核实); a rated
# staff member may appeal that once, and a different supervisor decides the appeal (申诉复核).
# The rectification task the bad rating opened stays whatever the verdict.


async def _tie_to_staff(rating: Rating, *, using_db: BaseDBAsyncClient | None) -> None:
    """RatingStaff rows for everyone who served the rated case or appointment and has none
    yet (services/approval/served.py decides who): at rating time, and again when a clerk
    serves an appointment that was rated before (a self check-in, rated while waiting)."""
    from models.cases import Case
    from services.approval.served import staff_who_served, staff_who_served_appointment

    if rating.target_type is TargetType.case:
        served = await staff_who_served(await Case.get(id=rating.target_id))
    else:
        served = await staff_who_served_appointment(
            rating.target_id, department=rating.department, hall_code=rating.hall_code)
    have = set(await RatingStaff.filter(rating_id=rating.id).values_list("user_id", "served_as"))
    for s in served:
        if (s.user_id, s.served_as) in have:
            continue
        await RatingStaff.create(rating_id=rating.id, user_id=s.user_id, served_as=s.served_as,
                                 department=s.department, hall_code=s.hall_code,
                                 using_db=using_db)


async def _lock_appointment(appointment_id: int) -> None:
    """Rating an appointment and a clerk serving it both take its row first, so one of them
    sees the other's commit: the rating reads who served after the clerk's commit, or the
    clerk reads the rating after the rating's (InnoDB takes the later plain reads' snapshot
    after the wait). Without it both could read "nothing yet" and the rating miss the clerk."""
    from models.appointments import Appointment

    await Appointment.filter(id=appointment_id).select_for_update().first()


async def tie_appointment_rating(appointment_id: int, *,
                                 using_db: BaseDBAsyncClient | None) -> None:
    """A clerk has just served this appointment (checked it in by code, opened a case from
    it): if it was already rated, the rating reaches them too. Called inside the transaction
    that records the serving, so the two commit together."""
    await _lock_appointment(appointment_id)
    rating = await Rating.get_or_none(target_type=TargetType.appointment,
                                      target_id=appointment_id)
    if rating is not None:
        await _tie_to_staff(rating, using_db=using_db)


async def _is_supervisor(actor: Principal) -> bool:
    from models.org import Membership, Position

    return actor.has(Role.admin) or await Membership.exists(user_id=actor.user_id,
                                                            position=Position.supervisor)


async def access_rating(actor: Principal, rating_id: int, *, for_change: bool = False,
                        lock: bool = False) -> Rating:
    """Staff whose scope covers the rated hall or department see a rating; ``for_change``
    (核实, deciding an appeal) needs a supervisor (or admin) as well. Anyone else: not_found."""
    if not actor.is_staff:
        raise not_found("评价")
    q = Rating.filter(id=rating_id)
    rating = await (q.select_for_update() if lock else q).first()
    if rating is None or not (await scope_of(actor)).covers(hall_code=rating.hall_code,
                                                            department=rating.department):
        raise not_found("评价")
    if for_change and not await _is_supervisor(actor):
        raise forbidden("差评核实须由督查人员办理")
    return rating


def _reason(text: str, field: str = "reason") -> str:
    text = text.strip()
    if len(text) < 4:
        raise AppError(ErrorCode.validation_failed, "请说明理由",
                       fields={field: "请填写理由（至少4个字）"})
    return text[:500]


async def review_rating(*, actor: Principal, rating_id: int, verdict: ReviewVerdict,
                        reason: str) -> RatingReview:
    """差评核实: valid counts against the staff who served; not valid does not."""
    reason = _reason(reason)
    rating = await access_rating(actor, rating_id, for_change=True)
    if rating.level not in BAD_LEVELS:
        raise AppError(ErrorCode.rating_review_state, "只有差评需要核实")
    try:
        return await RatingReview.create(rating_id=rating.id, verdict=verdict, reason=reason,
                                         reviewed_by_id=actor.user_id, reviewed_at=clock.now())
    except IntegrityError as exc:  # one review per rating, even when two click at once
        raise AppError(ErrorCode.rating_review_state, "该差评已核实") from exc


async def appeal_review(*, actor: Principal, rating_id: int, reason: str) -> RatingReview:
    """申诉: a staff member the rating is about contests a 'valid' verdict, once."""
    reason = _reason(reason)
    if not await RatingStaff.exists(rating_id=rating_id, user_id=actor.user_id):
        raise not_found("评价")
    review = await RatingReview.get_or_none(rating_id=rating_id)
    if review is None or review.verdict is not ReviewVerdict.valid:
        raise AppError(ErrorCode.rating_review_state, "只有核实属实的差评可以申诉")
    moved = await RatingReview.filter(id=review.id, appealed_at=None,
                                      version=review.version).update(
        appeal_reason=reason, appealed_by_id=actor.user_id, appealed_at=clock.now(),
        version=review.version + 1)
    if not moved:
        raise AppError(ErrorCode.rating_review_state, "每条差评只能申诉一次")
    return await RatingReview.get(id=review.id)


async def decide_appeal(*, actor: Principal, rating_id: int, verdict: ReviewVerdict,
                        reason: str) -> RatingReview:
    """复核: a different supervisor than the first reviewer decides the appeal."""
    reason = _reason(reason)
    await access_rating(actor, rating_id, for_change=True)
    review = await RatingReview.get_or_none(rating_id=rating_id)
    if review is None or review.appealed_at is None or review.final_at is not None:
        raise AppError(ErrorCode.rating_review_state, "没有待复核的申诉")
    if review.reviewed_by_id == actor.user_id:  # type: ignore[attr-defined]
        raise forbidden("申诉须由另一名督查人员复核")
    moved = await RatingReview.filter(id=review.id, final_at=None,
                                      version=review.version).update(
        final_verdict=verdict, final_reason=reason, final_by_id=actor.user_id,
        final_at=clock.now(), version=review.version + 1)
    if not moved:
        raise AppError(ErrorCode.rating_review_state, "该申诉已复核")
    return await RatingReview.get(id=review.id)


def counts_against(review: RatingReview | None) -> bool:
    if review is None:
        return False
    return (review.final_verdict or review.verdict) is ReviewVerdict.valid


@dataclass
class StaffFigures:
    user_id: int
    nickname: str
    served_as: list[str]
    ratings: int
    good: int  # 满意 and 非常满意
    bad: int  # every 差评, reviewed or not
    bad_valid: int  # counted against them (核实属实, after any appeal)
    bad_unreviewed: int
    average: float


async def _oversees(actor: Principal) -> bool:
    from models.org import Membership, Position

    return actor.has(Role.admin) or await Membership.exists(
        user_id=actor.user_id, position__in=(Position.supervisor, Position.hall_manager))


async def staff_figures(*, actor: Principal) -> list[StaffFigures]:
    """Figures by staff member for those who oversee staff (a supervisor, a hall manager, an
    admin), over the ratings tied to them in that person's scope; a clerk or approver does not
    read their colleagues' figures."""
    if not actor.is_staff or not await _oversees(actor):
        raise forbidden("按人员统计的好差评仅供督查和大厅负责人查看")
    in_scope = (await scope_of(actor)).q(hall_code="hall_code", department="department")
    rows = await RatingStaff.filter(in_scope).select_related("rating", "user")
    reviews = {r.rating_id: r for r in await RatingReview.filter(  # type: ignore[attr-defined]
        rating_id__in=list({x.rating_id for x in rows}))}  # type: ignore[attr-defined]
    by_user: dict[int, StaffFigures] = {}
    seen: set[tuple[int, int]] = set()
    levels: dict[int, list[int]] = {}
    for x in rows:
        uid = x.user_id  # type: ignore[attr-defined]
        f = by_user.setdefault(uid, StaffFigures(uid, x.user.nickname, [], 0, 0, 0, 0, 0, 0.0))
        if x.served_as.value not in f.served_as:
            f.served_as.append(x.served_as.value)
        if (uid, x.rating.id) in seen:
            continue  # served twice on one case (received and handed over): one rating
        seen.add((uid, x.rating.id))
        f.ratings += 1
        levels.setdefault(uid, []).append(x.rating.level)
        if x.rating.level >= 4:
            f.good += 1
        if x.rating.level in BAD_LEVELS:
            f.bad += 1
            review = reviews.get(x.rating.id)
            if review is None:
                f.bad_unreviewed += 1
            elif counts_against(review):
                f.bad_valid += 1
    for uid, f in by_user.items():
        f.average = round(sum(levels[uid]) / len(levels[uid]), 2)
    return sorted(by_user.values(), key=lambda f: (-f.bad_valid, f.user_id))
