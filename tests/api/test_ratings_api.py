"""好差评 over HTTP: rate an approved case, 一事一评, bad rating → rectification → 回访, and
who may rate or work tasks."""

from __future__ import annotations

from typing import Any

from models.cases import Case, CaseStatus
from models.ratings import Rating, RectificationTask
from models.users import Role
from services import seed


async def _case(owner_id: int, status: CaseStatus = CaseStatus.approved) -> Case:
    return await Case.create(applicant_id=owner_id, submitted_by_id=owner_id,
                             department="市民政局", hall_code="H-XF-000", status=status)


async def _rate(s: Any, target_id: int, level: int = 5, **over: Any) -> Any:
    body = {"target_type": "case", "target_id": target_id, "level": level} | over
    return await s.post("/api/v1/ratings", json=body)


async def test_rate_a_case_approved_through_the_cases_api(api: Any) -> None:
    data = seed.load_demo_data()
    await seed.seed_people(data)
    await seed.seed_catalogue(data)
    staff = await api.login("clerk", Role.staff)
    me = await api.login("zhang")
    await me.bind_identity("张建国", "621002194103050316")
    opened = await me.post("/api/v1/cases", json={"item_code": "MZ-003", "hall_code": "H-XF-000"})
    assert opened.status == 201, opened.text
    cid = opened.json["id"]
    early = await _rate(me, cid)
    assert early.status == 409 and early.json["error"]["code"] == "rating_not_open"
    for action in ("accept", "start_review", "approve"):
        kw = {"note": "符合条件"} if action == "approve" else {}
        moved = await staff.post(f"/api/v1/cases/{cid}/transitions",
                                 json={"action": action, **kw})
        assert moved.status == 200, moved.text
    resp = await _rate(me, cid, level=5, tags=["一次办好"], text="很快就办好了")
    assert resp.status == 201, resp.text
    assert resp.json["label"] == "非常满意" and resp.json["rectification"] is None
    assert resp.json["department"] == "市民政局" and resp.json["hall_code"] == "H-XF-000"
    again = await _rate(me, cid, level=1)
    assert again.status == 409 and again.json["error"]["code"] == "already_rated"


async def test_bad_rating_task_reply_and_follow_up(api: Any) -> None:
    me = await api.login("resident-a")
    staff = await api.login("clerk", Role.staff)
    case = await _case(me.user_id)
    resp = await _rate(me, case.id, level=2, tags=["等待久"], text="排队两个小时")
    assert resp.status == 201, resp.text
    assert resp.json["label"] == "不满意"
    task = resp.json["rectification"]
    assert task["status"] == "open" and task["due_at"].endswith("+08:00")

    tasks = await staff.get("/api/v1/admin/rectifications", params={"status": "open"})
    assert tasks.status == 200, tasks.text
    row = tasks.json["tasks"][0]
    assert row["id"] == task["id"] and row["level"] == 2 and row["rating_text"] == "排队两个小时"
    assert row["rater"]["user_id"] == me.user_id and row["escalation_level"] == 0

    visit_early = await staff.post(f"/api/v1/admin/rectifications/{task['id']}/follow-up",
                                   json={"result": "satisfied", "note": "电话回访"})
    assert visit_early.status == 409
    replied = await staff.post(f"/api/v1/admin/rectifications/{task['id']}/reply",
                               json={"text": "已增开窗口，高峰期启用弹性窗口"})
    assert replied.status == 200 and replied.json["status"] == "replied"
    visited = await staff.post(f"/api/v1/admin/rectifications/{task['id']}/follow-up",
                               json={"result": "satisfied", "note": "电话回访，居民表示认可"})
    assert visited.status == 200 and visited.json["status"] == "closed"
    assert visited.json["visit_result"] == "satisfied"

    mine = await me.get("/api/v1/ratings")
    assert mine.status == 200
    assert mine.json["ratings"][0]["rectification"]["reply"] == "已增开窗口，高峰期启用弹性窗口"


