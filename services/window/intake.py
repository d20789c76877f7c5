"""Walk-in intake: a clerk opens a case for the person standing at the window.

The hall is the clerk's own (``Scope.scanning_hall``), never a field. The person is found by
ID number, or created (a desk registration: the clerk has the ID card in hand). A checked-in
appointment at this hall pre-fills the person and the item, and opens at most one case. The
case belongs to the person: their face-verified account is the applicant at once, or adopts the
case when it is verified later (``adopt_walk_ins``), so a typed-in identity never shows anyone
a case."""

from __future__ import annotations

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.appointments import AppointmentStatus
from models.cases import Case, CaseEvent, CaseStatus
from models.users import Person, User
from models.window import CaseOwner, WalkIn
from services import cases, clock, deskview, people, ratelimit, ratings, verification
from services.appointments import access_appointment
from services.auth import Principal
from services.errors import AppError, ErrorCode
from services.scope import scope_of

INTAKE_PER_HOUR = 120  # identity look-ups per clerk per hour


async def adopt_walk_ins(user_id: int, *, case_id: int | None = None) -> bool:
    """Give the account's verified person's unadopted walk-in cases to the account (all of
    them, or only ``case_id``). A conditional update: racing adopters write the same value."""
    person = await verification.verified_person_of(user_id)
    if person is None:
        return False
    q = Case.filter(applicant_id=None, person_id=person.id)
    if case_id is not None:
        q = q.filter(id=case_id)
    return bool(await q.update(applicant_id=user_id))


async def opened_at_window(case_id: int) -> bool:
    """Whether the case was opened at a window for a walk-in (not applied for online)."""
    return await WalkIn.exists(case_id=case_id)


async def _verified_account(person: Person) -> int | None:
    user = await User.get_or_none(person_id=person.id, is_active=True)
    return user.id if user is not None and verification.is_verified(user) else None


async def walk_in(
    *,
    actor: Principal,
    name: str | None,
    id_number: str | None,
    item_code: str | None,
    bundle_code: str | None,
    appointment_id: int | None,
    note: str = "",
) -> Case:
    hall_code = (await scope_of(actor)).scanning_hall if actor.is_staff else None
    if hall_code is None:
        # Someone at a hall's window: a clerk or the hall's manager. An approver or supervisor
        # never has the person and the ID card in front of them.
        raise AppError(ErrorCode.window_clerk_only)
    person: Person | None = None
    if appointment_id is not None:
        existing = await WalkIn.get_or_none(appointment_id=appointment_id)
        if existing is not None:
            # The same appointment opens one case: a second press answers the first case,
            # but only to someone who may see it.
            return await cases.access_case(actor, existing.case_id)  # type: ignore[attr-defined]
        appt = await access_appointment(actor, appointment_id)
        if appt.hall.code != hall_code or appt.status is not AppointmentStatus.checked_in:
            raise AppError(ErrorCode.validation_failed, "预约须已在本大厅签到",
                           fields={"appointment_id": "预约未在本大厅签到"})
        person = appt.person
        if item_code is None and bundle_code is None:
            item_code = appt.item_code
    created = False
    if id_number is not None or name is not None:
        if not (id_number and name):
            raise AppError(ErrorCode.validation_failed, "请填写姓名和身份证号",
                           fields={"name" if not name else "id_number": "必填"})
        idn = people.parse_id_number(id_number)
        # A busy window receives some dozens of people an hour; a clerk account walking a list
        # of ID numbers (a mismatch answer says whose number it is not) hits this first.
        await ratelimit.hit(f"window:intake:{actor.user_id}", limit=INTAKE_PER_HOUR,
                            window_seconds=3600, message="现场受理录入过于频繁，请稍后再试")
        existed = await Person.exists(id_number_hash=people.id_lookup_hash(idn.value))
        typed = await people.upsert_person(name=name, id_number=idn.value)
        if person is not None and typed.id != person.id:
            raise AppError(ErrorCode.validation_failed, "证件与预约人不一致",
                           fields={"id_number": "与预约人不一致"})
        person, created = typed, not existed
    if person is None:
        raise AppError(ErrorCode.validation_failed, "请读取身份证或填写姓名和身份证号",
                       fields={"id_number": "必填"})
    subj = await cases._subject(item_code, bundle_code)
    if subj.subject == "enterprise":
        raise AppError(ErrorCode.validation_failed, "企业事项请由企业经办人在线申请",
                       fields={"item_code": "窗口代录仅限个人事项"})
    if hall_code not in subj.halls:
        raise AppError(ErrorCode.validation_failed, "本大厅不办理该事项",
                       fields={"item_code": "本大厅不办理该事项"})
    applicant_id = await _verified_account(person)
    try:
        async with in_transaction() as conn:
            case = await Case.create(
                applicant_id=applicant_id, person_id=person.id, submitted_by_id=actor.user_id,
                item_code=item_code, bundle_code=bundle_code, title=subj.title,
                department=subj.department, theme=subj.theme, hall_code=hall_code,
                status=CaseStatus.submitted, promised_days=subj.promised_days, using_db=conn,
            )
            await WalkIn.create(case_id=case.id, clerk_id=actor.user_id,
                                appointment_id=appointment_id, registered_person=created,
                                using_db=conn)
            if appointment_id is not None:
                # The clerk opening a case from the visit served it (served.py reads the
                # WalkIn): a rating the resident gave while waiting reaches them as well.
                await ratings.tie_appointment_rating(appointment_id, using_db=conn)
            # 首问负责: the clerk who received the person owns the request.
            await CaseOwner.create(case_id=case.id, staff_id=actor.user_id,
                                   active_case_id=case.id, since=clock.now(), using_db=conn)
            event = await CaseEvent.create(
                case_id=case.id, actor_id=actor.user_id, actor_kind=cases.ActorKind.staff,
                action="walk_in", from_status=None, to_status=CaseStatus.submitted,
                note=(note.strip() or "综窗现场受理申请")[:500], using_db=conn,
            )
            # Promised through the outbox with the case: sent after commit, never if it
            # rolls back (an applicant without an account yet is told nothing here).
            await cases._notify(case, event, using_db=conn)
    except IntegrityError:
        # Two presses with the same appointment at once: the other one opened it.
        if appointment_id is None:
            raise
        existing = await WalkIn.get(appointment_id=appointment_id)
        return await cases.access_case(actor, existing.case_id)  # type: ignore[attr-defined]
    await deskview.changed(person.id)
    return case
