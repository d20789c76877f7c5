"""Who may act for whom (代办关系): the one rule a worker's on-behalf action goes through, the
grids an admin gives a community worker, and the end of a worker's relations when the role goes.

A worker may act for a person only through a recorded relation:
- ``grid``: the person is a household member at a door plate in a community the worker is
  assigned to (``GridAssignment``, managed by admins over ``/api/v1/admin/grid-assignments``);
- ``consent``: the person's account granted this worker the scope, and has not revoked it
  (``ProxyAuthorization``, the resident's ``/api/v1/proxy-authorizations``);
- ``desk``: the worker created the person's record at the desk (``DeskRegistration``).
Grid and desk relations cover bookings only; acting on the resident's account (cases,
personal data) always needs their consent. The role itself is required too, read from the
principal, which the API narrows to the roles the database still holds (services.auth).
"""

from __future__ import annotations

import contextlib
import logging
from enum import StrEnum

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from models.cases import ProxyScope
from models.codes import DoorPlate, GridAssignment, Household
from models.onbehalf import DeskRegistration
from models.users import Person, Role, User, UserRole
from services import clock, codes, people, pii, ratelimit
from services.auth import Principal
from services.cases import proxy_scopes
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.settings import get_settings

log = logging.getLogger(__name__)

# Who may hold a relation for each scope. Booking for someone is the community worker's job
# (the desk and the grid); the case scopes are the 帮办 proxies'.
_ROLES_FOR: dict[ProxyScope, tuple[Role, ...]] = {
    ProxyScope.book: (Role.community_worker,),
}
_PROXY_ROLES = (Role.helper, Role.community_worker)


class Basis(StrEnum):
    grid = "grid"
    consent = "consent"
    desk = "desk"


def _refusal(scope: ProxyScope) -> AppError:
    if scope is ProxyScope.book:
        return AppError(ErrorCode.on_behalf_not_permitted)
    return AppError(ErrorCode.proxy_authorization_required)


async def _account_of(person_id: int) -> int | None:
    ids = await User.filter(person_id=person_id, is_active=True).values_list("id", flat=True)
    return int(ids[0]) if ids else None  # type: ignore[call-overload]


async def _in_grid(worker_id: int, person_id: int) -> bool:
    grids = await GridAssignment.filter(user_id=worker_id, is_active=True) \
        .values_list("county", "community")
    if not grids:
        return False
    where = Q(*[Q(doorplate__county=county, doorplate__community=community)
                for county, community in grids], join_type=Q.OR)
    return await Household.filter(where, person_id=person_id).exists()


async def relation(actor: Principal, *, scope: ProxyScope, person_id: int | None = None,
                   user_id: int | None = None, case_id: int | None = None) -> Basis | None:
    """The relation that lets ``actor`` act for the person (by person or account id) in
    ``scope``, or None; ``case_id`` also counts a consent given for that one case. No role
    check: see ``may_act_for``."""
    if user_id is None and person_id is not None:
        user_id = await _account_of(person_id)
    if user_id is not None and user_id != actor.user_id and scope in await proxy_scopes(
            grantor_id=user_id, helper_id=actor.user_id, case_id=case_id):
        return Basis.consent
    if scope is not ProxyScope.book:
        return None
    if person_id is None and user_id is not None:
        found = await User.filter(id=user_id).values_list("person_id", flat=True)
        person_id = found[0] if found else None  # type: ignore[assignment]
    if person_id is None:
        return None
    if await _in_grid(actor.user_id, person_id):
        return Basis.grid
    if await DeskRegistration.exists(person_id=person_id, worker_id=actor.user_id,
                                     ended_at=None):
        return Basis.desk
    return None


async def may_act_for(actor: Principal, *, scope: ProxyScope, person_id: int | None = None,
                      user_id: int | None = None, case_id: int | None = None) -> Basis:
    """The one rule for acting in someone else's name: the role for the scope, and a relation.
    Refuses with ``on_behalf_not_permitted`` (bookings) or ``proxy_authorization_required``
    (case scopes), the same answer whichever part is missing."""
    if not actor.has(*_ROLES_FOR.get(scope, _PROXY_ROLES)):
        raise _refusal(scope)
    basis = await relation(actor, scope=scope, person_id=person_id, user_id=user_id,
                           case_id=case_id)
    if basis is None:
        raise _refusal(scope)
    return basis


