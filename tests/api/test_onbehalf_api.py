"""Who may act for whom (issue 13): on-behalf booking needs a recorded relation (the person
lives in the worker's grid, granted it, or was registered by the worker at the desk), every
mismatch gets one answer, attempts are limited, and a revoked role ends every power it gave,
also for an access token issued before the revocation."""

from __future__ import annotations

from typing import Any

from models.appointments import Appointment
from models.codes import DoorPlate, Household
from models.users import Person, Role
from services import people
from services.settings import get_settings
from tests.api.test_appointments_api import ITEM, WANG, ZHANG, _open_slots, _resident
from tests.conftest import Api
from tests.unit.test_appointments_common import catalogue, id_number

COMMUNITY = ("西峰区", "长庆社区")
OTHER_COMMUNITY = ("西峰区", "北街社区")
NOT_PERMITTED = "on_behalf_not_permitted"


async def _plate(code: str, community: tuple[str, str]) -> DoorPlate:
    return await DoorPlate.create(code=code, county=community[0], street="长庆路",
                                  community=community[1], address=f"{code} 号", lat=35.7,
                                  lng=107.6)


async def _lives_at(plate: DoorPlate, who: tuple[str, str]) -> Person:
    person = await people.upsert_person(name=who[0], id_number=who[1])
    await Household.create(doorplate=plate, person=person, relation="户主")
    return person


def _booking(slot: dict[str, Any], who: tuple[str, str]) -> dict[str, Any]:
    return {"slot_id": slot["id"], "item_code": ITEM,
            "on_behalf_of": {"name": who[0], "id_number": who[1]}}


async def _assign(admin: Any, worker_id: int, community: tuple[str, str]) -> Any:
    return await admin.post("/api/v1/admin/grid-assignments", json={
        "user_id": worker_id, "county": community[0], "community": community[1],
        "contact_name": "网格员", "contact_phone": "0934-8212345"})


async def test_a_worker_without_a_relation_cannot_book_or_spend_the_residents_quota(
        api: Api) -> None:
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    worker = await api.login("worker-a", Role.community_worker)
    free = await _open_slots(worker, n=4)
    for slot in free[:3]:
        resp = await worker.post("/api/v1/appointments", json=_booking(slot, WANG))
        assert resp.status == 403, resp.text
        assert resp.json["error"]["code"] == NOT_PERMITTED
    assert await Appointment.all().count() == 0
    # 王小明's own quota is untouched.
    own = await wang.post("/api/v1/appointments", json={"slot_id": free[3]["id"],
                                                        "item_code": ITEM})
    assert own.status == 201, own.text


async def test_grid_worker_books_for_a_resident_of_their_grid_only(api: Api) -> None:
    await catalogue()
    home = await _plate("D-T-0001", COMMUNITY)
    away = await _plate("D-T-0002", OTHER_COMMUNITY)
    await _lives_at(home, ZHANG)
    await _lives_at(away, WANG)
    admin = await api.login("admin-1", Role.admin)
    worker = await api.login("worker-a", Role.community_worker)
    other_worker = await api.login("worker-b", Role.community_worker)
    free = await _open_slots(worker, n=3)
    # The role alone gives nothing: before the admin records the grid, 403.
    resp = await worker.post("/api/v1/appointments", json=_booking(free[0], ZHANG))
    assert resp.status == 403 and resp.json["error"]["code"] == NOT_PERMITTED
    assigned = await _assign(admin, worker.user_id, COMMUNITY)
    assert assigned.status == 201, assigned.text
    await _assign(admin, other_worker.user_id, OTHER_COMMUNITY)
    booked = await worker.post("/api/v1/appointments", json=_booking(free[0], ZHANG))
    assert booked.status == 201, booked.text
    # Another worker's grid: 王小明 lives in 北街社区, not in worker-a's grid...
    resp = await worker.post("/api/v1/appointments", json=_booking(free[1], WANG))
    assert resp.status == 403 and resp.json["error"]["code"] == NOT_PERMITTED
    # ... and 张建国 is not in worker-b's.
    resp = await other_worker.post("/api/v1/appointments", json=_booking(free[1], ZHANG))
    assert resp.status == 403 and resp.json["error"]["code"] == NOT_PERMITTED
    # 张建国 finds the booking made for him and cancels it himself.
    zhang = await _resident(api, "zhang", ZHANG)
    mine = (await zhang.get("/api/v1/appointments")).json["appointments"]
    assert [a["id"] for a in mine] == [booked.json["id"]] and mine[0]["on_behalf"]
    cancelled = await zhang.post(f"/api/v1/appointments/{booked.json['id']}/cancel")
    assert cancelled.status == 200, cancelled.text
    assert cancelled.json["status"] == "cancelled"
    # The admin ends the assignment: the relation is gone with it.
    ended = await admin.delete(f"/api/v1/admin/grid-assignments/{assigned.json['id']}")
    assert ended.status == 200 and ended.json["is_active"] is False
    resp = await worker.post("/api/v1/appointments", json=_booking(free[2], ZHANG))
    assert resp.status == 403 and resp.json["error"]["code"] == NOT_PERMITTED


