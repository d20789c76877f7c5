"""后台分类审批 and 并联审批: routing an accepted case to the departments that approve its
items, their queues, taking a task, deciding it, returning the case to the window.

Routing happens inside the acceptance's own transaction (a ``services.cases.MOVE_HOOKS`` hook),
so an accepted case without its tasks cannot exist. A case whose items' departments are all
outside the organisation (models/org.py) gets no task and is decided at the hall as before.

Who decides: an approver (Membership position ``approver``) whose department grant covers the
task's department at the case's hall (``approver_scope``), or an admin. A clerk's hall scope
lets them see the case, never decide a department's part of it.

Taking a task is a conditional update on ``(status='pending', version)`` under the case's row
lock, so two approvers clicking at once end with one holder (tests/integration/
test_approval_mysql.py). Locks are always taken case first, then task, like every case move.

Once every task is decided the case moves (all approved → approve; any rejected → reject), in
the last decision's own transaction (the case's move is a savepoint inside it, and its notices go
through the outbox). The ``approval.settle`` sweep is the safety net for a case left with every
task decided and no move (a task decided by a path that did not settle, data repaired by hand).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from models.approval import DECIDED_TASK, OPEN_TASK, TASK_STATUS_LABELS, CaseTask, TaskStatus
from models.cases import Case, CaseStatus
from models.catalogue import Bundle, ServiceItem
from models.org import Department
from models.users import Role
from services import cases, clock, jobs, workcalendar
from services.auth import Principal
from services.cases import Action, Moved
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.scope import Scope, scope_of

log = logging.getLogger(__name__)

S = CaseStatus
# Case states in which a department can work on its task.
WORKABLE = (S.accepted, S.under_review, S.resubmitted)
TASK_LABELS = TASK_STATUS_LABELS


def approver_scope(sc: Scope) -> Scope:
    """The department grants only: a clerk or hall manager covers every record of their hall,
    but deciding a department's part is for that department's approvers (or an admin)."""
    return Scope(everything=sc.everything, departments=sc.departments)


async def _items_of(case: Case) -> list[ServiceItem]:
    if case.item_code:
        item = await ServiceItem.get_or_none(code=case.item_code)
        return [item] if item else []
    bundle = await Bundle.get_or_none(code=case.bundle_code)
    if bundle is None:
        return []
    codes = [str(c) for c in bundle.item_codes]
    found = {i.code: i for i in await ServiceItem.filter(code__in=codes)}
    return [found[c] for c in codes if c in found]


def _due(case: Case, days: int,
         pauses: Sequence[tuple[datetime, datetime | None]]) -> datetime | None:
    if case.accepted_at is None:
        return None
    return workcalendar.due_with_pauses(case.accepted_at, days, pauses)


async def _route(case: Case, conn: BaseDBAsyncClient) -> None:
    by_dept: dict[str, list[ServiceItem]] = {}
    for it in await _items_of(case):
        by_dept.setdefault(it.department, []).append(it)
    known = await Department.filter(name__in=list(by_dept)).exists() if by_dept else False
    if not known:
        return  # no department of the organisation approves it: the hall decides, as before
    pauses = await cases.pauses_of(case)
    for dept, items in by_dept.items():
        # One promise per department: its slowest item (the case keeps the slowest overall).
        days = max(it.promised_limit_days for it in items)
        await CaseTask.create(case_id=case.id, department=dept, hall_code=case.hall_code,
                              items={"codes": [it.code for it in items]}, promised_days=days,
                              due_at=_due(case, days, pauses), using_db=conn)


async def _refresh_due(case: Case, tasks: list[CaseTask], conn: BaseDBAsyncClient) -> None:
    """限时办结 per sub-task follows the case's clock: paused while a supplement is open, new
    from a reopening."""
    pauses = await cases.pauses_of(case) if case.accepted_at else []
    for t in tasks:
        if t.status in DECIDED_TASK:
            continue
        due = _due(case, t.promised_days, pauses)
        if due != t.due_at:
            await CaseTask.filter(id=t.id).using_db(conn).update(due_at=due)


def _may_decide(sc: Scope, task: CaseTask) -> bool:
    return approver_scope(sc).covers(hall_code=task.hall_code, department=task.department)


async def _on_move(m: Moved) -> None:
    case = m.case
    tasks = await CaseTask.filter(case_id=case.id).order_by("id")
    if case.status is S.accepted and not tasks:
        # Whatever move accepted it (the table's accept, or a window action the front half
        # adds, such as 容缺受理), an accepted case goes to its departments.
        await _route(case, m.conn)
        return
    if not tasks:
        return
    if m.action in (Action.approve, Action.reject) and not m.by_approval:
        # Deciding the whole case at once is only for someone who may decide every
        # department's part still open (an admin, an approver of the only department).
        sc = await scope_of(m.actor)
        undecided = [t for t in tasks if t.status not in DECIDED_TASK]
        if not all(_may_decide(sc, t) for t in undecided):
            raise AppError(ErrorCode.approval_by_departments)
        outcome = TaskStatus.approved if m.action is Action.approve else TaskStatus.rejected
        for t in undecided:
            await CaseTask.filter(id=t.id).using_db(m.conn).update(
                status=outcome, decided_by_id=m.actor.user_id, decided_at=m.now,
                opinion=m.note.strip()[:500], version=t.version + 1)
        return
    if m.action is Action.reopen:
        # Reopened = accepted afresh: every department looks at it again, with a new promise.
        await CaseTask.filter(case_id=case.id).using_db(m.conn).update(
            status=TaskStatus.pending, claimed_by_id=None, claimed_at=None, decided_by_id=None,
            decided_at=None, opinion="")
        tasks = await CaseTask.filter(case_id=case.id).order_by("id")
    elif m.action is Action.start_review and m.before is S.returned:
        # The window cleared it up and sends it on: the returning department's queue again.
        await CaseTask.filter(case_id=case.id, status=TaskStatus.returned).using_db(
            m.conn).update(status=TaskStatus.pending, claimed_by_id=None, claimed_at=None)
    await _refresh_due(case, tasks, m.conn)


cases.MOVE_HOOKS.append(_on_move)


# ---------------------------------------------------------------------------------------------
# The one access decision for a task


async def access_task(actor: Principal, task_id: int, *, for_change: bool = False,
                      lock: bool = False) -> CaseTask:
    """Approvers whose department grant covers the task (and admins) see and act on it;
    anyone else, including a clerk of the case's hall, gets not_found. ``for_change`` adds
    nothing: seeing a department's task already means being its approver. ``lock``: FOR
    UPDATE inside the caller's transaction (take the case's lock first)."""
    del for_change
    if not actor.is_staff:
        raise not_found("审批任务")
    q = CaseTask.filter(id=task_id)
    task = await (q.select_for_update() if lock else q).first()
    if task is None or not _may_decide(await scope_of(actor), task):
        raise not_found("审批任务")
    return task


async def _locked(actor: Principal, task_id: int) -> tuple[CaseTask, Case]:
    """Inside a transaction: the task (checked) and its case, locked case first."""
    seen = await access_task(actor, task_id)
    case = await Case.filter(id=seen.case_id).select_for_update().first()  # type: ignore[attr-defined]
    if case is None:
        raise not_found("审批任务")
    task = await access_task(actor, task_id, lock=True)
    return task, case


def _workable(case: Case) -> None:
    if case.status not in WORKABLE:
        raise AppError(ErrorCode.task_state,
                       f"办件当前为“{cases.STATUS_LABELS[case.status]}”，暂不能审批")


# ---------------------------------------------------------------------------------------------
# Queue and work


async def queue(*, actor: Principal, status: TaskStatus | None, mine: bool,
                cursor: int | None, limit: int) -> tuple[list[CaseTask], int | None]:
    """The department's queue: tasks of the caller's departments (and halls of its region);
    by default the open ones of cases that can be worked on, soonest due first within a page
    by id."""
    if not actor.is_staff:
        raise forbidden()
    sc = approver_scope(await scope_of(actor))
    if sc.is_empty:
        return [], None
    q = CaseTask.filter(sc.q(hall_code="hall_code", department="department"))
    if status is None:
        q = q.filter(status__in=OPEN_TASK, case__status__in=WORKABLE)
    else:
        q = q.filter(status=status)
    if mine:
        q = q.filter(claimed_by_id=actor.user_id)
    if cursor is not None:
        q = q.filter(id__lt=cursor)
    rows = await q.select_related("case").order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def get_task(*, actor: Principal, task_id: int) -> CaseTask:
    task = await access_task(actor, task_id)
    await task.fetch_related("case")
    return task


async def claim(*, actor: Principal, task_id: int) -> CaseTask:
    """Take a task from the queue: one holder, however many click at once."""
    now = clock.now()
    async with in_transaction() as conn:
        task, case = await _locked(actor, task_id)
        _workable(case)
        if task.status is TaskStatus.claimed and task.claimed_by_id == actor.user_id:  # type: ignore[attr-defined]
            return await get_task(actor=actor, task_id=task_id)  # a retry: already mine
        if task.status is TaskStatus.claimed:
            raise AppError(ErrorCode.task_taken)
        if task.status is not TaskStatus.pending:
            raise AppError(ErrorCode.task_state)
        # Conditional on the state and version read: where the backend has no row locks
        # this is what keeps a second taker out.
        took = await CaseTask.filter(id=task.id, status=TaskStatus.pending,
                                     version=task.version).using_db(conn).update(
            status=TaskStatus.claimed, claimed_by_id=actor.user_id, claimed_at=now,
            version=task.version + 1)
        if not took:
            raise AppError(ErrorCode.task_taken)
        if case.status in (S.accepted, S.resubmitted):
            # The applicant sees 审查中 once a department works on it: the case's move runs
            # inside this transaction (a savepoint), so the take and the move stand together.
            await _start_review(actor, case.id, note=f"{task.department}开始审批")
    return await get_task(actor=actor, task_id=task_id)


async def _start_review(actor: Principal, case_id: int, *, note: str) -> None:
    try:
        await cases.move_decided(actor=actor, case_id=case_id, action=Action.start_review,
                                 note=note)
    except AppError as exc:
        # Another department's claim moved it first: nothing left to do.
        if exc.code not in (ErrorCode.illegal_transition, ErrorCode.case_changed):
            raise


def _opinion(text: str, *, least: int, field: str, what: str) -> str:
    text = text.strip()
    if len(text) < least:
        raise AppError(ErrorCode.validation_failed, f"请填写{what}",
                       fields={field: f"请填写{what}（至少{least}个字）"})
    return text[:500]


async def decide(*, actor: Principal, task_id: int, approve: bool, opinion: str) -> CaseTask:
    """Approve or reject one department's part, with an opinion; the case is decided when
    every department has."""
    opinion = _opinion(opinion, least=2, field="opinion", what="审批意见")
    now = clock.now()
    async with in_transaction() as conn:
        task, case = await _locked(actor, task_id)
        _workable(case)
        if task.status is not TaskStatus.claimed:
            raise AppError(ErrorCode.task_state, "请先认领该审批任务")
        if task.claimed_by_id != actor.user_id:  # type: ignore[attr-defined]
            raise AppError(ErrorCode.task_taken, "该审批任务由他人办理")
        outcome = TaskStatus.approved if approve else TaskStatus.rejected
        moved = await CaseTask.filter(id=task.id, version=task.version).using_db(conn).update(
            status=outcome, decided_by_id=actor.user_id, decided_at=now, opinion=opinion,
            version=task.version + 1)
        if not moved:
            raise AppError(ErrorCode.task_state)
        # The last decision moves the case in the same transaction (the case row is already
        # locked here, so two departments' last decisions run one after the other).
        await settle(case_id=case.id, actor=actor)
    return await get_task(actor=actor, task_id=task_id)


async def return_to_window(*, actor: Principal, task_id: int, reason: str) -> CaseTask:
    """Send the case back to the window with a reason (材料需澄清, 事项选错 …). The case moves
    first (the table decides whether it can); then this task waits for the window's resend."""
    reason = _opinion(reason, least=4, field="reason", what="退回理由")
    task = await access_task(actor, task_id)
    if task.status is not TaskStatus.claimed or task.claimed_by_id != actor.user_id:  # type: ignore[attr-defined]
        raise AppError(ErrorCode.task_state, "请先认领该审批任务")
    await cases.move_decided(actor=actor, case_id=task.case_id,  # type: ignore[attr-defined]
                             action=Action.return_to_window,
                             note=f"{task.department}：{reason}")
    await CaseTask.filter(id=task.id, status=TaskStatus.claimed).update(
        status=TaskStatus.returned, opinion=reason, version=task.version + 1)
    return await get_task(actor=actor, task_id=task_id)


