"""容缺受理 and 告知承诺制: accepting a case with materials still missing.

- 容缺: the clerk names the missing non-key materials (the item marks them ``tolerable``), the
  applicant commits to a date (at most ``TOLERANCE_MAX_DAYS`` ahead), the promised clock runs
  from acceptance as usual, each material is tracked until a staff member records it received,
  a sweep alerts once per material when its date has passed, and the result is held
  (``release.result_release_blockers``) until every one is in.
- 告知承诺: for items that allow it, the applicant's signed commitment stands in for the
  materials marked ``commitment``; it is recorded (text, when, who signed, who recorded) with a
  核查 task due ``COMMITMENT_CHECK_DAYS`` later. A commitment found untrue is an event on the
  case's timeline and holds the result.

Anything an open 一次性告知 listed that is neither tolerated nor promised is a key material:
the case can't be accepted (``window_key_materials_missing``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.cases import Case, CaseAlert, CaseAlertLevel, CaseEvent, SupplementRequest
from models.users import Person
from models.window import CaseCommitment, CommitmentCheck, ToleratedMaterial
from services import cases, clock, jobs, notifications
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.scope import scope_of
from services.window.rules import rules_for

log = logging.getLogger(__name__)

TOLERANCE_MAX_DAYS = 60  # the longest a 容缺 promise may run (calendar days)
COMMITMENT_CHECK_DAYS = 30  # 告知承诺 核查 due this many days after acceptance


async def accept(
    *,
    actor: Principal,
    case_id: int,
    tolerated: Sequence[tuple[str, str]] = (),
    supply_by: date | None = None,
    commitment_text: str | None = None,
    received: Sequence[str] = (),
    note: str = "",
    expected_version: int | None = None,
) -> Case:
    """``received``: materials the open notice listed that the applicant has now handed in at
    the desk; ``tolerated``: (material, reason) accepted missing until ``supply_by``."""
    case = await cases.access_case(actor, case_id)
    rules = await rules_for(case)
    errors: dict[str, str] = {}
    names: list[str] = []
    reasons: dict[str, str] = {}
    for i, (material, reason) in enumerate(tolerated):
        material = material.strip()
        if material not in rules.materials:
            errors[f"tolerated.{i}.material"] = "不在该事项的材料清单中"
        elif material not in rules.tolerable:
            errors[f"tolerated.{i}.material"] = "该材料为必须当场提交的关键材料，不能容缺"
        elif material in reasons:
            errors[f"tolerated.{i}.material"] = "重复列出"
        names.append(material)
        reasons[material] = reason.strip()[:500]
    in_hand = {m.strip() for m in received}
    for i, m in enumerate(received):
        if m.strip() not in rules.materials:
            errors[f"received.{i}"] = "不在该事项的材料清单中"
    today = clock.today()
    if names:
        if supply_by is None:
            errors["supply_by"] = "容缺受理须约定补齐日期"
        elif not today < supply_by <= today + timedelta(days=TOLERANCE_MAX_DAYS):
            errors["supply_by"] = f"补齐日期须在今天之后{TOLERANCE_MAX_DAYS}天以内"
    text = (commitment_text or "").strip()
    if commitment_text is not None:
        if not rules.promisable:
            errors["commitment_text"] = "该事项不适用告知承诺制"
        elif len(text) < 10:
            errors["commitment_text"] = "请录入申请人签署的承诺内容"
    if errors:
        raise AppError(ErrorCode.validation_failed, "受理信息有误", fields=errors)
    promised = rules.promisable if text else frozenset()

    async def record(locked: Case, conn: BaseDBAsyncClient) -> None:
        now = clock.now()
        open_notice = await SupplementRequest.filter(case_id=locked.id,
                                                     resolved_at=None).first()
        listed = [str(i.get("material", "")) for i in
                  (open_notice.items.get("items", []) if open_notice else [])]
        key = [m for m in listed if m not in reasons and m not in promised and m not in in_hand]
        if key:
            raise AppError(ErrorCode.window_key_materials_missing,
                           f"尚缺关键材料：{'、'.join(key)}",
                           fields={"tolerated": "、".join(key)})
        if open_notice is not None:
            # What the notice listed is now either in hand, tolerated or promised.
            await SupplementRequest.filter(id=open_notice.id).using_db(conn).update(
                resolved_at=now)
        for name in names:
            await ToleratedMaterial.create(case_id=locked.id, material=name,
                                           reason=reasons[name], supply_by=supply_by,
                                           accepted_by_id=actor.user_id, using_db=conn)
        if text:
            person = await Person.get_or_none(id=locked.person_id)  # type: ignore[attr-defined]
            await CaseCommitment.create(
                case_id=locked.id, materials={"materials": sorted(promised)}, text=text,
                signer_masked=person.name_masked if person else "", signed_at=now,
                recorded_by_id=actor.user_id,
                check_due=today + timedelta(days=COMMITMENT_CHECK_DAYS), using_db=conn,
            )

    parts = [note.strip()]
    if in_hand:
        parts.append(f"已收：{'、'.join(sorted(in_hand))}")
    if names:
        parts.append(f"容缺受理，待补：{'、'.join(names)}（{supply_by}前）")
    if text:
        parts.append("告知承诺制受理")
    return await cases._move(actor=actor, case_id=case_id, action=cases.Action.accept,
                             note="；".join(p for p in parts if p),
                             expected_version=expected_version, on_locked=record)


async def _staff_case(actor: Principal, case_id: int) -> Case:
    case, acc = await cases.case_and_access(actor, case_id, lock=True)
    if cases.ActorKind.staff not in acc.kinds:
        raise forbidden()
    return case


async def mark_supplied(*, actor: Principal, case_id: int, material_id: int) -> ToleratedMaterial:
    """A staff member in scope received a tolerated material. Repeating it changes nothing."""
    now = clock.now()
    async with in_transaction() as conn:
        case = await _staff_case(actor, case_id)
        row = await ToleratedMaterial.get_or_none(id=material_id, case_id=case.id)
        if row is None:
            raise not_found("容缺材料")
        if row.supplied_at is None:
            await ToleratedMaterial.filter(id=row.id, supplied_at=None).using_db(conn).update(
                supplied_at=now, received_by_id=actor.user_id)
            row.supplied_at, row.received_by_id = now, actor.user_id
            await CaseEvent.create(case_id=case.id, actor_id=actor.user_id,
                                   actor_kind=cases.ActorKind.staff, action="material_supplied",
                                   from_status=case.status, to_status=case.status,
                                   note=f"已补齐容缺材料：{row.material}", using_db=conn)
    return row


async def tolerated_of(case_id: int) -> list[ToleratedMaterial]:
    return await ToleratedMaterial.filter(case_id=case_id).order_by("id")


async def commitment_of(case_id: int) -> CaseCommitment | None:
    return await CaseCommitment.get_or_none(case_id=case_id)


# --- overdue 容缺 materials -------------------------------------------------------------------


async def raise_material_alerts(*, today: date | None = None) -> int:
    """Once per late material: mark it, raise the case's ``materials_late`` alert (staff see it
    with the other case alerts) and tell the applicant. Re-running finds nothing new."""
    today = today or clock.today()
    rows = await ToleratedMaterial.filter(
        supplied_at=None, alerted_at=None, supply_by__lt=today,
        case__status__not_in=cases.TERMINAL,
    ).select_related("case")
    raised = 0
    for row in rows:
        try:
            if await _alert_one(row):
                raised += 1
        except IntegrityError:
            continue  # a racing sweeper raised the case's alert first; the next sweep retries
    return raised


async def _alert_one(row: ToleratedMaterial) -> bool:
    """Mark, alert and promise the notice in one transaction: all of it or none."""
    async with in_transaction() as conn:
        # Conditional: two sweepers racing both see the row, one marks it.
        if not await ToleratedMaterial.filter(id=row.id, alerted_at=None).using_db(conn).update(
                alerted_at=clock.now()):
            return False
        due = datetime.combine(row.supply_by, time(23, 59), tzinfo=clock.SHANGHAI)
        if not await CaseAlert.exists(case_id=row.case.id, level=CaseAlertLevel.materials_late):
            # Unique (case, level): a second late material of the case shares the alert.
            await CaseAlert.create(case_id=row.case.id, level=CaseAlertLevel.materials_late,
                                   due_at=due, using_db=conn)
        if row.case.applicant_id is not None:  # type: ignore[attr-defined]
            await notifications.notify_after_commit(
                using_db=conn,
                user_id=row.case.applicant_id,  # type: ignore[attr-defined]
                template="case_supplement",
                data={"case_id": row.case.id, "title": row.case.title,
                      "status": "容缺材料已逾期",
                      "note": f"请尽快补交{row.material}"[:20]},
                dedup_key=f"case:{row.case.id}:tolerated:{row.id}:late",
                hall_code=row.case.hall_code, department=row.case.department,
                page=f"pages/cases/detail?id={row.case.id}",
            )
    return True


@jobs.periodic("window.tolerated_overdue", every_seconds=3600)
async def _sweep_tolerated() -> None:
    n = await raise_material_alerts()
    if n:
        log.info("tolerated materials overdue", extra={"count": n})


# --- 告知承诺 核查 -------------------------------------------------------------------------------


async def access_commitment(actor: Principal, commitment_id: int, *, for_change: bool = False,
                            lock: bool = False) -> CaseCommitment:
    """Staff whose scope covers the case; anyone else gets not_found. Checking it
    (``for_change``) asks the same: the check is the department's or the hall's staff work."""
    q = CaseCommitment.filter(id=commitment_id)
    row = await (q.select_for_update() if lock else q).select_related("case").first()
    if row is None or not actor.is_staff or not (await scope_of(actor)).covers(
            hall_code=row.case.hall_code, department=row.case.department):
        raise not_found("承诺")
    return row


async def pending_checks(*, actor: Principal, cursor: int | None,
                         limit: int) -> tuple[list[CaseCommitment], int | None]:
    """Pending 核查 tasks in scope, newest first (paged by id, like every cursor list)."""
    if not actor.is_staff:
        raise forbidden()
    in_scope = (await scope_of(actor)).q(hall_code="case__hall_code",
                                         department="case__department")
    q = CaseCommitment.filter(in_scope, check_status=CommitmentCheck.pending).select_related(
        "case")
    if cursor is not None:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def check_commitment(*, actor: Principal, commitment_id: int, truthful: bool,
                           finding: str) -> CaseCommitment:
    finding = finding.strip()
    if len(finding) < 2:
        raise AppError(ErrorCode.validation_failed, "请填写核查情况", fields={"finding": "必填"})
    now = clock.now()
    outcome = CommitmentCheck.verified if truthful else CommitmentCheck.false
    async with in_transaction() as conn:
        row = await access_commitment(actor, commitment_id, for_change=True, lock=True)
        if row.check_status is not CommitmentCheck.pending:
            raise AppError(ErrorCode.window_commitment_checked)
        await CaseCommitment.filter(id=row.id, check_status=CommitmentCheck.pending).using_db(
            conn).update(check_status=outcome, checked_by_id=actor.user_id, checked_at=now,
            finding=finding[:500])
        row.check_status, row.checked_at, row.finding = outcome, now, finding[:500]
        await CaseEvent.create(
            case_id=row.case.id, actor_id=actor.user_id, actor_kind=cases.ActorKind.staff,
            action="commitment_verified" if truthful else "commitment_false",
            from_status=row.case.status, to_status=row.case.status,
            note=("告知承诺核查属实：" if truthful else "告知承诺核查不实：") + finding[:400],
            using_db=conn)
    return row
