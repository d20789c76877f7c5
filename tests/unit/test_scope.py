"""services/scope.py: memberships → scope, the query filter and the one-record check agree,
cached scopes follow membership changes, and staff without a membership see nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.cases import Case, CaseStatus
from models.catalogue import Hall
from models.org import Position
from models.users import Role, User, UserRole
from services import cases, org, scope, seed
from services.auth import Principal
from services.errors import AppError, ErrorCode
from tests.conftest import grant_position


async def staff(name: str, *roles: Role) -> Principal:
    user = await User.create(openid=f"openid-{name}", nickname=name)
    for role in (Role.staff, *roles):
        await UserRole.create(user=user, role=role)
    return Principal(user.id, frozenset({"resident", "staff", *(str(r) for r in roles)}))


@pytest.fixture
def production_fallback() -> Iterator[None]:
    """As production runs: a staff account without a membership has an empty scope."""
    scope.unassigned_staff_scope = scope.NOTHING
    yield


async def _cases(owner: User) -> dict[str, int]:
    """One case per (hall, department) pair the tests reason about, plus one with no hall."""
    out = {}
    for hall, dept in (("H-XF-000", "市民政局"), ("H-XF-101", "市民政局"), ("H-QC-000", "市民政局"),
                       ("H-QC-000", "市公安局"), ("H-QY-000", "市公安局"), ("", "市公安局")):
        c = await Case.create(applicant=owner, submitted_by=owner, department=dept,
                              hall_code=hall, status=CaseStatus.submitted)
        out[f"{hall or 'none'}/{dept}"] = c.id
    return out


async def _visible(actor: Principal) -> set[int]:
    sc = await scope.scope_of(actor)
    by_q = {c.id for c in await Case.filter(sc.q(hall_code="hall_code",
                                                 department="department"))}
    # The list filter and the one-record check must never disagree.
    by_covers = {c.id for c in await Case.all()
                 if sc.covers(hall_code=c.hall_code, department=c.department)}
    assert by_q == by_covers
    return by_q


async def test_each_position_sees_its_part(production_fallback: None) -> None:
    await seed.run()
    owner = await User.create(openid="owner")
    ids = await _cases(owner)
    clerk = await staff("clerk")
    await grant_position(clerk.user_id, hall="H-XF-000")
    assert await _visible(clerk) == {ids["H-XF-000/市民政局"]}
    approver = await staff("approver")
    await grant_position(approver.user_id, department="市公安局")
    # A city department: its records at every hall, and those naming no hall.
    assert await _visible(approver) == {ids["H-QC-000/市公安局"], ids["H-QY-000/市公安局"],
                                        ids["none/市公安局"]}
    county_approver = await staff("county-approver")
    await grant_position(county_approver.user_id, department="庆城县人社局", region="621021")
    assert await _visible(county_approver) == set()  # no record names that department
    supervisor = await staff("supervisor")
    await grant_position(supervisor.user_id, region="621002")
    assert await _visible(supervisor) == {ids["H-XF-000/市民政局"], ids["H-XF-101/市民政局"]}
    city = await staff("city-supervisor")
    await grant_position(city.user_id, region="621000")
    assert await _visible(city) == set(ids.values())
    admin = await staff("admin", Role.admin)
    assert await _visible(admin) == set(ids.values())
    nobody = await staff("unassigned")
    assert await _visible(nobody) == set()
    # A resident holding a position by mistake (no staff role) gets no staff scope.
    resident = Principal(clerk.user_id, frozenset({"resident"}))
    assert (await scope.scope_of(resident)).is_empty


async def test_unassigned_staff_read_nothing_in_production(production_fallback: None) -> None:
    await seed.run()
    owner = await User.create(openid="owner")
    ids = await _cases(owner)
    nobody = await staff("unassigned")
    rows, _ = await cases.staff_cases(actor=nobody, status=None, hall_code=None, overdue=None,
                                      cursor=None, limit=50)
    assert rows == []
    with pytest.raises(AppError) as err:
        await cases.access_case(nobody, ids["H-XF-000/市民政局"])
    assert err.value.code is ErrorCode.not_found


async def test_cached_scope_follows_membership_changes(production_fallback: None) -> None:
    await seed.run()
    clerk = await staff("clerk")
    assert (await scope.scope_of(clerk)).is_empty
    row = await org.add_membership(actor=None, user_id=clerk.user_id, position=Position.clerk,
                                   hall_code="H-XF-000")
    first = await scope.scope_of(clerk)
    assert first.hall_codes == {"H-XF-000"} and first.scanning_hall == "H-XF-000"
    assert await scope.scope_of(clerk) is first  # cached
    admin = Principal(clerk.user_id + 10_000, frozenset({"admin"}))
    moved = await org.move_membership(actor=admin, membership_id=row.id, hall_code="H-QC-000",
                                      department_id=None, region_code=None)
    assert moved.hall is not None and moved.hall.code == "H-QC-000"
    assert (await scope.scope_of(clerk)).hall_codes == {"H-QC-000"}
    # Another worker's cache: its entry was made under an older generation, which Redis no
    # longer holds; once its short local interval is over (skipped here) it reloads.
    scope._cache[(clerk.user_id, clerk.roles)] = ("older-generation", first)
    scope._generation = (-1e9, "")
    assert (await scope.scope_of(clerk)).hall_codes == {"H-QC-000"}
    await org.remove_membership(actor=admin, membership_id=row.id)
    assert (await scope.scope_of(clerk)).is_empty
    # A hall moving to another region changes a supervisor's halls too.
    supervisor = await staff("supervisor")
    await grant_position(supervisor.user_id, region="621021")
    assert "H-XF-103" not in (await scope.scope_of(supervisor)).hall_codes
    await org.set_hall_region(actor=None, hall_code="H-XF-103", region_code="621021101")
    assert "H-XF-103" in (await scope.scope_of(supervisor)).hall_codes
    assert await Hall.filter(code="H-XF-103", region__code="621021101").exists()
