"""政务地图: holiday-aware "open now", GEO nearby from Redis, and the database fallback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from models.catalogue import Hall
from models.users import Role
from services import cache, clock, geo, halls, seed
from services.auth import Principal
from services.halls import PlaceKind

SH = clock.SHANGHAI
STAFF = Principal(user_id=1, roles=frozenset({Role.staff.value}))
# 西峰 downtown, about 50 m from the city hall.
HERE = {"lat": 35.7100, "lng": 107.6430}


def at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    monkeypatch.setattr(clock, "now", lambda: when)


@pytest.mark.parametrize(("when", "open_"), [
    (datetime(2026, 10, 13, 10, 0, tzinfo=SH), True),  # ordinary Tuesday morning
    (datetime(2026, 10, 13, 12, 30, tzinfo=SH), False),  # lunch break
    (datetime(2026, 10, 1, 10, 0, tzinfo=SH), False),  # 国庆 on a Thursday
    (datetime(2026, 10, 10, 10, 0, tzinfo=SH), True),  # Saturday worked for 国庆 (调休)
    (datetime(2026, 10, 17, 10, 0, tzinfo=SH), False),  # ordinary Saturday
])
async def test_open_now_knows_holidays_and_makeup_workdays(monkeypatch, when, open_):
    await seed.run()
    at(monkeypatch, when)
    hall = await halls.get_hall("H-QY-000")
    assert hall.open_now is open_
    if not open_:
        assert hall.next_open is not None and hall.next_open > when


async def test_next_open_after_national_day_skips_the_whole_holiday(monkeypatch):
    await seed.run()
    at(monkeypatch, datetime(2026, 10, 1, 10, 0, tzinfo=SH))
    hall = await halls.get_hall("H-XF-000")
    assert hall.next_open == datetime(2026, 10, 8, 9, 0, tzinfo=SH)


async def test_self_service_points_are_always_open(monkeypatch):
    await seed.run()
    at(monkeypatch, datetime(2026, 10, 1, 3, 0, tzinfo=SH))
    places = await halls.list_places(kind=PlaceKind.self_service)
    points = [p for p in places if p.type == "self_service_point"]
    assert len(points) == 4 and all(p.open_now for p in points)
    assert all(p.self_service_24h for p in places)


async def test_nearby_from_redis_is_sorted_with_distances():
    await seed.run()
    found = await halls.nearby(**HERE, radius_km=5)
    assert found.source == "redis"
    dists = [p.distance_m for p in found.places]
    assert dists == sorted(dists) and all(d is not None and d <= 5000 for d in dists)
    assert found.places[0].code == "H-QY-000"
    # Cross-check against plain haversine on the stored coordinates.
    first = found.places[0]
    assert first.distance_m == pytest.approx(
        geo.distance_m(HERE["lat"], HERE["lng"], first.lat, first.lng), abs=2)


async def test_nearby_rebuilds_an_empty_redis():
    await seed.run()
    await cache.redis().flushdb()
    found = await halls.nearby(**HERE, radius_km=5)
    assert found.source == "redis" and found.places
    assert await cache.redis().exists(halls.GEO_KEY)


class _DeadRedis:
    def __getattr__(self, name: str) -> Any:
        async def fail(*_a: Any, **_k: Any) -> Any:
            raise ConnectionError("redis is down")

        return fail


async def test_nearby_answers_from_the_database_when_redis_is_down(monkeypatch):
    await seed.run()
    live = await halls.nearby(**HERE, radius_km=8)
    monkeypatch.setattr(cache, "redis", lambda: _DeadRedis())
    down = await halls.nearby(**HERE, radius_km=8)
    assert down.source == "database"
    assert [p.code for p in down.places] == [p.code for p in live.places]
    for a, b in zip(down.places, live.places, strict=True):
        assert a.distance_m == pytest.approx(b.distance_m, abs=2)


async def test_nearby_for_an_item_lists_only_halls_that_handle_it():
    await seed.run()
    found = await halls.nearby(**HERE, radius_km=50, item_code="GJ-001")
    assert [p.code for p in found.places] == ["H-QY-GJJ"]
    found = await halls.nearby(**HERE, radius_km=50, kind=PlaceKind.real_estate)
    assert found.places and all(p.type == "hall" for p in found.places)
    assert all(any(k == "real_estate" for k, _ in p.windows) for p in found.places)
    found = await halls.nearby(**HERE, radius_km=50, kind=PlaceKind.self_service)
    assert {p.type for p in found.places} == {"hall", "self_service_point"}


async def test_moving_a_hall_updates_nearby():
    await seed.run()
    assert (await halls.nearby(**HERE, radius_km=3)).places[0].code == "H-QY-000"
    hall = await Hall.get(code="H-ZY-000")  # 镇原, ~45 km away
    await halls.update_hall(actor=STAFF, code="H-ZY-000", values={
        "lat": HERE["lat"] + 0.0001, "lng": HERE["lng"], "hours": hall.hours})
    found = await halls.nearby(**HERE, radius_km=3)
    assert found.source == "redis" and found.places[0].code == "H-ZY-000"
    assert found.places[0].distance_m is not None and found.places[0].distance_m < 20


async def test_closing_a_hall_removes_it_even_if_the_index_is_stale(monkeypatch):
    await seed.run()
    await halls.nearby(**HERE, radius_km=3)
    # Another worker deactivated it without touching Redis: the DB check still hides it.
    await Hall.filter(code="H-QY-000").update(is_active=False)
    found = await halls.nearby(**HERE, radius_km=3)
    assert "H-QY-000" not in [p.code for p in found.places]


def test_hours_text():
    assert halls.describe_hours({"always": True}) == "24小时"
    text = halls.describe_hours({"weekdays": [1, 2, 3, 4, 5],
                                 "periods": [["09:00", "12:00"], ["14:00", "17:30"]]})
    assert text.startswith("周一至周五 09:00-12:00 14:00-17:30")
    assert halls.describe_hours({"weekdays": "bad"}) == ""
