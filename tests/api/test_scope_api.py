"""Data scope over HTTP: on every staff route, a member of another hall or department gets 404
(or an empty list) and nothing changes; figures count only what is in scope.

The world: the demo catalogue and organisation; a clerk at 西峰区政务服务中心 (H-XF-000), a
clerk at 庆城县政务服务中心 (H-QC-000), an approver of 市民政局 and one of 市公安局 (city
departments), a supervisor of 西峰区 (621002) and an admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from models.appointments import Appointment, AppointmentStatus
from models.audit import AuditLog
from models.cases import (
    Case,
    CaseAlert,
    CaseAlertLevel,
    CaseStatus,
    HelperProfile,
    SupplementRequest,
)
from models.codes import IssuedCode
from models.feedback import Feedback
from models.notifications import Notification
from models.org import Position
from models.ratings import RectificationTask
from models.users import Person, Role
from services import clock, helpers, outbox, people, seed
from tests.api.test_map_api import HALL_BODY

ZHANG = ("张建国", "621002194103050316")
LI = ("李秀兰", "621021197508120426")
XF, QC = "H-XF-000", "H-QC-000"


@dataclass
class World:
    xf: Any  # clerk at 西峰区
    qc: Any  # clerk at 庆城县
    mz: Any  # approver, 市民政局
    ga: Any  # approver, 市公安局
    sup: Any  # supervisor, 西峰区 and below
    admin: Any
    zhang: Any
    li: Any


async def _world(api: Any) -> World:
    await seed.run()
    zhang = await api.login("zhang")
    await zhang.bind_identity(*ZHANG)
    li = await api.login("li")
    await li.bind_identity(*LI)
    return World(
        xf=await api.login("xf-clerk", hall=XF), qc=await api.login("qc-clerk", hall=QC),
        mz=await api.login("mz-approver", department="市民政局"),
        ga=await api.login("ga-approver", department="市公安局"),
        sup=await api.login("xf-supervisor", region="621002"),
        admin=await api.login("admin", Role.admin), zhang=zhang, li=li)


async def _open(s: Any, hall: str, item: str = "MZ-003") -> int:
    resp = await s.post("/api/v1/cases", json={"item_code": item, "hall_code": hall})
    assert resp.status == 201, resp.text
    return int(resp.json["id"])


async def _staff_case_ids(s: Any) -> set[int]:
    resp = await s.get("/api/v1/admin/cases")
    assert resp.status == 200, resp.text
    return {c["id"] for c in resp.json["cases"]}


async def test_cases_are_seen_and_moved_only_in_scope(api: Any) -> None:
    w = await _world(api)
    a = await _open(w.zhang, XF)  # 市民政局 item at the 西峰区 hall
    b = await _open(w.li, QC)  # the same item at 庆城县
    assert await _staff_case_ids(w.xf) == {a}
    assert await _staff_case_ids(w.qc) == {b}
    assert await _staff_case_ids(w.mz) == {a, b}  # a city department: every hall
    assert await _staff_case_ids(w.ga) == set()  # not its department
    assert await _staff_case_ids(w.sup) == {a}  # 西峰区 and below only
    assert await _staff_case_ids(w.admin) == {a, b}
    # Another hall's case does not exist for the clerk: read, move, supplement, all 404.
    assert (await w.xf.get(f"/api/v1/cases/{b}")).status == 404
    moved = await w.xf.post(f"/api/v1/cases/{b}/transitions", json={"action": "accept"})
    assert moved.status == 404 and moved.json["error"]["code"] == "not_found"
    sup = await w.ga.post(f"/api/v1/cases/{b}/supplement-requests",
                          json={"items": [{"material": "户口簿", "reason": "缺少户主页"}]})
    assert sup.status == 404
    case_b = await Case.get(id=b)
    assert case_b.status is CaseStatus.submitted and case_b.version == 0
    assert not await SupplementRequest.filter(case_id=b).exists()
    # In scope it works, for the hall's clerk and for the department's approver alike.
    assert (await w.qc.post(f"/api/v1/cases/{b}/transitions",
                            json={"action": "accept"})).status == 200
    assert (await w.mz.post(f"/api/v1/cases/{a}/transitions",
                            json={"action": "accept"})).status == 200
    # Alerts and repeated notices are lists: out of scope rows are simply absent.
    due = clock.now() - timedelta(hours=1)
    for cid in (a, b):
        await CaseAlert.create(case_id=cid, level=CaseAlertLevel.overdue, due_at=due)
    alerts = (await w.xf.get("/api/v1/admin/case-alerts")).json["alerts"]
    assert [x["case_id"] for x in alerts] == [a]
    for cid in (a, b):
        for seq in (1, 2):
            await SupplementRequest.create(case_id=cid, sequence=seq, items={"items": []},
                                           requested_at=clock.now(),
                                           new_requirement_reason="新情况" if seq == 2 else None)
    repeated = (await w.qc.get("/api/v1/admin/case-supplements/repeated")).json
    assert [x["case_id"] for x in repeated["supplements"]] == [b]


async def test_stats_count_only_what_is_in_scope(api: Any) -> None:
    w = await _world(api)
    await _open(w.zhang, XF)
    await _open(w.li, QC)
    await _open(w.li, XF, item="MZ-004")

    async def total(s: Any) -> tuple[int, set[str]]:
        resp = await s.get("/api/v1/admin/stats")
        assert resp.status == 200, resp.text
        return resp.json["total"]["cases"]["total"], {g["key"] for g in resp.json["groups"]}

    assert await total(w.xf) == (2, {XF})
    assert await total(w.qc) == (1, {QC})
    assert await total(w.sup) == (2, {XF})
    assert await total(w.ga) == (0, set())
    assert await total(w.admin) == (3, {XF, QC})


async def _complain(s: Any, hall: str) -> int:
    resp = await s.post("/api/v1/feedback", json={
        "kind": "complaint", "hall_code": hall, "text": "窗口排队时间太长，希望增开窗口"})
    assert resp.status == 201, resp.text
    return int(resp.json["id"])


async def test_feedback_is_worked_only_in_scope(api: Any) -> None:
    w = await _world(api)
    a = await _complain(w.zhang, XF)
    b = await _complain(w.li, QC)
    listed = (await w.xf.get("/api/v1/admin/feedback")).json["feedback"]
    assert [f["id"] for f in listed] == [a]
    assert [f["id"] for f in (await w.sup.get("/api/v1/admin/feedback")).json["feedback"]] == [a]
    assert {f["id"] for f in (await w.admin.get("/api/v1/admin/feedback")).json["feedback"]} \
        == {a, b}
    before = await Feedback.get(id=b)
    for call in (w.xf.get(f"/api/v1/admin/feedback/{b}"),
                 w.xf.post(f"/api/v1/admin/feedback/{b}/assign",
                           json={"handler_id": w.xf.user_id}),
                 w.xf.post(f"/api/v1/admin/feedback/{b}/reply", json={"text": "已整改完毕"}),
                 w.xf.post(f"/api/v1/admin/feedback/{b}/moderate", json={"approve": True})):
        resp = await call
        assert resp.status == 404, resp.text
    after = await Feedback.get(id=b)
    assert (after.status, after.version, after.handler_id, after.reply) == (
        before.status, before.version, before.handler_id, before.reply)
    # A handler must be someone who can see it: the 庆城县 clerk can't be handed 西峰区's report.
    refused = await w.xf.post(f"/api/v1/admin/feedback/{a}/assign",
                              json={"handler_id": w.qc.user_id})
    assert refused.status == 422 and "handler_id" in refused.json["error"]["fields"]
    ok = await w.qc.post(f"/api/v1/admin/feedback/{b}/reply", json={"text": "已增开窗口"})
    assert ok.status == 200, ok.text


async def test_rectifications_are_worked_only_in_scope(api: Any) -> None:
    w = await _world(api)
    ids = {}
    for who, hall, dept in ((w.zhang, XF, "市民政局"), (w.li, QC, "市公安局")):
        case = await Case.create(applicant_id=who.user_id, submitted_by_id=who.user_id,
                                 department=dept, hall_code=hall, status=CaseStatus.approved)
        resp = await who.post("/api/v1/ratings", json={"target_type": "case",
                                                        "target_id": case.id, "level": 1})
        assert resp.status == 201, resp.text
        ids[hall] = resp.json["rectification"]["id"]

    async def listed(s: Any) -> set[int]:
        return {t["id"] for t in (await s.get("/api/v1/admin/rectifications")).json["tasks"]}

    assert await listed(w.xf) == {ids[XF]}
    assert await listed(w.ga) == {ids[QC]}  # its department, at any hall of the city
    assert await listed(w.mz) == {ids[XF]}
    assert await listed(w.admin) == {ids[XF], ids[QC]}
    other = ids[QC]
    for call in (w.xf.get(f"/api/v1/admin/rectifications/{other}"),
                 w.xf.post(f"/api/v1/admin/rectifications/{other}/reply",
                           json={"text": "已整改"}),
                 w.mz.post(f"/api/v1/admin/rectifications/{other}/follow-up",
                           json={"result": "satisfied", "note": "回访"})):
        resp = await call
        assert resp.status == 404, resp.text
    task = await RectificationTask.get(id=other)
    assert task.status.value == "open" and task.reply in ("", None)
    assert (await w.ga.post(f"/api/v1/admin/rectifications/{other}/reply",
                            json={"text": "已整改"})).status == 200


async def _book(s: Any, hall: str) -> dict[str, Any]:
    for ahead in range(1, 10):
        day = (clock.today() + timedelta(days=ahead)).isoformat()
        resp = await s.get(f"/api/v1/halls/{hall}/slots",
                           params={"date": day, "window_kind": "comprehensive"})
        assert resp.status == 200, resp.text
        free = [x for x in resp.json["slots"] if x["bookable"]]
        if free:
            booked = await s.post("/api/v1/appointments",
                                  json={"slot_id": free[0]["id"], "item_code": "MZ-003"})
            assert booked.status == 201, booked.text
            return booked.json  # type: ignore[no-any-return]
    raise AssertionError("no open day")


async def test_appointments_and_hall_settings_only_in_scope(api: Any) -> None:
    w = await _world(api)
    appt = await _book(w.zhang, XF)
    day = appt["starts_at"][:10]
    rule = {"window_kind": "comprehensive", "slot_minutes": 20, "capacity": 4,
            "green_percent": 25, "book_ahead_days": 5}
    # The other hall's clerk: its appointments, code and rules don't exist for them.
    for call in (w.qc.get(f"/api/v1/halls/{XF}/appointments", params={"date": day}),
                 w.qc.get(f"/api/v1/halls/{XF}/check-in-code"),
                 w.qc.get(f"/api/v1/halls/{XF}/slot-rules"),
                 w.qc.put(f"/api/v1/halls/{XF}/slot-rules", json=rule),
                 w.qc.get(f"/api/v1/appointments/{appt['id']}"),
                 w.qc.post("/api/v1/appointments/check-in", json={"code": appt["check_in_code"]}),
                 w.qc.put(f"/api/v1/admin/map/halls/{XF}", json=HALL_BODY)):
        resp = await call
        assert resp.status == 404, resp.text
    row = await Appointment.get(id=appt["id"])
    assert row.status is AppointmentStatus.booked
    # Its own clerk reads; changing the hall's settings is its manager's (or a supervisor's).
    day_list = await w.xf.get(f"/api/v1/halls/{XF}/appointments", params={"date": day})
    assert [x["id"] for x in day_list.json["appointments"]] == [appt["id"]]
    assert (await w.xf.get(f"/api/v1/halls/{XF}/slot-rules")).status == 200
    assert (await w.xf.put(f"/api/v1/halls/{XF}/slot-rules", json=rule)).status == 403
    assert (await w.xf.put(f"/api/v1/admin/map/halls/{XF}", json=HALL_BODY)).status == 403
    manager = await api.login("xf-manager", hall=XF, position=Position.hall_manager)
    assert (await manager.put(f"/api/v1/halls/{XF}/slot-rules", json=rule)).status == 200
    assert (await w.sup.put(f"/api/v1/halls/{XF}/slot-rules", json=rule)).status == 200
    # Its own clerk reaches the appointment (only the check-in window, tomorrow, refuses).
    early = await w.xf.post("/api/v1/appointments/check-in", json={"code": appt["check_in_code"]})
    assert early.status == 409, early.text
    assert (await w.xf.get(f"/api/v1/appointments/{appt['id']}")).status == 200


async def test_person_reveal_needs_business_in_scope(api: Any) -> None:
    w = await _world(api)
    await _open(w.zhang, XF)
    await _open(w.li, QC)
    zhang = await Person.get(id_number_hash=people.id_lookup_hash(ZHANG[1]))
    li = await Person.get(id_number_hash=people.id_lookup_hash(LI[1]))
    ok = await w.xf.post(f"/api/v1/admin/persons/{zhang.id}/reveal",
                         json={"reason": "核对申请材料"})
    assert ok.status == 200 and ok.json["name"] == ZHANG[0]
    denied = await w.xf.post(f"/api/v1/admin/persons/{li.id}/reveal",
                             json={"reason": "核对申请材料"})
    assert denied.status == 404
    assert not await AuditLog.filter(subject_person_id=li.id).exists()


async def test_helper_profiles_by_hall_and_several_halls(api: Any) -> None:
    await seed.run()
    li = await api.login("li")
    await li.bind_identity(*LI)
    xf, qc = await api.login("xf-clerk", hall=XF), await api.login("qc-clerk", hall=QC)
    xf_helper = await api.login("h-xf", Role.helper)
    qc_helper = await api.login("h-qc", Role.helper)
    both = await api.login("h-both", Role.helper, hall=XF, position=Position.helper)
    for s, hall in ((xf_helper, XF), (qc_helper, QC), (both, XF)):
        await helpers.ensure_profile(user_id=s.user_id, hall_code=hall,
                                     departments=["市民政局"], themes=[])
    from tests.conftest import grant_position

    await grant_position(both.user_id, hall=QC, position=Position.helper)

    async def seen(s: Any) -> set[int]:
        resp = await s.get("/api/v1/admin/helpers")
        assert resp.status == 200, resp.text
        return {p["user_id"] for p in resp.json["helpers"]}

    assert await seen(xf) == {xf_helper.user_id, both.user_id}
    assert await seen(qc) == {qc_helper.user_id, both.user_id}
    # Automatic assignment at 庆城县 may pick the helper whose home hall is 西峰区.
    cid = await _open(li, QC)
    await Case.filter(id=cid).update(status=CaseStatus.accepted)
    helped = await li.post(f"/api/v1/cases/{cid}/help", json={"note": "行动不便"})
    assert helped.status in (200, 201), helped.text
    assert helped.json["assigned"] is True
    offered = helped.json["helper"]["helper_user_id"]
    assert offered in (qc_helper.user_id, both.user_id)
    # With the 庆城县 helper off duty, the one serving both halls is the only candidate.
    cid2 = await _open(li, QC, item="MZ-004")
    await Case.filter(id=cid2).update(status=CaseStatus.accepted)
    await HelperProfile.filter(user_id=qc_helper.user_id).update(on_duty=False)
    again = await li.post(f"/api/v1/cases/{cid2}/help", json={"note": "行动不便"})
    assert again.json["helper"]["helper_user_id"] == both.user_id, again.text


async def _plates_issued(*codes: str) -> set[str]:
    rows = await IssuedCode.filter(doorplate__code__in=codes, active_key__not_isnull=True) \
        .values_list("doorplate__code", flat=True)
    return {str(c) for c in rows}


async def test_door_plates_only_in_the_area_served(api: Any) -> None:
    """The four door-plate staff routes act only on plates in the area the actor serves:
    the county of a county hall, the street of a street's hall, the supervised region."""
    w = await _world(api)
    beijie = await api.login("beijie-clerk", hall="H-XF-101")  # 北街街道便民服务中心
    batch, sheet = "/api/v1/codes/doorplates/batch", "/api/v1/codes/doorplates/sheet"
    # A resident is refused outright on every route, whatever the plate.
    for resp in (await w.zhang.post(batch, json={"plate_codes": ["D-XF-0001"]}),
                 await w.zhang.get(sheet, params={"plate_codes": ["D-XF-0001"]}),
                 await w.zhang.get("/api/v1/codes/doorplates/D-XF-0001/wxacode"),
                 await w.zhang.delete("/api/v1/codes/doorplates/D-XF-0001")):
        assert resp.status == 403, resp.text
    # 庆城县's clerk can't issue 西峰区's plates: one foreign plate fails the whole batch,
    # named like a missing one, and nothing is issued (not even the clerk's own plate).
    mixed = await w.qc.post(batch, json={"plate_codes": ["D-QC-0001", "D-XF-0004"]})
    assert mixed.status == 404, mixed.text
    assert mixed.json["error"]["fields"] == {"plate_codes": "D-XF-0004"}
    assert await _plates_issued("D-QC-0001", "D-XF-0004") == set()
    # Approvers serve a department, not a place: no plates.
    assert (await w.mz.post(batch, json={"plate_codes": ["D-XF-0001"]})).status == 404
    # A street's hall: its street's plates only (D-XF-0003 is on 南街街道).
    assert (await beijie.post(batch, json={"plate_codes": ["D-XF-0003"]})).status == 404
    own = await beijie.post(batch, json={"plate_codes": ["D-XF-0001", "D-XF-0002"]})
    assert own.status == 200, own.text
    # The county hall's clerk has the whole county, the supervisor their region.
    made = await w.xf.post(batch, json={"plate_codes": ["D-XF-0003", "D-XF-0004"]})
    assert made.status == 200, made.text
    assert (await w.sup.post(batch, json={"plate_codes": ["D-XF-0001"]})).status == 200
    assert (await w.qc.post(batch, json={"plate_codes": ["D-QC-0001"]})).status == 200
    assert await _plates_issued("D-XF-0001", "D-XF-0002", "D-XF-0003", "D-XF-0004",
                                "D-QC-0001") == {"D-XF-0001", "D-XF-0002", "D-XF-0003",
                                                 "D-XF-0004", "D-QC-0001"}
    # Printing: the same area.
    for who, plate, status in ((w.qc, "D-XF-0001", 404), (beijie, "D-XF-0003", 404),
                               (w.ga, "D-XF-0001", 404), (w.xf, "D-XF-0001", 200),
                               (beijie, "D-XF-0002", 200), (w.sup, "D-XF-0004", 200),
                               (w.qc, "D-QC-0001", 200), (w.admin, "D-XF-0001", 200)):
        resp = await who.get(sheet, params={"plate_codes": [plate]})
        assert resp.status == status, (plate, resp.text)
    out = await w.qc.get(sheet, params={"plate_codes": ["D-QC-0001", "D-XF-0001"]})
    assert out.status == 404 and out.json["error"]["fields"] == {"plate_codes": "D-XF-0001"}
    # The mini-program code of another area's plate doesn't exist for them.
    for who, plate, status in ((w.qc, "D-XF-0001", 404), (beijie, "D-XF-0003", 404),
                               (w.xf, "D-QC-0001", 404), (w.xf, "D-XF-0001", 200),
                               (w.admin, "D-QC-0001", 200)):
        resp = await who.get(f"/api/v1/codes/doorplates/{plate}/wxacode")
        assert resp.status == status, (plate, resp.text)
    # Revoking another area's plate: 404, and its code stays active.
    for who, plate in ((w.qc, "D-XF-0001"), (beijie, "D-XF-0003"), (w.sup, "D-QC-0001"),
                       (w.mz, "D-XF-0002")):
        resp = await who.delete(f"/api/v1/codes/doorplates/{plate}")
        assert resp.status == 404, resp.text
    assert await _plates_issued("D-XF-0001", "D-XF-0002", "D-XF-0003", "D-QC-0001") == {
        "D-XF-0001", "D-XF-0002", "D-XF-0003", "D-QC-0001"}
    assert (await beijie.delete("/api/v1/codes/doorplates/D-XF-0001")).status == 200
    assert (await w.admin.delete("/api/v1/codes/doorplates/D-QC-0001")).status == 200
    assert await _plates_issued("D-XF-0001", "D-QC-0001") == set()


