"""首问负责: the first staff member who receives a request is accountable for it until a
recorded hand-over to another staff member whose scope covers the case.

"Receives" is the first staff action on the case: opening it at the window, or the first move
a staff member makes on a case a resident filed online (accept, 一次性告知, refusal ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Subquery
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from models.cases import Case
from models.catalogue import Hall
from models.users import User, UserRole
from models.window import CaseOwner
from services import cases, clock
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden
from services.scope import scope_of


async def first_receiver(case: Case, staff_id: int, *, using_db: BaseDBAsyncClient) -> None:
    """Record ``staff_id`` as the owner if the case has none. Called inside the transaction
    that holds the case row's lock, so two first actions can't both record themselves (and
    the unique ``active_case_id`` would refuse the second if one ever did)."""
    if await CaseOwner.exists(active_case_id=case.id):
        return
    await CaseOwner.create(case_id=case.id, staff_id=staff_id, active_case_id=case.id,
                           since=clock.now(), using_db=using_db)


async def current_owner(case_id: int) -> CaseOwner | None:
    return await CaseOwner.filter(active_case_id=case_id).select_related("staff").first()


async def _staff_principal(user_id: int) -> Principal | None:
    user = await User.get_or_none(id=user_id, is_active=True)
    if user is None:
        return None
    roles = await UserRole.filter(user_id=user.id).values_list("role", flat=True)
    return Principal(user_id=user.id, roles=frozenset(str(r) for r in roles))


async def hand_over(*, actor: Principal, case_id: int, to_user_id: int, note: str) -> CaseOwner:
    """The current owner, or a hall manager / supervisor over the case's hall, hands the case
    to another staff member in scope. The hand-over is the record: who, to whom, why, when."""
    note = note.strip()
    if len(note) < 2:
        raise AppError(ErrorCode.validation_failed, "请说明移交原因", fields={"note": "必填"})
    now = clock.now()
    async with in_transaction() as conn:
        case, acc = await cases.case_and_access(actor, case_id, lock=True)
        if cases.ActorKind.staff not in acc.kinds:
            raise forbidden()
        if case.status in cases.TERMINAL:
            raise AppError(ErrorCode.illegal_transition, "办件已结束，无需移交")
        owner = await CaseOwner.filter(active_case_id=case.id).first()
        is_owner = owner is not None and owner.staff_id == actor.user_id  # type: ignore[attr-defined]
        if not is_owner:
            hall = await Hall.get_or_none(code=case.hall_code)
            if hall is None or not (await scope_of(actor)).manages(hall):
                raise forbidden("仅首问责任人或大厅负责人、督查可以移交")
        target = await _staff_principal(to_user_id)
        if (target is None or not target.is_staff or to_user_id == actor.user_id
                or not (await scope_of(target)).covers(hall_code=case.hall_code,
                                                       department=case.department)):
            # One answer for "no such user" and "not someone who may take this case".
            raise AppError(ErrorCode.validation_failed, "接收人须为可办理该办件的其他工作人员",
                           fields={"to_user_id": "接收人不可办理该办件"})
        if owner is not None:
            await CaseOwner.filter(id=owner.id).using_db(conn).update(active_case_id=None,
                                                                       until=now)
        return await CaseOwner.create(case_id=case.id, staff_id=to_user_id,
                                      active_case_id=case.id, since=now,
                                      handed_over_by_id=actor.user_id, note=note[:500],
                                      using_db=conn)


async def history(case_id: int) -> list[CaseOwner]:
    return await CaseOwner.filter(case_id=case_id).order_by("id")


async def unowned(*, actor: Principal, cursor: int | None,
                  limit: int) -> tuple[list[Case], int | None]:
    """Open requests in the caller's scope that no staff member has received yet."""
    if not actor.is_staff:
        raise forbidden()
    in_scope = (await scope_of(actor)).q(hall_code="hall_code", department="department")
    owned = Subquery(CaseOwner.filter(active_case_id__isnull=False).values("active_case_id"))
    q = Case.filter(in_scope, status__not_in=cases.TERMINAL).exclude(id__in=owned)
    return await cases._page(q, status=None, cursor=cursor, limit=limit)


@dataclass(frozen=True)
class OwnerLoad:
    staff_id: int
    open_cases: int


async def load(*, actor: Principal) -> list[OwnerLoad]:
    """Each owner's open requests, counting only cases in the caller's scope."""
    if not actor.is_staff:
        raise forbidden()
    in_scope = (await scope_of(actor)).q(hall_code="case__hall_code",
                                         department="case__department")
    rows = await (
        CaseOwner.filter(in_scope, active_case_id__isnull=False,
                         case__status__not_in=cases.TERMINAL)
        .annotate(n=Count("id")).group_by("staff_id").values("staff_id", "n")
    )
    out = [OwnerLoad(staff_id=int(r["staff_id"]), open_cases=int(r["n"])) for r in rows]
    return sorted(out, key=lambda o: (-o.open_cases, o.staff_id))
