"""统一窗口出件: the result leaves through one window.

When a case is approved or rejected the applicant already gets the ``case_result`` notice
(services/cases.py, "办理结果已出", an SMS fallback when WeChat can't deliver it). They then
choose how to take the result: at the window, or by EMS to an address they give (encrypted at
rest, masked everywhere). The clerk then either

- hands it over at the window after checking the person in front of them: their 人码
  (resolved by ``services.codes.person_of_code``, the same Redis entry a scan reads) or their ID
  card number; it must be the applicant's person, or nothing is released; or
- records the EMS tracking number.

Either way ``services.window.release.result_release_blockers`` is asked first (容缺 materials still
missing block the hand-over), and the case makes its table move ``deliver`` only through here
once a choice exists (the generic transition refuses it then).
"""

from __future__ import annotations

import re
from typing import Any

from tortoise.transactions import in_transaction

from models.approval import CaseRelease, ReleaseMethod
from models.cases import Case, CaseStatus
from models.users import Person
from services import audit, cases, clock, codes, people, pii
from services.auth import Principal
from services.cases import Action, ActorKind, Moved
from services.errors import AppError, ErrorCode, forbidden
from services.identity import mask_address, mask_phone
from services.window import release as window_release

S = CaseStatus
RESULT_READY = (S.approved, S.rejected)
P_ADDRESS = "release.address"
P_RECIPIENT_PHONE = "release.phone"
# EMS numbers: 13 digits (domestic), or the UPU S10 form (two letters, nine digits, two letters).
_TRACKING = re.compile(r"^(\d{13}|[A-Z]{2}\d{9}[A-Z]{2})$")


async def _guard_deliver(m: Moved) -> None:
    """Once the applicant chose how to take the result, only this module may deliver it: the
    window hand-over checks who collects, the mail hand-over records the tracking number."""
    if m.action is Action.deliver and not m.by_approval and \
            await CaseRelease.exists(case_id=m.case.id):
        raise AppError(ErrorCode.release_required)


cases.MOVE_HOOKS.append(_guard_deliver)


async def choose(*, actor: Principal, case_id: int, method: ReleaseMethod,
                 address: str | None = None, phone: str | None = None) -> CaseRelease:
    """The applicant's choice (they may change it until the result is handed over)."""
    case, acc = await cases.case_and_access(actor, case_id)
    if ActorKind.applicant not in acc.kinds:
        raise forbidden("只有申请人本人可以选择领取方式")
    if case.status not in RESULT_READY:
        raise AppError(ErrorCode.release_not_ready)
    fields: dict[str, Any] = {"address_enc": None, "address_masked": "",
                                     "recipient_phone_enc": None, "recipient_phone_masked": ""}
    if method is ReleaseMethod.mail:
        address = (address or "").strip()
        errors = {}
        if len(address) < 8:
            errors["address"] = "请填写详细的邮寄地址（至少8个字）"
        if not phone:
            errors["phone"] = "请填写收件人手机号"
        if errors:
            raise AppError(ErrorCode.validation_failed, "邮寄须填写地址和收件人手机号",
                           fields=errors)
        assert phone is not None
        clean_phone = people.parse_phone(phone)
        fields = {"address_enc": pii.encrypt(address, purpose=P_ADDRESS),
                  "address_masked": mask_address(address),
                  "recipient_phone_enc": pii.encrypt(clean_phone, purpose=P_RECIPIENT_PHONE),
                  "recipient_phone_masked": mask_phone(clean_phone)}
    now = clock.now()
    async with in_transaction() as conn:
        locked = await Case.filter(id=case.id).select_for_update().first()
        if locked is None or locked.status not in RESULT_READY:
            raise AppError(ErrorCode.release_not_ready)
        existing = await CaseRelease.filter(case_id=case.id).select_for_update().first()
        if existing is not None:
            if existing.released_at is not None:
                raise AppError(ErrorCode.release_not_ready, "结果已领取或寄出")
            await CaseRelease.filter(id=existing.id).using_db(conn).update(
                method=method, chosen_at=now, **fields)
        else:
            await CaseRelease.create(case_id=case.id, method=method, chosen_at=now,
                                     using_db=conn, **fields)
    return await CaseRelease.get(case_id=case.id)


async def _staff_case(actor: Principal, case_id: int) -> Case:
    """A clerk (or other staff) in scope of the case's hall or department hands results over."""
    case, acc = await cases.case_and_access(actor, case_id)
    if ActorKind.staff not in acc.kinds:
        raise forbidden("只有窗口工作人员可以出件")
    return case


async def _blockers(case: Case) -> None:
    blockers = await window_release.result_release_blockers(case)
    if blockers:
        raise AppError(ErrorCode.release_blocked,
                       fields={f"blockers.{i}": b for i, b in enumerate(blockers)})