async def person_for_booking(actor: Principal, *, name: str, id_number: str) -> Person:
    """The person a community worker names to book for (代预约), if the worker may.

    Every refusal after the ID number's shape is checked is one answer: a wrong name for a
    registered number, a right name without a relation, and a wrong name inside one's own grid
    all read ``on_behalf_not_permitted``, so the answer can't confirm who an ID number belongs
    to. Attempts are counted per worker and per ID number (blind-indexed, never the number),
    so walking a list costs the limit. A number nobody has registered is the desk case: the
    worker creates the record and becomes its registrar."""
    if not actor.has(Role.community_worker):
        raise forbidden("仅社区工作人员可以代预约")
    idn = people.parse_id_number(id_number, field="on_behalf_of.id_number")
    lookup = people.id_lookup_hash(idn.value)
    s = get_settings()
    await ratelimit.hit(f"onbehalf:w:{actor.user_id}", limit=s.on_behalf_worker_rate_limit,
                        window_seconds=s.on_behalf_rate_window_seconds,
                        message="代办查询过于频繁，请稍后再试")
    await ratelimit.hit(f"onbehalf:id:{lookup[:32]}", limit=s.on_behalf_id_rate_limit,
                        window_seconds=s.on_behalf_rate_window_seconds,
                        message="该证件的代办查询过于频繁，请稍后再试")
    name = name.strip()
    person = await Person.get_or_none(id_number_hash=lookup)
    if person is None:
        person = await _register_at_desk(actor, name=name, id_number=idn.value)
    if pii.decrypt(person.name_enc, purpose=people.P_NAME) != name:
        raise _refusal(ProxyScope.book)
    await may_act_for(actor, scope=ProxyScope.book, person_id=person.id)
    return person


async def _register_at_desk(actor: Principal, *, name: str, id_number: str) -> Person:
    try:
        person = await people.upsert_person(name=name, id_number=id_number)
    except AppError as exc:
        # Only a concurrent registration of the same number under another name gets here.
        raise _refusal(ProxyScope.book) from exc
    # Someone who registered the same person a moment earlier holds the registration; the
    # relation check that follows decides for this worker.
    with contextlib.suppress(IntegrityError):
        await DeskRegistration.create(person_id=person.id, worker_id=actor.user_id)
    return person


# --- grids (admin) ---------------------------------------------------------------------------


def _admin(actor: Principal) -> None:
    if not actor.has(Role.admin):
        raise forbidden()


async def _invalidate_plates(county: str, community: str) -> None:
    # The plate's public view names the grid's worker: drop what Redis holds of it.
    for plate in await DoorPlate.filter(county=county, community=community):
        await codes.invalidate_views(doorplate_id=plate.id)


async def assign_grid(*, actor: Principal, user_id: int, county: str, community: str,
                      contact_name: str, contact_phone: str) -> GridAssignment:
    _admin(actor)
    if not await User.exists(id=user_id):
        raise not_found("用户")
    if not await UserRole.exists(user_id=user_id, role=Role.community_worker):
        raise AppError(ErrorCode.validation_failed, "请先授予该用户社区工作者角色",
                       fields={"user_id": "不是社区工作者"})
    county, community = county.strip(), community.strip()
    if not await DoorPlate.exists(county=county, community=community):
        raise AppError(ErrorCode.validation_failed, "该社区尚无门楼牌，无法划分网格",
                       fields={"community": "该区县下没有此社区的门楼牌"})
    return await assign_grid_worker(user_id=user_id, county=county, community=community,
                                    contact_name=contact_name.strip(),
                                    contact_phone=contact_phone.strip())


async def assign_grid_worker(*, user_id: int, county: str, community: str,
                             contact_name: str, contact_phone: str) -> GridAssignment:
    """Record (or renew) a worker's grid, unchecked: the admin route's checks are in
    ``assign_grid``; the demo seed and tests call this directly."""
    grid, _ = await GridAssignment.update_or_create(
        user_id=user_id, county=county, community=community,
        defaults={"contact_name": contact_name, "contact_phone": contact_phone,
                  "is_active": True})
    await _invalidate_plates(county, community)
    return grid


async def end_grid(*, actor: Principal, assignment_id: int) -> GridAssignment:
    _admin(actor)
    grid = await GridAssignment.get_or_none(id=assignment_id)
    if grid is None:
        raise not_found("网格分配")
    if grid.is_active:
        grid.is_active = False
        await grid.save(update_fields=["is_active"])
        await _invalidate_plates(grid.county, grid.community)
    return grid


async def list_grids(*, actor: Principal, user_id: int | None, community: str | None,
                     cursor: int | None, limit: int) -> tuple[list[GridAssignment], int | None]:
    _admin(actor)
    qs = GridAssignment.all().order_by("-id")
    if user_id is not None:
        qs = qs.filter(user_id=user_id)
    if community:
        qs = qs.filter(community=community)
    if cursor:
        qs = qs.filter(id__lt=cursor)
    rows = await qs.limit(limit + 1)
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


# --- the end of a worker's relations -----------------------------------------------------------


async def end_worker_relations(user_id: int) -> list[tuple[str, str]]:
    """A community worker's grids and desk registrations end (inside the caller's transaction).
    Returns the grids whose cached plate views must be dropped after commit."""
    grids = await GridAssignment.filter(user_id=user_id, is_active=True) \
        .values_list("county", "community")
    await GridAssignment.filter(user_id=user_id, is_active=True).update(is_active=False)
    await DeskRegistration.filter(worker_id=user_id, ended_at=None).update(ended_at=clock.now())
    return [(str(c), str(m)) for c, m in grids]


async def after_worker_relations_ended(grids: list[tuple[str, str]]) -> None:
    for county, community in grids:
        await _invalidate_plates(county, community)
