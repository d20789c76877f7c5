"""预约服务 over HTTP: listing, booking with Idempotency-Key, on-behalf masking, cancel and
reschedule, check-in, waitlist, and who may do what (real clock: tokens must be valid)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from models.appointments import Appointment
from models.codes import DoorPlate, Household
from models.users import Role
from services import clock, people
from services.errors import ErrorCode
from services.onbehalf import assign_grid_worker
from services.settings import get_settings
from tests.unit.test_appointments_common import catalogue

HALL = "H-QY-000"
ITEM = "GA-001"
ZHANG = ("张建国", "621002194103050316")
WANG = ("王小明", "621002200302170132")


async def _open_slots(s: Any, *, n: int = 2) -> list[dict[str, Any]]:
    """Bookable slots on the first day with at least ``n`` (never today: the day may be over)."""
    for ahead in range(1, 8):
        day = (clock.today() + timedelta(days=ahead)).isoformat()
        resp = await s.get(f"/api/v1/halls/{HALL}/slots",
                           params={"date": day, "window_kind": "comprehensive"})
        assert resp.status == 200, resp.text
        free = [x for x in resp.json["slots"] if x["bookable"]]
        if len(free) >= n:
            return free
    raise AssertionError("no open day in the next week")


async def _resident(api: Any, code: str, who: tuple[str, str]) -> Any:
    s = await api.login(code)
    await s.bind_identity(*who)
    return s


async def test_slot_listing_validation_and_auth(api: Any) -> None:
    await catalogue()
    resp = await api.get(f"/api/v1/halls/{HALL}/slots", params={"date": "2026-12-01",
                                                                 "window_kind": "comprehensive"})
    assert resp.status == 401
    s = await api.login("wang")
    for params, field in (({"date": "2026-13-01", "window_kind": "comprehensive"}, "date"),
                          ({"date": "2026-12-01", "window_kind": "bogus"}, "window_kind"),
                          ({"date": "2026-12-01", "item_code": "x y"}, "item_code")):
        resp = await s.get(f"/api/v1/halls/{HALL}/slots", params=params)
        assert resp.status == 422, resp.text
        assert field in resp.json["error"]["fields"], resp.text
    resp = await s.get("/api/v1/halls/NOPE/slots", params={"date": "2026-12-01",
                                                           "window_kind": "comprehensive"})
    assert resp.status == 404
    free = await _open_slots(s)
    assert free[0]["starts_at"].endswith("+08:00")
    by_item = await s.get(f"/api/v1/halls/{HALL}/slots",
                          params={"date": free[0]["starts_at"][:10], "item_code": ITEM})
    assert by_item.status == 200 and by_item.json["window_kind"] == "comprehensive"


async def test_booking_is_idempotent_with_a_key(api: Any) -> None:
    await catalogue()
    nobody = await api.login("nobody")
    wang = await _resident(api, "wang", WANG)
    slot = (await _open_slots(wang))[0]
    body = {"slot_id": slot["id"], "item_code": ITEM}
    resp = await nobody.post("/api/v1/appointments", json=body)
    assert resp.status == ErrorCode.identity_required.status
    assert resp.json["error"]["code"] == "identity_required"
    headers = {"Idempotency-Key": "book-1"}
    first = await wang.post("/api/v1/appointments", json=body, headers=headers)
    assert first.status == 201, first.text
    again = await wang.post("/api/v1/appointments", json=body, headers=headers)
    assert again.status == 201 and again.json == first.json
    assert await Appointment.all().count() == 1
    other = await wang.post("/api/v1/appointments", json={**body, "item_code": "GA-002"},
                            headers=headers)
    assert other.status == 409 and other.json["error"]["code"] == "idempotency_conflict"
    # Without the key a repeat is a clear refusal, not a second booking.
    dup = await wang.post("/api/v1/appointments", json=body)
    assert dup.status == 409 and dup.json["error"]["code"] == "already_booked"
    out = first.json
    assert out["status"] == "booked" and out["person_name"] == "*小明"
    assert out["person_id_number"] == "6210**********0132" and out["check_in_code"]


async def test_on_behalf_booking_is_masked_and_visible_to_the_resident(
        api: Any, fake_wechat: Any) -> None:
    await catalogue()
    worker = await api.login("demo-worker", Role.community_worker)
    # The relation: 张建国 lives at a plate in the worker's grid (tests/api/test_onbehalf_api.py
    # has the refusals without one).
    plate = await DoorPlate.create(code="D-T-0001", county="西峰区", street="长庆路",
                                   community="长庆社区", address="1号", lat=35.7, lng=107.6)
    await Household.create(doorplate=plate,
                           person=await people.upsert_person(name=ZHANG[0], id_number=ZHANG[1]))
    await assign_grid_worker(user_id=worker.user_id, county="西峰区", community="长庆社区",
                             contact_name="网格员", contact_phone="0934-8212345")
    slot = (await _open_slots(worker))[0]
    resp = await worker.post("/api/v1/appointments", json={
        "slot_id": slot["id"], "item_code": ITEM,
        "on_behalf_of": {"name": ZHANG[0], "id_number": ZHANG[1]}})
    assert resp.status == 201, resp.text
    appt = resp.json
    assert appt["person_id_number"] == "6210**********0316" and appt["person_name"] == "*建国"
    assert ZHANG[1] not in resp.text and ZHANG[0] not in resp.text
    assert appt["on_behalf"] and appt["booked_by_me"] and appt["green_channel"]
    # 张建国 signs in later and finds it in his own list.
    zhang = await _resident(api, "zhang", ZHANG)
    mine = await zhang.get("/api/v1/appointments")
    assert [a["id"] for a in mine.json["appointments"]] == [appt["id"]]
    assert mine.json["appointments"][0]["booked_by_me"] is False
    # Someone else sees nothing and can change nothing.
    wang = await _resident(api, "wang", WANG)
    for call in (wang.get(f"/api/v1/appointments/{appt['id']}"),
                 wang.post(f"/api/v1/appointments/{appt['id']}/cancel"),
                 wang.post(f"/api/v1/appointments/{appt['id']}/reschedule",
                           json={"slot_id": slot["id"]})):
        r = await call
        assert r.status == 404, r.text
    assert (await wang.get("/api/v1/appointments")).json["appointments"] == []
    # A resident can't book on behalf of someone.
    r = await wang.post("/api/v1/appointments", json={
        "slot_id": slot["id"], "item_code": ITEM,
        "on_behalf_of": {"name": ZHANG[0], "id_number": ZHANG[1]}})
    assert r.status == 403


async def test_cancel_and_reschedule(api: Any) -> None:
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    a, b = (await _open_slots(wang))[:2]
    booked = (await wang.post("/api/v1/appointments",
                              json={"slot_id": a["id"], "item_code": ITEM})).json
    moved = await wang.post(f"/api/v1/appointments/{booked['id']}/reschedule",
                            json={"slot_id": b["id"]})
    assert moved.status == 200, moved.text
    assert moved.json["starts_at"] == b["starts_at"]
    gone = await wang.post(f"/api/v1/appointments/{booked['id']}/cancel")
    assert gone.status == 200 and gone.json["status"] == "cancelled"
    assert gone.json["check_in_code"] is None
    again = await wang.post(f"/api/v1/appointments/{booked['id']}/cancel")
    assert again.status == 409 and again.json["error"]["code"] == "appointment_not_active"
    for path in (f"/api/v1/appointments/{2**62}", "/api/v1/appointments/999999999"):
        assert (await wang.get(path)).status == 404


async def test_staff_only_endpoints(api: Any) -> None:
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    staff = await api.login("demo-staff", Role.staff)
    rule = {"window_kind": "comprehensive", "slot_minutes": 20, "capacity": 4, "green_percent": 25,
            "book_ahead_days": 5}
    day = (clock.today() + timedelta(days=1)).isoformat()
    for call in (wang.put(f"/api/v1/halls/{HALL}/slot-rules", json=rule),
                 wang.get(f"/api/v1/halls/{HALL}/slot-rules"),
                 wang.get(f"/api/v1/halls/{HALL}/check-in-code"),
                 wang.get(f"/api/v1/halls/{HALL}/appointments", params={"date": day}),
                 wang.post("/api/v1/appointments/check-in", json={"code": "x"})):
        r = await call
        assert r.status == 403, r.text
    put = await staff.put(f"/api/v1/halls/{HALL}/slot-rules", json=rule)
    assert put.status == 200 and put.json["slot_minutes"] == 20
    assert put.json["green_hold"] == 1
    bad = await staff.put(f"/api/v1/halls/{HALL}/slot-rules", json={**rule, "green_percent": 101})
    assert bad.status == 422 and "green_percent" in bad.json["error"]["fields"]
    nowin = await staff.put("/api/v1/halls/H-QC-101/slot-rules",  # a township hall: no
                            json={**rule, "window_kind": "real_estate"})  # real-estate window
    assert nowin.status == 404
    rules = await staff.get(f"/api/v1/halls/{HALL}/slot-rules")
    assert {r["window_kind"] for r in rules.json["rules"]} >= {"comprehensive", "assisted"}
    code = await staff.get(f"/api/v1/halls/{HALL}/check-in-code")
    assert code.status == 200 and code.json["qr_content"].startswith(f"xq-checkin:{HALL}:")
    # Staff read appointments masked, and never get the resident's check-in code.
    slot = (await _open_slots(wang))[0]
    appt = (await wang.post("/api/v1/appointments",
                            json={"slot_id": slot["id"], "item_code": ITEM})).json
    seen = await staff.get(f"/api/v1/appointments/{appt['id']}")
    assert seen.status == 200 and seen.json["check_in_code"] is None
    assert seen.json["person_id_number"] == "6210**********0132"
    listing = await staff.get(f"/api/v1/halls/{HALL}/appointments",
                              params={"date": slot["starts_at"][:10]})
    assert [a["id"] for a in listing.json["appointments"]] == [appt["id"]]
    # Too early to check in (the slot is tomorrow or later); an unknown code is a 404.
    early = await staff.post("/api/v1/appointments/check-in", json={"code": appt["check_in_code"]})
    assert early.status == 409 and early.json["error"]["code"] == "check_in_closed"
    assert (await staff.post("/api/v1/appointments/check-in", json={"code": "x"})).status == 404
    # A resident can't check in by the hall code of another day or with a forged token.
    r = await wang.post(f"/api/v1/appointments/{appt['id']}/check-in",
                        json={"hall_code": HALL, "token": "forged"})
    assert r.status == 409 and r.json["error"]["code"] == "check_in_code_invalid"


async def test_waitlist_over_http(api: Any) -> None:
    await catalogue()
    staff = await api.login("demo-staff", Role.staff)
    await staff.put(f"/api/v1/halls/{HALL}/slot-rules", json={
        "window_kind": "comprehensive", "slot_minutes": 30, "capacity": 1, "green_percent": 0,
        "book_ahead_days": 7})
    wang = await _resident(api, "wang", WANG)
    zhang = await _resident(api, "zhang", ZHANG)
    slot = (await _open_slots(wang))[0]
    early = await wang.post(f"/api/v1/slots/{slot['id']}/waitlist", json={"item_code": ITEM})
    assert early.status == 409 and early.json["error"]["code"] == "slot_available"
    appt = (await wang.post("/api/v1/appointments",
                            json={"slot_id": slot["id"], "item_code": ITEM})).json
    full = await zhang.post("/api/v1/appointments", json={"slot_id": slot["id"],
                                                          "item_code": ITEM})
    assert full.status == 409 and full.json["error"]["code"] == "slot_full"
    joined = await zhang.post(f"/api/v1/slots/{slot['id']}/waitlist", json={"item_code": ITEM})
    assert joined.status == 201 and joined.json["position"] == 1, joined.text
    assert (await wang.delete(f"/api/v1/waitlist/{joined.json['id']}")).status == 404
    await wang.post(f"/api/v1/appointments/{appt['id']}/cancel")
    mine = (await zhang.get("/api/v1/waitlist")).json["entries"]
    assert mine[0]["status"] == "promoted" and mine[0]["appointment_id"]
    got = await zhang.get(f"/api/v1/appointments/{mine[0]['appointment_id']}")
    assert got.status == 200 and got.json["status"] == "booked"


async def test_booking_is_rate_limited(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    await catalogue()
    monkeypatch.setattr(get_settings(), "appointment_book_rate_limit", 2)
    wang = await _resident(api, "wang", WANG)
    slot = (await _open_slots(wang))[0]
    body = {"slot_id": slot["id"], "item_code": ITEM}
    codes = [(await wang.post("/api/v1/appointments", json=body)).status for _ in range(3)]
    assert codes == [201, 409, 429]


async def test_bad_bodies(api: Any) -> None:
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    for body in ({}, {"slot_id": 0, "item_code": ITEM}, {"slot_id": 2**60, "item_code": ITEM},
                 {"slot_id": 1, "item_code": ITEM, "on_behalf_of": {"name": "x",
                                                                     "id_number": "1"}}):
        r = await wang.post("/api/v1/appointments", json=body)
        assert r.status == 422, (body, r.text)
    r = await wang.post("/api/v1/appointments", json={"slot_id": 123456, "item_code": ITEM})
    assert r.status == 404


async def test_journeys_walk_in_process(api: Any, app: Any) -> None:
    """The scripted client's booking journeys, driven over ASGI against the demo data, twice
    (they must leave nothing behind that breaks a rerun)."""
    import httpx

    from miniprogram_stub import demo_accounts
    from miniprogram_stub.client import Journeys
    from miniprogram_stub.journeys import appointments as appointment_journeys
    from services import seed

    await seed.run()
    await demo_accounts.seed(get_settings().wechat_appid)
    await api.get("/healthz")  # let the test client finish the app's startup first
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mp") as http:
        j = Journeys(http)
        for _ in range(2):
            for journey in appointment_journeys.JOURNEYS:
                await journey(j)
