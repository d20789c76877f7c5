"""Data scope (数据权限): what part of the city a staff member's work covers, from their
memberships in the organisation (``models/org.py``), and the one way to filter by it.

- admin: everything;
- 综窗受理员 (clerk) and 大厅负责人 (hall manager) at a hall: records of that hall;
- 审批人员 (approver) in a department: records carrying the department's name at halls of the
  department's region and below (a city department also sees its records that name no hall);
- 督查 (supervisor) for a region: records of every hall in the region and below (the city's
  supervisor also sees records that name no hall).

Services call ``scope_of(actor)`` and filter with ``Scope.q(...)`` (lists, figures) or check
``Scope.covers(...)`` (one loaded record, inside each domain's ``access_<thing>``); nothing
else decides visibility, and handlers never do.

Scopes are cached per worker: a membership, region, department or hall-region change bumps a
generation number in Redis (and the local one at once), and other workers notice within
``_GENERATION_TTL`` seconds.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from tortoise.expressions import Q

from models.catalogue import Hall
from models.org import Membership, Position, Region, RegionLevel
from models.users import Role
from services import cache
from services.auth import Principal
from services.errors import forbidden, not_found

HALL_POSITIONS = (Position.clerk, Position.hall_manager)
STAFF_POSITIONS = (Position.clerk, Position.hall_manager, Position.approver, Position.supervisor)


@dataclass(frozen=True)
class DepartmentGrant:
    name: str
    hall_ids: frozenset[int]
    hall_codes: frozenset[str]
    hallless: bool  # a city department: also its records that name no hall


@dataclass(frozen=True)
class Scope:
    everything: bool = False
    hall_ids: frozenset[int] = frozenset()
    hall_codes: frozenset[str] = frozenset()
    hallless: bool = False  # records that name no hall (a city-wide supervisor)
    departments: tuple[DepartmentGrant, ...] = ()
    # Halls whose settings this person may change (hall manager, supervisor): a clerk reads.
    managed_hall_ids: frozenset[int] = frozenset()
    # The hall a scan is made at: the person's own hall (clerk first, then manager).
    scanning_hall: str | None = None
    # Halls a helper serves (帮办员 memberships), for assignment; not a staff data scope.
    helper_hall_codes: frozenset[str] = frozenset()
    # The areas served, as region paths ("/621000/621002/"): the region of each hall the
    # person sits at and each region they supervise. For records that belong to a place
    # rather than to a hall or a department (door plates: services/doorplate_access.py).
    area_paths: frozenset[str] = frozenset()

    def covers_area(self, region_path: str) -> bool:
        """Whether a place in this region (path) lies in an area served. A place whose
        region is unknown ("") is in the city, so only whoever serves a whole city has it."""
        if self.everything:
            return True
        if not region_path:
            return any(p.count("/") == 2 for p in self.area_paths)
        return any(region_path.startswith(p) for p in self.area_paths)

    @property
    def is_empty(self) -> bool:
        return not (self.everything or self.hall_ids or self.hallless or self.departments)

    def q(self, *, hall_code: str | None = None, hall_id: str | None = None,
          department: str | None = None) -> Q:
        """A filter for the records in scope. Name the record's hall column (its code or its
        id, relation paths allowed: ``case__hall_code``) and its department column if it has
        one."""
        if self.everything:
            return Q()
        if (hall_code is None) == (hall_id is None):
            raise ValueError("name exactly one of hall_code / hall_id")

        def at(codes: frozenset[str], ids: frozenset[int]) -> Q:
            if hall_code is not None:
                return _q(f"{hall_code}__in", sorted(codes))
            return _q(f"{hall_id}__in", sorted(ids))

        def nowhere() -> Q:
            if hall_code is not None:
                return _q(f"{hall_code}__isnull", True) | _q(hall_code, "")
            return _q(f"{hall_id}__isnull", True)

        parts = [at(self.hall_codes, self.hall_ids)]
        if self.hallless:
            parts.append(nowhere())
        if department is not None:
            for g in self.departments:
                where = at(g.hall_codes, g.hall_ids)
                if g.hallless:
                    where |= nowhere()
                parts.append(_q(department, g.name) & where)
        out = parts[0]
        for part in parts[1:]:
            out |= part
        return out

    def covers(self, *, hall_code: str | None = None, hall_id: int | None = None,
               department: str | None = None) -> bool:
        """The same decision as ``q`` for one loaded record."""
        if self.everything:
            return True
        hallless = not hall_code and hall_id is None

        def at(codes: frozenset[str], ids: frozenset[int]) -> bool:
            return (hall_code in codes) if hall_code else (hall_id in ids)

        if hallless and self.hallless:
            return True
        if not hallless and at(self.hall_codes, self.hall_ids):
            return True
        if department is None:
            return False
        for g in self.departments:
            if g.name == department and ((hallless and g.hallless)
                                         or (not hallless and at(g.hall_codes, g.hall_ids))):
                return True
        return False

    def manages(self, hall: Hall) -> bool:
        return self.everything or hall.id in self.managed_hall_ids


def _q(lookup: str, value: Any) -> Q:
    kwargs: dict[str, Any] = {lookup: value}
    return Q(**kwargs)


EVERYTHING = Scope(everything=True)
NOTHING = Scope()

# Tests only (tests/conftest.py): a staff account with no membership at all gets this scope
# instead of NOTHING, so the suites written before the organisation existed keep their
# meaning. Production never sets it: a staff account without a membership sees nothing.
unassigned_staff_scope: Scope = NOTHING

_GEN_KEY = "org:generation"
_GENERATION_TTL = 1.0  # seconds another worker may serve a scope from before a change
_MAX_CACHED = 4096
_cache: dict[tuple[int, frozenset[str]], tuple[str, Scope]] = {}
_generation: tuple[float, str] = (-1e9, "")


async def _current_generation() -> str:
    global _generation
    now = time.monotonic()
    if now - _generation[0] < _GENERATION_TTL and _generation[1]:
        return _generation[1]
    r = cache.redis()
    gen = await r.get(_GEN_KEY)
    if gen is None:
        # First use, or Redis lost it: start a new generation so nothing cached survives.
        await r.set(_GEN_KEY, uuid.uuid4().hex, nx=True)
        gen = await r.get(_GEN_KEY) or ""
    _generation = (now, str(gen))
    return str(gen)


async def changed() -> None:
    """Call after any change to memberships, regions, departments or a hall's region."""
    global _generation
    gen = uuid.uuid4().hex
    await cache.redis().set(_GEN_KEY, gen)
    _cache.clear()
    _generation = (time.monotonic(), gen)


