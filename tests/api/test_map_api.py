"""政务地图 over HTTP: places with markers, nearby (Redis and fallback), staff edits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models.users import Role
from services import cache, clock, seed

HERE = {"lat": 35.7100, "lng": 107.6430}
HALL_BODY: dict[str, Any] = {
    "name": "庆阳市政务服务中心", "level": "city", "county": "西峰区",
    "address": "西峰区新址", "lat": 35.7000, "lng": 107.6500, "phone": "0934-12345",
    "hours": {"weekdays": [1, 2, 3, 4, 5, 6], "periods": [["09:00", "17:00"]]},
    "self_service_24h": True, "is_active": True,
}


async def test_places_carry_markers_windows_and_hours(api):
    await seed.run()
    resp = await api.get("/api/v1/map/places")
    assert resp.status == 200, resp.text
    places = resp.json["places"]
    assert len(places) == 15 + 4
    ids = [p["marker"]["id"] for p in places]
    assert len(set(ids)) == len(ids)
    city = places[0]
    assert city["code"] == "H-QY-000" and city["coord"] == "gcj02"
    assert city["marker"] == {"id": city["id"], "latitude": city["lat"],
                              "longitude": city["lng"], "title": city["name"]}
    assert {"kind": "real_estate", "name": "不动产登记综合窗口"} in city["windows"]
    assert isinstance(city["open_now"], bool)
    township = (await api.get("/api/v1/map/places", params={"level": "township"})).json
    assert township["places"] and all(p["level"] == "township" for p in township["places"])
    by_item = (await api.get("/api/v1/map/places", params={"item": "GJ-001"})).json
    assert [p["code"] for p in by_item["places"]] == ["H-QY-GJJ"]
    assert (await api.get("/api/v1/map/places", params={"item": "NOPE"})).status == 404
    assert (await api.get("/api/v1/map/places", params={"kind": "spaceport"})).status == 422


async def test_hall_detail_open_now_on_a_holiday(api, monkeypatch):
    await seed.run()
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 10, 1, 10, 0, tzinfo=clock.SHANGHAI))
    resp = await api.get("/api/v1/map/halls/H-QY-000")
    assert resp.status == 200
    assert resp.json["open_now"] is False
    assert resp.json["next_open"].startswith("2026-10-08T09:00:00")
    assert (await api.get("/api/v1/map/halls/H-NOPE")).status == 404


async def test_nearby_for_an_item_and_when_redis_is_down(api, monkeypatch):
    await seed.run()
    resp = await api.get("/api/v1/map/nearby", params={**HERE, "item": "BD-001", "limit": 3})
    assert resp.status == 200, resp.text
    body = resp.json
    assert body["source"] == "redis"
    # 二手房过户 is not handled at the city hall 50 m away but at the 不动产登记中心.
    assert body["places"][0]["code"] == "H-QY-BDC"
    assert "H-QY-000" not in [p["code"] for p in body["places"]]
    assert 900 < body["places"][0]["distance_m"] < 1100
    assert all(p["marker"]["title"] for p in body["places"])

    class Dead:
        def __getattr__(self, name: str) -> Any:
            async def fail(*_a: Any, **_k: Any) -> Any:
                raise ConnectionError("down")
            return fail

    monkeypatch.setattr(cache, "redis", lambda: Dead())
    resp = await api.get("/api/v1/map/nearby", params={**HERE, "item": "BD-001", "limit": 3})
    assert resp.status == 200
    assert resp.json["source"] == "database"
    assert [p["code"] for p in resp.json["places"]] == [p["code"] for p in body["places"]]


async def test_nearby_validates_coordinates(api):
    for params in ({"lat": 95, "lng": 107}, {"lat": 35.7, "lng": 200}, {"lat": 35.7},
                   {"lat": "north", "lng": 107}, {**HERE, "radius_km": 0},
                   {**HERE, "radius_km": 1000}, {**HERE, "limit": 51}):
        resp = await api.get("/api/v1/map/nearby", params=params)
        assert resp.status == 422, params


async def test_staff_moves_a_hall_and_residents_cannot(api):
    await seed.run()
    resident = await api.login("resident-1")
    resp = await resident.put("/api/v1/admin/map/halls/H-QY-000", json=HALL_BODY)
    assert resp.status == 403
    assert (await api.put("/api/v1/admin/map/halls/H-QY-000", json=HALL_BODY)).status == 401
    staff = await api.login("staff-1", Role.staff)
    for hours in ({"weekdays": [9], "periods": [["09:00", "17:00"]]},  # shape
                  {"weekdays": [1], "periods": [["17:00", "09:00"]]},  # closes before opening
                  {"weekdays": [1], "periods": []}):  # never open, yet not 24 h
        resp = await staff.put("/api/v1/admin/map/halls/H-QY-000",
                               json=HALL_BODY | {"hours": hours})
        assert resp.status == 422, hours
        assert any(k.startswith("hours") for k in resp.json["error"]["fields"]), resp.json
    assert (await staff.put("/api/v1/admin/map/halls/H-NOPE", json=HALL_BODY)).status == 404
    resp = await staff.put("/api/v1/admin/map/halls/H-QY-000", json=HALL_BODY)
    assert resp.status == 200, resp.text
    assert resp.json["hours"].startswith("周一至周六 09:00-17:00")
    near = (await api.get("/api/v1/map/nearby",
                          params={"lat": 35.7000, "lng": 107.6500, "radius_km": 1})).json
    assert near["places"][0]["code"] == "H-QY-000"
    assert near["places"][0]["distance_m"] < 5