async def test_delivery_figures_count_only_what_is_in_scope(api: Any) -> None:
    """GET /admin/notifications/figures counts the notices whose business (case, appointment)
    lies in the caller's scope, like /admin/stats: another hall's staff see none of them."""
    w = await _world(api)
    a = await _open(w.zhang, XF)
    b = await _open(w.li, QC)
    for who, cid in ((w.xf, a), (w.qc, b)):
        moved = await who.post(f"/api/v1/cases/{cid}/transitions", json={"action": "accept"})
        assert moved.status == 200, moved.text
    await _book(w.zhang, XF)  # an appointment notice: the hall's, no department
    await outbox.dispatch_due()
    # The real flows stamped each notice with its place.
    at_xf = await Notification.filter(hall_code=XF).count()
    at_qc = await Notification.filter(hall_code=QC).count()
    appt_at_xf = await Notification.filter(hall_code=XF, department="").count()
    assert at_xf > appt_at_xf > 0 and at_qc > 0
    everything = await Notification.all().count()

    async def seen(s: Any) -> tuple[int, set[str]]:
        resp = await s.get("/api/v1/admin/notifications/figures")
        assert resp.status == 200, resp.text
        rows = resp.json["rows"]
        return sum(r["total"] for r in rows), {r["template"] for r in rows}

    xf_total, xf_templates = await seen(w.xf)
    assert xf_total == at_xf and "appointment_booked" in xf_templates
    qc_total, qc_templates = await seen(w.qc)
    assert qc_total == at_qc and "appointment_booked" not in qc_templates
    assert (await seen(w.sup))[0] == at_xf  # 西峰区 and below
    # 市民政局 (a city department): its cases' notices at every hall, not the appointment's.
    assert (await seen(w.mz))[0] == at_xf - appt_at_xf + at_qc
    assert (await seen(w.ga)) == (0, set())
    assert (await seen(w.admin))[0] == everything
    assert (await w.zhang.get("/api/v1/admin/notifications/figures")).status == 403