async def test_someone_elses_case_is_404_and_nothing_stored(api: Any) -> None:
    owner = await api.login("resident-a")
    other = await api.login("resident-b")
    case = await _case(owner.user_id)
    resp = await _rate(other, case.id, level=1)
    assert resp.status == 404
    assert await Rating.all().count() == 0 and await RectificationTask.all().count() == 0
    await _rate(owner, case.id, level=4)
    assert (await other.get("/api/v1/ratings")).json["ratings"] == []


async def test_residents_cannot_work_rectifications(api: Any) -> None:
    me = await api.login("resident-a")
    case = await _case(me.user_id)
    task_id = (await _rate(me, case.id, level=1)).json["rectification"]["id"]
    for method, path, body in (
        ("GET", "/api/v1/admin/rectifications", None),
        ("GET", f"/api/v1/admin/rectifications/{task_id}", None),
        ("POST", f"/api/v1/admin/rectifications/{task_id}/reply", {"text": "自己整改"}),
        ("POST", f"/api/v1/admin/rectifications/{task_id}/follow-up",
         {"result": "satisfied", "note": "自己回访"}),
    ):
        resp = await me.api.request(method, path, token=me.token, json=body)
        assert resp.status == 403, (path, resp.text)


async def test_validation_and_content_check(api: Any) -> None:
    me = await api.login("resident-a")
    case = await _case(me.user_id)
    for over in ({"level": 0}, {"level": 6}, {"target_type": "hall"}, {"target_id": 0},
                 {"target_id": "x"}, {"tags": ["x" * 17]}, {"text": "x" * 501}, {"extra": True}):
        body = {"target_type": "case", "target_id": case.id, "level": 3} | over
        resp = await me.post("/api/v1/ratings", json=body)
        assert resp.status == 422, (over, resp.text)
    risky = await _rate(me, case.id, level=1, text="赌博")
    assert risky.status == 422 and risky.json["error"]["code"] == "content_rejected"
    assert await Rating.all().count() == 0


async def test_levels_are_public(api: Any) -> None:
    resp = await api.get("/api/v1/ratings/levels")
    assert resp.status == 200
    assert [lv["label"] for lv in resp.json["levels"]] == [
        "非常满意", "满意", "基本满意", "不满意", "非常不满意"]


async def test_staff_unknown_task_is_404(api: Any) -> None:
    staff = await api.login("clerk", Role.staff)
    resp = await staff.get("/api/v1/admin/rectifications/987654")
    assert resp.status == 404


# --- an appointment's rating reaches the clerk who served the visit --------------------------


async def _visit_now(api: Any) -> tuple[Any, int, str]:
    """张建国 books a visit at the city hall, moved to now so the window can check it in."""
    from datetime import timedelta

    from models.appointments import Appointment
    from services import clock
    from tests.api.test_appointments_api import HALL, ITEM, ZHANG, _open_slots

    await seed.run()
    zhang = await api.login("zhang")
    await zhang.bind_identity(*ZHANG)
    slot = (await _open_slots(zhang))[0]
    booked = await zhang.post("/api/v1/appointments", json={"slot_id": slot["id"],
                                                            "item_code": ITEM})
    assert booked.status == 201, booked.text
    now = clock.now()
    await Appointment.filter(id=booked.json["id"]).update(
        starts_at=now - timedelta(minutes=5), ends_at=now + timedelta(minutes=25))
    assert HALL == "H-QY-000"
    return zhang, int(booked.json["id"]), str(booked.json["check_in_code"])


async def _figures(s: Any) -> dict[int, dict[str, Any]]:
    resp = await s.get("/api/v1/admin/staff-ratings/figures")
    assert resp.status == 200, resp.text
    return {f["user_id"]: f for f in resp.json["staff"]}