def forget() -> None:
    """Drop this worker's cached scopes (tests, between cases)."""
    global _generation
    _cache.clear()
    _generation = (-1e9, "")


async def scope_of(actor: Principal) -> Scope:
    key = (actor.user_id, actor.roles)
    gen = await _current_generation()
    hit = _cache.get(key)
    if hit is not None and hit[0] == gen:
        return hit[1]
    scope = await _load(actor)
    if actor.has(Role.admin):
        # Everything, but an admin who also sits at a hall still scans from it.
        scope = replace(scope, everything=True)
    if len(_cache) >= _MAX_CACHED:
        _cache.clear()
    _cache[key] = (gen, scope)
    return scope


async def _halls_under(region: Region) -> list[tuple[int, str]]:
    rows = await Hall.filter(region__path__startswith=region.path).values_list("id", "code")
    return [(int(i), str(c)) for i, c in rows]


async def _load(actor: Principal) -> Scope:
    rows = await Membership.filter(user_id=actor.user_id).select_related(
        "hall__region", "department__region", "region").order_by("id")
    staff = actor.has(Role.staff)
    helper_codes = {m.hall.code for m in rows if m.position is Position.helper and m.hall}
    staff_rows = [m for m in rows if m.position in STAFF_POSITIONS] if staff else []
    if staff and not staff_rows:
        fallback = unassigned_staff_scope
        if helper_codes:
            return Scope(everything=fallback.everything, helper_hall_codes=frozenset(helper_codes))
        return fallback
    ids: set[int] = set()
    codes: set[str] = set()
    managed: set[int] = set()
    hallless = False
    grants: list[DepartmentGrant] = []
    areas: set[str] = set()
    scanning: str | None = None
    for m in sorted(staff_rows, key=lambda m: (m.position is not Position.clerk, m.id)):
        if m.position in HALL_POSITIONS and m.hall is not None:
            ids.add(m.hall.id)
            codes.add(m.hall.code)
            scanning = scanning or m.hall.code
            if m.position is Position.hall_manager:
                managed.add(m.hall.id)
            if m.hall.region is not None:
                areas.add(m.hall.region.path)
        elif m.position is Position.supervisor and m.region is not None:
            under = await _halls_under(m.region)
            ids.update(i for i, _ in under)
            codes.update(c for _, c in under)
            managed.update(i for i, _ in under)
            hallless = hallless or m.region.level is RegionLevel.city
            areas.add(m.region.path)
        elif m.position is Position.approver and m.department is not None:
            region = m.department.region
            under = await _halls_under(region)
            grants.append(DepartmentGrant(
                name=m.department.name, hall_ids=frozenset(i for i, _ in under),
                hall_codes=frozenset(c for _, c in under),
                hallless=region.level is RegionLevel.city))
    return Scope(hall_ids=frozenset(ids), hall_codes=frozenset(codes), hallless=hallless,
                 departments=tuple(grants), managed_hall_ids=frozenset(managed),
                 scanning_hall=scanning, helper_hall_codes=frozenset(helper_codes),
                 area_paths=frozenset(areas))


async def hall_in_scope(actor: Principal, hall_code: str, *, for_change: bool = False) -> Hall:
    """A hall a staff member acts at (its appointments, its check-in code, its settings):
    outside their scope it does not exist for them. ``for_change``: its settings, which a
    clerk reads but only the hall's manager (or a supervisor above it) changes."""
    hall = await Hall.get_or_none(code=hall_code) if len(hall_code) <= 32 else None
    if hall is None:
        raise not_found("大厅")
    scope = await scope_of(actor)
    if not scope.covers(hall_id=hall.id, hall_code=hall.code):
        raise not_found("大厅")
    if for_change and not scope.manages(hall):
        raise forbidden("只有大厅负责人或督查可以修改大厅设置")
    return hall


async def person_in_scope(actor: Principal, person_id: int) -> bool:
    """Staff may look at a person who has business in their scope: a case, an appointment or
    a report at their halls or for their departments."""
    from models.appointments import Appointment
    from models.cases import Case
    from models.feedback import Feedback

    sc = await scope_of(actor)
    if sc.everything:
        return True
    if sc.is_empty:
        return False
    return (
        await Case.filter(sc.q(hall_code="hall_code", department="department"),
                          person_id=person_id).exists()
        or await Appointment.filter(sc.q(hall_id="hall_id"), person_id=person_id).exists()
        or await Feedback.filter(sc.q(hall_id="hall_id", department="department"),
                                 user__person_id=person_id).exists()
    )
