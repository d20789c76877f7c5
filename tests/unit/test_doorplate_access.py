"""services/doorplate_access.py: a door plate's place names become a region path, and staff
act only on plates in the area they serve (``Scope.area_paths``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.codes import DoorPlate
from services import doorplate_access, org, scope, seed
from services.auth import Principal
from services.errors import AppError, ErrorCode
from tests.conftest import grant_position
from tests.unit.test_scope import staff


@pytest.fixture
def production_fallback() -> Iterator[None]:
    scope.unassigned_staff_scope = scope.NOTHING
    yield


async def _plate(code: str, county: str, street: str, community: str) -> DoorPlate:
    return await DoorPlate.create(code=code, county=county, street=street, community=community,
                                  address="1号", lat=35.7, lng=107.6)


async def _sees(actor: Principal, code: str) -> bool:
    try:
        await doorplate_access.access_doorplate(actor, code)
    except AppError as exc:
        assert exc.code is ErrorCode.not_found
        return False
    return True


async def test_a_plate_is_placed_as_deep_as_its_names_match(production_fallback: None) -> None:
    await seed.run()
    full = await DoorPlate.get(code="D-XF-0001")  # 西峰区 / 北街街道 / 长庆社区
    odd_street = await _plate("D-T-1", "西峰区", "不存在街道", "长庆社区")
    odd_community = await _plate("D-T-2", "庆城县", "驿马镇", "不存在村")
    elsewhere = await _plate("D-T-3", "外县", "北街街道", "长庆社区")
    # A community named like one under another street doesn't place the plate there.
    crossed = await _plate("D-T-4", "西峰区", "南街街道", "长庆社区")
    paths = await doorplate_access.region_paths([full, odd_street, odd_community, elsewhere,
                                                 crossed])
    assert paths == {
        full.id: "/621000/621002/621002001/621002001001/",
        odd_street.id: "/621000/621002/",
        odd_community.id: "/621000/621021/621021101/",
        elsewhere.id: "",
        crossed.id: "/621000/621002/621002002/",
    }
    assert await doorplate_access.region_paths([]) == {}


def test_covers_area_is_a_prefix_of_whole_segments() -> None:
    xf = scope.Scope(area_paths=frozenset({"/621000/621002/"}))
    assert xf.covers_area("/621000/621002/")
    assert xf.covers_area("/621000/621002/621002001/621002001001/")
    assert not xf.covers_area("/621000/621021/")
    assert not xf.covers_area("/621000/")  # the city is more than the county
    assert not xf.covers_area("")  # a plate in no known county: the whole city's only
    city = scope.Scope(area_paths=frozenset({"/621000/"}))
    assert city.covers_area("") and city.covers_area("/621000/621021/")
    assert scope.EVERYTHING.covers_area("") and not scope.NOTHING.covers_area("/621000/")


async def test_staff_act_on_the_plates_of_their_area(production_fallback: None) -> None:
    await seed.run()
    await _plate("D-T-9", "外县", "", "")
    county = await staff("xf-clerk")
    await grant_position(county.user_id, hall="H-XF-000")
    street = await staff("beijie-clerk")
    await grant_position(street.user_id, hall="H-XF-101")
    city_hall = await staff("city-clerk")
    await grant_position(city_hall.user_id, hall="H-QY-000")
    supervisor = await staff("qc-supervisor")
    await grant_position(supervisor.user_id, region="621021")
    approver = await staff("approver")
    await grant_position(approver.user_id, department="市民政局")
    nobody = await staff("unassigned")
    expect = {
        county: {"D-XF-0001", "D-XF-0002", "D-XF-0003", "D-XF-0004"},
        street: {"D-XF-0001", "D-XF-0002"},
        city_hall: {"D-XF-0001", "D-XF-0002", "D-XF-0003", "D-XF-0004", "D-QC-0001", "D-T-9"},
        supervisor: {"D-QC-0001"},
        approver: set(),
        nobody: set(),
    }
    codes = ["D-XF-0001", "D-XF-0002", "D-XF-0003", "D-XF-0004", "D-QC-0001", "D-T-9"]
    for actor, seen in expect.items():
        assert {c for c in codes if await _sees(actor, c)} == seen, actor
    # The batch form decides the same, and names every plate it won't give.
    with pytest.raises(AppError) as err:
        await doorplate_access.access_doorplates(street, ["D-XF-0002", "D-XF-0003", "D-NO"],
                                                 for_change=True)
    assert err.value.code is ErrorCode.not_found
    assert err.value.fields == {"plate_codes": "D-XF-0003、D-NO"}
    got = await doorplate_access.access_doorplates(street, ["D-XF-0002", "D-XF-0001",
                                                            "D-XF-0002"])
    assert [p.code for p in got] == ["D-XF-0002", "D-XF-0001"]
    # Moving the street's hall to another street moves its plates with it (scope cache).
    await org.set_hall_region(actor=None, hall_code="H-XF-101", region_code="621002002")
    assert not await _sees(street, "D-XF-0001") and await _sees(street, "D-XF-0003")
    # Not staff: refused, not hidden.
    resident = Principal(county.user_id, frozenset({"resident"}))
    with pytest.raises(AppError) as denied:
        await doorplate_access.access_doorplate(resident, "D-XF-0001")
    assert denied.value.code is ErrorCode.forbidden
