"""Who served a case (好差评 that reaches people): the clerk who received it, each department's
approver who decided it, the 帮办员 who took it, and the clerk who handed the result over.
services/ratings.py ties a rating to each of them."""

from __future__ import annotations

from dataclasses import dataclass

from models.approval import CaseRelease, CaseTask
from models.cases import Case, CaseEvent, HelperAssignment, HelperAssignmentStatus
from models.ratings import ServedAs


@dataclass(frozen=True)
class Served:
    user_id: int
    served_as: ServedAs
    department: str
    hall_code: str


async def staff_who_served(case: Case) -> list[Served]:
    out: dict[tuple[int, ServedAs], Served] = {}

    def add(user_id: int | None, role: ServedAs, department: str) -> None:
        if user_id is not None:
            out.setdefault((user_id, role), Served(user_id, role, department, case.hall_code))

    for e in await CaseEvent.filter(case_id=case.id, action="accept", actor_kind="staff"):
        add(e.actor_id, ServedAs.clerk, case.department)  # type: ignore[attr-defined]
    rel = await CaseRelease.get_or_none(case_id=case.id)
    if rel is not None:
        add(rel.released_by_id, ServedAs.clerk, case.department)  # type: ignore[attr-defined]
    for t in await CaseTask.filter(case_id=case.id).order_by("id"):
        add(t.decided_by_id, ServedAs.approver, t.department)  # type: ignore[attr-defined]
    for a in await HelperAssignment.filter(
            case_id=case.id,
            status__in=(HelperAssignmentStatus.accepted, HelperAssignmentStatus.done)):
        add(a.helper_id, ServedAs.helper, case.department)  # type: ignore[attr-defined]
    return list(out.values())