async def test_grid_assignments_are_admin_only_and_checked(api: Api) -> None:
    await catalogue()
    await _plate("D-T-0001", COMMUNITY)
    admin = await api.login("admin-1", Role.admin)
    staff = await api.login("staff-1", Role.staff)
    worker = await api.login("worker-a", Role.community_worker)
    resident = await api.login("resident-1")
    for who in (staff, worker, resident):
        assert (await _assign(who, worker.user_id, COMMUNITY)).status == 403
        assert (await who.get("/api/v1/admin/grid-assignments")).status == 403
    assert (await api.get("/api/v1/admin/grid-assignments")).status == 401
    # Only a community worker can be given a grid, only a grid that has door plates.
    resp = await _assign(admin, resident.user_id, COMMUNITY)
    assert resp.status == 422 and "user_id" in resp.json["error"]["fields"], resp.text
    resp = await _assign(admin, worker.user_id, ("西峰区", "没有的社区"))
    assert resp.status == 422 and "community" in resp.json["error"]["fields"], resp.text
    assert (await _assign(admin, 10**12, COMMUNITY)).status == 404
    made = await _assign(admin, worker.user_id, COMMUNITY)
    assert made.status == 201 and made.json["is_active"], made.text
    listed = await admin.get("/api/v1/admin/grid-assignments",
                             params={"user_id": worker.user_id})
    assert [g["id"] for g in listed.json["assignments"]] == [made.json["id"]]
    assert (await admin.delete("/api/v1/admin/grid-assignments/999999")).status == 404
    assert (await worker.delete(
        f"/api/v1/admin/grid-assignments/{made.json['id']}")).status == 403


async def test_a_resident_grants_and_revokes_booking_for_them(api: Api) -> None:
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    worker = await api.login("worker-a", Role.community_worker)
    other_worker = await api.login("worker-b", Role.community_worker)
    free = await _open_slots(worker, n=3)
    grant = await wang.post("/api/v1/proxy-authorizations",
                            json={"helper_user_id": worker.user_id, "scopes": ["book"]})
    assert grant.status == 201, grant.text
    booked = await worker.post("/api/v1/appointments", json=_booking(free[0], WANG))
    assert booked.status == 201, booked.text
    # The consent names one worker; another one still has no relation.
    resp = await other_worker.post("/api/v1/appointments", json=_booking(free[1], WANG))
    assert resp.status == 403 and resp.json["error"]["code"] == NOT_PERMITTED
    # A consent for cases (apply) is not a consent for bookings.
    await wang.delete(f"/api/v1/proxy-authorizations/{grant.json['id']}")
    await wang.post("/api/v1/proxy-authorizations",
                    json={"helper_user_id": worker.user_id, "scopes": ["apply"]})
    resp = await worker.post("/api/v1/appointments", json=_booking(free[1], WANG))
    assert resp.status == 403 and resp.json["error"]["code"] == NOT_PERMITTED
    # Another user can't revoke wang's grant.
    intruder = await api.login("resident-2")
    assert (await intruder.delete(
        f"/api/v1/proxy-authorizations/{grant.json['id']}")).status == 404


async def test_the_worker_who_registered_a_person_at_the_desk_may_book_for_them(
        api: Api) -> None:
    await catalogue()
    worker = await api.login("worker-a", Role.community_worker)
    other_worker = await api.login("worker-b", Role.community_worker)
    free = await _open_slots(worker, n=3)
    newcomer = ("王大爷", id_number("19500101"))
    first = await worker.post("/api/v1/appointments", json=_booking(free[0], newcomer))
    assert first.status == 201, first.text
    again = await worker.post("/api/v1/appointments", json=_booking(free[1], newcomer))
    assert again.status == 201, again.text
    resp = await other_worker.post("/api/v1/appointments", json=_booking(free[2], newcomer))
    assert resp.status == 403 and resp.json["error"]["code"] == NOT_PERMITTED