async def settle(*, case_id: int, actor: Principal) -> Case | None:
    """Decide the case when every department has: all approved → approved, any rejected →
    rejected (their opinions on the timeline). Safe to repeat and to race: the case's table
    move happens once, the others find it moved."""
    # Locking reads: inside a decision's transaction a plain read would see the snapshot
    # taken before another department's decision committed (REPEATABLE READ), and neither
    # of two racing last decisions would move the case.
    tasks = await CaseTask.filter(case_id=case_id).select_for_update().order_by("id")
    if not tasks or any(t.status not in DECIDED_TASK for t in tasks):
        return None
    ok = all(t.status is TaskStatus.approved for t in tasks)
    note = "；".join(f"{t.department}：{t.opinion}" for t in tasks)[:500]
    case = await Case.filter(id=case_id).select_for_update().first()
    if case is None:
        return None
    if case.status in (S.accepted, S.resubmitted):
        await _start_review(actor, case_id, note="")
    try:
        return await cases.move_decided(actor=actor, case_id=case_id,
                                        action=Action.approve if ok else Action.reject,
                                        note=note)
    except AppError as exc:
        if exc.code in (ErrorCode.illegal_transition, ErrorCode.case_changed):
            return None  # settled by a racing decision (or the case moved on)
        raise


async def settle_stragglers(*, batch: int = 200) -> int:
    """Cases whose every task is decided but which did not move (the process stopped between
    the last decision and the case's move): finish them, named after the last decider."""
    ids: list[int] = await CaseTask.filter(
        status__in=DECIDED_TASK, case__status__in=WORKABLE).distinct().limit(batch) \
        .values_list("case_id", flat=True)  # type: ignore[assignment]
    done = 0
    for case_id in set(ids):
        tasks = await CaseTask.filter(case_id=case_id).order_by("-decided_at")
        if not tasks or any(t.status not in DECIDED_TASK for t in tasks):
            continue
        who = tasks[0].decided_by_id  # type: ignore[attr-defined]
        if who is None:
            continue
        actor = Principal(user_id=who, roles=frozenset({Role.resident.value, Role.staff.value}))
        if await settle(case_id=case_id, actor=actor) is not None:
            done += 1
    return done


@jobs.periodic("approval.settle", every_seconds=60)
async def _settle_sweep() -> None:
    n = await settle_stragglers()
    if n:
        log.info("approval cases settled by the sweep", extra={"count": n})


async def tasks_of(case_id: int) -> list[CaseTask]:
    """A case's departments and their progress, for the case detail (whoever may see the case
    may see this; the caller has already passed ``access_case``)."""
    return await CaseTask.filter(case_id=case_id).order_by("id")