async def _release(*, actor: Principal, case: Case, method: ReleaseMethod, note: str,
                   **done: object) -> CaseRelease:
    now = clock.now()
    async with in_transaction() as conn:
        # Case first, then its release row, as ``choose`` does: one lock order, no deadlock.
        await Case.filter(id=case.id).select_for_update().first()
        rel = await CaseRelease.filter(case_id=case.id).select_for_update().first()
        if rel is None:
            rel = await CaseRelease.create(case_id=case.id, method=method, chosen_at=now,
                                           using_db=conn)
        if rel.released_at is not None:
            raise AppError(ErrorCode.release_not_ready, "结果已领取或寄出")
        if rel.method is not method:
            raise AppError(ErrorCode.release_method)
        await CaseRelease.filter(id=rel.id).using_db(conn).update(
            released_by_id=actor.user_id, released_at=now, **done)
        # The case's table move in the same transaction (a savepoint): released and
        # delivered stand or fall together.
        await cases.move_decided(actor=actor, case_id=case.id, action=Action.deliver,
                                 note=note)
    return await CaseRelease.get(case_id=case.id)


async def hand_over(*, actor: Principal, case_id: int, person_code: str | None = None,
                    id_number: str | None = None) -> CaseRelease:
    """Window pick-up: the clerk checks the person at the desk against the applicant."""
    case = await _staff_case(actor, case_id)
    if case.status not in RESULT_READY:
        raise AppError(ErrorCode.release_not_ready, "办理结果尚未出具或已出件")
    if (person_code is None) == (id_number is None):
        raise AppError(ErrorCode.validation_failed, "请扫描领取人的个人码或读取其身份证",
                       fields={"person_code": "个人码与身份证号二选一"})
    if person_code is not None:
        person_id: int | None = await codes.person_of_code(actor=actor, content=person_code)
        how = "person_code"
    else:
        assert id_number is not None
        idn = people.parse_id_number(id_number)
        found = await Person.get_or_none(id_number_hash=people.id_lookup_hash(idn.value))
        person_id = found.id if found else None
        how = "id_card"
    if person_id is None or person_id != case.person_id:  # type: ignore[attr-defined]
        # Nobody collects someone else's result. The same answer for an unknown card and a
        # wrong person: the desk learns nothing about who else exists.
        raise AppError(ErrorCode.pickup_wrong_person)
    await _blockers(case)
    return await _release(actor=actor, case=case, method=ReleaseMethod.window,
                          note="窗口领取（已核验" + ("个人码" if how == "person_code" else "身份证")
                          + "）", collected_person_id=person_id, verified_by=how)


async def mail(*, actor: Principal, case_id: int, tracking_no: str) -> CaseRelease:
    """EMS: the clerk records the tracking number once the result is posted."""
    case = await _staff_case(actor, case_id)
    if case.status not in RESULT_READY:
        raise AppError(ErrorCode.release_not_ready, "办理结果尚未出具或已出件")
    number = tracking_no.strip().upper()
    if not _TRACKING.match(number):
        raise AppError(ErrorCode.validation_failed, "寄递单号格式不正确",
                       fields={"tracking_no": "应为13位数字或两位字母+9位数字+两位字母"})
    if not await CaseRelease.exists(case_id=case.id, method=ReleaseMethod.mail):
        raise AppError(ErrorCode.release_method, "申请人未选择邮寄")
    await _blockers(case)
    return await _release(actor=actor, case=case, method=ReleaseMethod.mail,
                          note=f"EMS寄递 {number}", tracking_no=number)


async def mail_address(*, actor: Principal, case_id: int) -> tuple[str, str]:
    """The full EMS address and phone for the clerk who posts the result: staff in the case's
    scope only, written to the audit log before decrypting."""
    case = await _staff_case(actor, case_id)
    rel = await CaseRelease.get_or_none(case_id=case.id, method=ReleaseMethod.mail)
    if rel is None or rel.address_enc is None or rel.recipient_phone_enc is None:
        raise AppError(ErrorCode.release_method, "申请人未选择邮寄")
    await audit.record(actor=actor, person_id=case.person_id,  # type: ignore[attr-defined]
                       action="case.release.address", fields_read=["address", "phone"],
                       reason=f"EMS寄递办件 {case.id}")
    return (pii.decrypt(rel.address_enc, purpose=P_ADDRESS),
            pii.decrypt(rel.recipient_phone_enc, purpose=P_RECIPIENT_PHONE))


async def release_of(case_id: int) -> CaseRelease | None:
    return await CaseRelease.get_or_none(case_id=case_id)