async def test_one_answer_for_every_mismatch_and_attempts_are_limited(api: Api) -> None:
    await catalogue()
    await _resident(api, "wang", WANG)
    home = await _plate("D-T-0001", COMMUNITY)
    await _lives_at(home, ZHANG)
    admin = await api.login("admin-1", Role.admin)
    stranger = await api.login("worker-a", Role.community_worker)
    grid_worker = await api.login("worker-b", Role.community_worker)
    await _assign(admin, grid_worker.user_id, COMMUNITY)
    slot = (await _open_slots(stranger))[0]
    answers = []
    for who, person in ((stranger, WANG), (stranger, ("王大明", WANG[1])),
                        (grid_worker, ("张建军", ZHANG[1]))):
        resp = await who.post("/api/v1/appointments", json=_booking(slot, person))
        answers.append((resp.status, resp.json["error"]))
    # Right name, wrong name, wrong name in one's own grid: indistinguishable.
    assert answers[0] == answers[1] == answers[2], answers
    assert answers[0][0] == 403 and answers[0][1]["code"] == NOT_PERMITTED
    assert not answers[0][1]["fields"]
    s = get_settings()
    # Per ID number, whoever asks: the next worker is refused at once...
    for _ in range(s.on_behalf_id_rate_limit - 2):
        await stranger.post("/api/v1/appointments", json=_booking(slot, WANG))
    limited = await grid_worker.post("/api/v1/appointments", json=_booking(slot, WANG))
    assert limited.status == 429 and limited.json["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) > 0
    # ... and per worker, whichever ID numbers they try.
    probe = await api.login("worker-c", Role.community_worker)
    statuses = [(await probe.post("/api/v1/appointments",
                                  json=_booking(slot, ("某某", id_number("19800101"))))).status
                for _ in range(s.on_behalf_worker_rate_limit + 1)]
    assert 429 not in statuses[:-1] and statuses[-1] == 429, statuses


async def test_the_booking_worker_changes_it_only_while_the_relation_holds(api: Api) -> None:
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    worker = await api.login("worker-a", Role.community_worker)
    free = await _open_slots(worker, n=3)
    grant = (await wang.post("/api/v1/proxy-authorizations",
                             json={"helper_user_id": worker.user_id, "scopes": ["book"]})).json
    first = (await worker.post("/api/v1/appointments", json=_booking(free[0], WANG))).json
    moved = await worker.post(f"/api/v1/appointments/{first['id']}/reschedule",
                              json={"slot_id": free[1]["id"]})
    assert moved.status == 200, moved.text
    await wang.delete(f"/api/v1/proxy-authorizations/{grant['id']}")
    # Consent withdrawn: the worker can no longer move or cancel what they booked...
    for call in (worker.post(f"/api/v1/appointments/{moved.json['id']}/cancel"),
                 worker.post(f"/api/v1/appointments/{moved.json['id']}/reschedule",
                             json={"slot_id": free[2]["id"]})):
        resp = await call
        assert resp.status == 403 and resp.json["error"]["code"] == NOT_PERMITTED, resp.text
    # ... while 王小明 sees it and cancels it himself.
    mine = (await wang.get("/api/v1/appointments")).json["appointments"]
    assert moved.json["id"] in [a["id"] for a in mine]
    resp = await wang.post(f"/api/v1/appointments/{moved.json['id']}/cancel")
    assert resp.status == 200 and resp.json["status"] == "cancelled", resp.text


async def test_a_grid_relation_covers_bookings_not_the_residents_cases(api: Api) -> None:
    await catalogue()
    home = await _plate("D-T-0001", COMMUNITY)
    await _lives_at(home, ZHANG)
    zhang = await _resident(api, "zhang", ZHANG)
    admin = await api.login("admin-1", Role.admin)
    worker = await api.login("worker-a", Role.community_worker)
    await _assign(admin, worker.user_id, COMMUNITY)
    case = {"item_code": "MZ-004", "hall_code": "H-XF-000", "applicant_user_id": zhang.user_id}
    resp = await worker.post("/api/v1/cases", json=case)
    assert resp.status == 403 and resp.json["error"]["code"] == "proxy_authorization_required"
    await zhang.post("/api/v1/proxy-authorizations",
                     json={"helper_user_id": worker.user_id, "scopes": ["apply"]})
    resp = await worker.post("/api/v1/cases", json=case)
    assert resp.status == 201, resp.text
