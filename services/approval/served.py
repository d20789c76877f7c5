"""Who served a case or an appointment (好差评 that reaches people). A case: the clerk who
received it, each department's approver who decided it, the 帮办员 who took it, and the clerk
who handed the result over. An appointment (a visit to a hall window): the clerk recorded on it
(``Appointment.served_by``: who checked the resident in by their code, or the first clerk who
acted on a self check-in) and the clerk who opened a walk-in case from it.
services/ratings.py ties a rating to each of them."""

from __future__ import annotations

from dataclasses import dataclass

from models.appointments import Appointment
from models.approval import CaseRelease, CaseTask
from models.cases import Case, CaseEvent, HelperAssignment, HelperAssignmentStatus
from models.ratings import ServedAs
from models.window import WalkIn


@dataclass(frozen=True)
class Served:
    user_id: int
    served_as: ServedAs
    department: str
    hall_code: str


class _Collector:
    """Each (person, role) once, in the order found: one rating row per way they served."""

    def __init__(self, hall_code: str) -> None:
        self.hall_code = hall_code
        self.out: dict[tuple[int, ServedAs], Served] = {}

    def add(self, user_id: int | None, role: ServedAs, department: str) -> None:
        if user_id is not None:
            self.out.setdefault((user_id, role),
                                Served(user_id, role, department, self.hall_code))


async def staff_who_served(case: Case) -> list[Served]:
    served = _Collector(case.hall_code)
    add = served.add

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
    return list(served.out.values())


async def staff_who_served_appointment(appointment_id: int, *, department: str,
                                       hall_code: str) -> list[Served]:
    """The clerks who served a visit, as clerks of the rated department and hall (the
    rating's own snapshot, as a case's clerk rows carry the case's). A self check-in no clerk
    acted on has nobody: the rating then stays the hall's."""
    served = _Collector(hall_code)
    appt = await Appointment.get_or_none(id=appointment_id)
    if appt is not None:
        served.add(appt.served_by_id, ServedAs.clerk, department)  # type: ignore[attr-defined]
    walk_in = await WalkIn.get_or_none(appointment_id=appointment_id)  # unique: one case
    if walk_in is not None:
        served.add(walk_in.clerk_id, ServedAs.clerk, department)  # type: ignore[attr-defined]
    return list(served.out.values())
