"""不予受理: refusing to accept, never silently. The clerk chooses the ground from the item's
refusal grounds (办事指南 "不予受理情形"); the refusal records it with the item's legal basis,
the applicant is notified (the case's ``case_result`` notice, which falls back to SMS), and the
不予受理告知书 is printable from the record (``notices.refusal_notice``)."""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient

from models.cases import Case
from models.window import CaseRefusal
from services import cases, clock
from services.auth import Principal
from services.errors import AppError, ErrorCode
from services.window.rules import rules_for


async def refuse(*, actor: Principal, case_id: int, ground: str, note: str = "",
                 expected_version: int | None = None) -> Case:
    case = await cases.access_case(actor, case_id)
    rules = await rules_for(case)
    ground = ground.strip()
    if not rules.refusal_grounds:
        raise AppError(ErrorCode.validation_failed, "该事项未载明不予受理情形，不能不予受理",
                       fields={"ground": "事项未配置不予受理情形"})
    if ground not in rules.refusal_grounds:
        raise AppError(ErrorCode.validation_failed, "请从该事项的不予受理情形中选择理由",
                       fields={"ground": "不是该事项的不予受理情形"})
    note = note.strip()[:500]

    async def record(locked: Case, conn: BaseDBAsyncClient) -> None:
        await CaseRefusal.create(case_id=locked.id, ground=ground,
                                 legal_basis=rules.legal_basis or "", note=note,
                                 refused_by_id=actor.user_id, refused_at=clock.now(),
                                 using_db=conn)

    return await cases._move(actor=actor, case_id=case_id, action=cases.Action.refuse,
                             note=f"不予受理：{ground}" + (f"（{note}）" if note else ""),
                             expected_version=expected_version, on_locked=record)


async def refusal_of(case_id: int) -> CaseRefusal | None:
    return await CaseRefusal.get_or_none(case_id=case_id)