async def test_a_rated_appointment_reaches_the_clerk_who_checked_it_in(api: Any) -> None:
    from models.org import Position
    from models.ratings import RatingStaff

    zhang, appt_id, code = await _visit_now(api)
    clerk = await api.login("qy-clerk", hall="H-QY-000")
    colleague = await api.login("qy-clerk2", hall="H-QY-000")  # same hall, did not serve
    manager = await api.login("qy-manager", hall="H-QY-000", position=Position.hall_manager)
    elsewhere = await api.login("xf-manager", hall="H-XF-000", position=Position.hall_manager)
    sup = await api.login("city-supervisor", region="621000")
    checked = await clerk.post("/api/v1/appointments/check-in", json={"code": code})
    assert checked.status == 200 and checked.json["status"] == "checked_in", checked.text
    rated = await zhang.post("/api/v1/ratings", json={
        "target_type": "appointment", "target_id": appt_id, "level": 1, "text": "窗口态度差"})
    assert rated.status == 201, rated.text
    rid = rated.json["id"]
    rows = [(r.user_id, r.served_as.value, r.department, r.hall_code)
            for r in await RatingStaff.filter(rating_id=rid)]
    assert rows == [(clerk.user_id, "clerk", rated.json["department"], "H-QY-000")]
    # Counted for that clerk only, in the figures of whoever oversees the hall; the manager of
    # another hall sees nobody, and the clerks read no colleague's figures.
    mine = await _figures(manager)
    assert set(mine) == {clerk.user_id} and colleague.user_id not in mine
    assert mine[clerk.user_id]["served_as"] == ["clerk"]
    assert (mine[clerk.user_id]["ratings"], mine[clerk.user_id]["bad"],
            mine[clerk.user_id]["bad_unreviewed"]) == (1, 1, 1)
    assert await _figures(elsewhere) == {}
    assert (await clerk.get("/api/v1/admin/staff-ratings/figures")).status == 403
    # 差评核实 exactly as for a case: valid counts against the clerk, who may appeal once.
    assert (await elsewhere.post(f"/api/v1/admin/staff-ratings/{rid}/review", json={
        "verdict": "valid", "reason": "看看别处的"})).status == 404
    ok = await sup.post(f"/api/v1/admin/staff-ratings/{rid}/review",
                        json={"verdict": "valid", "reason": "监控核实态度生硬"})
    assert ok.status == 201 and ok.json["counts_against_staff"] is True, ok.text
    assert (await _figures(manager))[clerk.user_id]["bad_valid"] == 1
    assert (await colleague.post(f"/api/v1/admin/staff-ratings/{rid}/appeal",
                                 json={"reason": "不是我接待的"})).status == 404
    appealed = await clerk.post(f"/api/v1/admin/staff-ratings/{rid}/appeal",
                                json={"reason": "群众情绪激动，已耐心解释"})
    assert appealed.status == 200, appealed.text


async def test_a_self_checked_in_visit_reaches_the_clerk_who_opened_its_case(api: Any) -> None:
    from models.appointments import Appointment
    from models.ratings import RatingStaff
    from services import appointments, clock

    zhang, appt_id, _ = await _visit_now(api)
    token = appointments.hall_check_in_token("H-QY-000", clock.today())
    self_in = await zhang.post(f"/api/v1/appointments/{appt_id}/check-in",
                               json={"hall_code": "H-QY-000", "token": token})
    assert self_in.status == 200 and self_in.json["status"] == "checked_in", self_in.text
    assert (await Appointment.get(id=appt_id)).served_by_id is None
    # Rated while waiting: nobody served it yet, so the rating is only the hall's.
    rated = await zhang.post("/api/v1/ratings", json={
        "target_type": "appointment", "target_id": appt_id, "level": 4})
    assert rated.status == 201, rated.text
    rid = rated.json["id"]
    assert not await RatingStaff.exists(rating_id=rid)
    # The clerk who opens a case from the visit served it: the rating reaches them.
    clerk = await api.login("qy-clerk", hall="H-QY-000")
    opened = await clerk.post("/api/v1/window/cases", json={"appointment_id": appt_id})
    assert opened.status == 201, opened.text
    again = await clerk.post("/api/v1/window/cases", json={"appointment_id": appt_id})
    assert again.status == 201 and again.json["id"] == opened.json["id"]
    rows = [(r.user_id, r.served_as.value) for r in await RatingStaff.filter(rating_id=rid)]
    assert rows == [(clerk.user_id, "clerk")]  # once, however often the button is pressed
