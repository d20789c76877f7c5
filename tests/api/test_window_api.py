"""综窗 at the window over HTTP: walk-in intake, 首问负责 and hand-over, 一次性告知 before
acceptance with a readable PDF, 容缺 accept → supplied → result released, 告知承诺 and its 核查,
不予受理 with grounds and its 告知书; and who may do each (a clerk of another hall gets 404,
residents can't use the window, someone else's case ids are absent).

The world: the demo catalogue and organisation; clerks at 西峰区 (H-XF-000, two of them) and
庆城县 (H-QC-000), the 西峰区 hall manager, an approver of 市民政局, a supervisor of 西峰区."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pypdf import PdfReader

from models.cases import Case, CaseAlert, CaseAlertLevel, CaseStatus
from models.notifications import Notification
from models.org import Position
from models.users import Person
from models.window import ToleratedMaterial
from services import clock, outbox, people, seed
from services.window import acceptance

ZHANG = ("张建国", "621002194103050316")
LI = ("李秀兰", "621021197508120426")
ZHAO = ("赵丽", "621026199206300246")
XF, QC = "H-XF-000", "H-QC-000"


@dataclass
class World:
    xf: Any
    xf2: Any
    qc: Any
    manager: Any
    mz: Any
    sup: Any
    zhang: Any
    li: Any


async def _world(api: Any) -> World:
    await seed.run()
    zhang = await api.login("zhang")
    await zhang.bind_identity(*ZHANG)
    li = await api.login("li")
    await li.bind_identity(*LI)
    return World(
        xf=await api.login("xf-clerk", hall=XF), xf2=await api.login("xf-clerk2", hall=XF),
        qc=await api.login("qc-clerk", hall=QC),
        manager=await api.login("xf-manager", hall=XF, position=Position.hall_manager),
        mz=await api.login("mz-approver", department="市民政局"),
        sup=await api.login("xf-supervisor", region="621002"), zhang=zhang, li=li)


async def _walk_in(s: Any, who: tuple[str, str] = ZHANG, item: str = "MZ-004",
                   **extra: Any) -> dict[str, Any]:
    resp = await s.post("/api/v1/window/cases",
                        json={"name": who[0], "id_number": who[1], "item_code": item, **extra})
    assert resp.status == 201, resp.text
    return dict(resp.json)


def _pdf_text(body: bytes) -> str:
    reader = PdfReader(io.BytesIO(body))
    return "".join(page.extract_text() for page in reader.pages)


# --- walk-in intake ------------------------------------------------------------------------


async def _notices(user_id: int) -> list[str]:
    # What the person is told, once the outbox has delivered what the commits promised: kept
    # in their message centre (WeChat delivery is the notifications module's business).
    await outbox.dispatch_due()
    return [n.template for n in await Notification.filter(user_id=user_id).order_by("id")]


async def test_walk_in_for_a_bound_person_is_theirs_and_notifies_them(api: Any) -> None:
    w = await _world(api)
    case = await _walk_in(w.xf)
    # The hall is the clerk's own; the clerk who received the person owns the request.
    assert case["hall_code"] == XF and case["status"] == "submitted" and case["walk_in"]
    assert case["owner"]["staff_id"] == w.xf.user_id
    assert await _notices(w.zhang.user_id) == ["case_status"]
    mine = await w.zhang.get("/api/v1/cases")
    assert [c["id"] for c in mine.json["cases"]] == [case["id"]]
    # The resident sees the window view of their case, without the staff-only owner.
    seen = await w.zhang.get(f"/api/v1/window/cases/{case['id']}")
    assert seen.status == 200 and seen.json["owner"] is None
    # Someone else's case does not exist for li.
    assert (await w.li.get(f"/api/v1/window/cases/{case['id']}")).status == 404


async def test_walk_in_of_a_new_person_is_adopted_once_they_bind(api: Any) -> None:
    w = await _world(api)
    case = await _walk_in(w.xf, ZHAO)
    row = await Case.get(id=case["id"])
    assert row.applicant_id is None
    # A desk registration: the person record exists now, created from the card.
    assert await Person.exists(id_number_hash=people.id_lookup_hash(ZHAO[1]))
    zhao = await api.login("zhao")
    assert (await zhao.get(f"/api/v1/cases/{case['id']}")).status == 404  # not yet proven
    await zhao.bind_identity(*ZHAO)
    mine = await zhao.get("/api/v1/cases")
    assert [c["id"] for c in mine.json["cases"]] == [case["id"]]
    row = await Case.get(id=case["id"])
    assert row.applicant_id == zhao.user_id


async def test_walk_in_is_refused_to_residents_approvers_and_bad_input(api: Any) -> None:
    w = await _world(api)
    body = {"name": ZHANG[0], "id_number": ZHANG[1], "item_code": "MZ-004"}
    assert (await w.zhang.post("/api/v1/window/cases", json=body)).status == 403
    resp = await w.mz.post("/api/v1/window/cases", json=body)  # not at a hall's window
    assert resp.status == 403 and resp.json["error"]["code"] == "window_clerk_only"
    bad = await w.xf.post("/api/v1/window/cases", json={**body, "name": "王某某"})
    assert bad.status == 422 and "name" in bad.json["error"]["fields"]
    other = await w.xf.post("/api/v1/window/cases", json={**body, "item_code": "NOPE"})
    assert other.status == 422
    assert await Case.all().count() == 0


async def test_walk_in_from_a_checked_in_appointment(api: Any) -> None:
    w = await _world(api)
    from models.appointments import Appointment, AppointmentStatus
    from tests.api.test_appointments_api import HALL, ITEM, _open_slots

    slot = (await _open_slots(w.zhang))[0]
    booked = await w.zhang.post("/api/v1/appointments",
                                json={"slot_id": slot["id"], "item_code": ITEM})
    assert booked.status == 201, booked.text
    appt_id = booked.json["id"]
    clerk = await api.login("qy-clerk", hall=HALL)
    # Not checked in yet: nothing to pre-fill from.
    early = await clerk.post("/api/v1/window/cases", json={"appointment_id": appt_id})
    assert early.status == 422 and "appointment_id" in early.json["error"]["fields"]
    await Appointment.filter(id=appt_id).update(status=AppointmentStatus.checked_in)
    resp = await clerk.post("/api/v1/window/cases", json={"appointment_id": appt_id})
    assert resp.status == 201, resp.text
    assert resp.json["title"] == "居民身份证换领" and resp.json["hall_code"] == HALL
    again = await clerk.post("/api/v1/window/cases", json={"appointment_id": appt_id})
    assert again.status == 201 and again.json["id"] == resp.json["id"]  # one case only
    assert await Case.all().count() == 1
    # The ID card read at the desk must be the booked person's.
    wrong = await api.login("qy-clerk2", hall=HALL)
    await Case.all().delete()
    mismatch = await wrong.post("/api/v1/window/cases", json={
        "appointment_id": appt_id, "name": LI[0], "id_number": LI[1]})
    assert mismatch.status == 422 and "id_number" in mismatch.json["error"]["fields"]
    # A clerk of another hall can't see the appointment.
    assert (await w.xf.post("/api/v1/window/cases",
                            json={"appointment_id": appt_id})).status == 404


# --- 首问负责 -----------------------------------------------------------------------------------


async def test_first_receiver_owns_until_a_recorded_hand_over(api: Any) -> None:
    w = await _world(api)
    online = await w.li.post("/api/v1/cases", json={"item_code": "MZ-004", "hall_code": XF})
    cid = online.json["id"]
    unowned = await w.sup.get("/api/v1/window/unowned")
    assert [c["id"] for c in unowned.json["cases"]] == [cid]
    assert (await w.qc.get("/api/v1/window/unowned")).json["cases"] == []  # other hall
    # The first staff member to act on it owns it.
    resp = await w.xf.post(f"/api/v1/cases/{cid}/supplement-requests",
                           json={"items": [{"material": "户口簿", "reason": "未携带"}]})
    assert resp.status == 201, resp.text
    assert (await w.sup.get("/api/v1/window/unowned")).json["cases"] == []
    load = await w.sup.get("/api/v1/window/owner-load")
    assert load.json["owners"] == [{"staff_id": w.xf.user_id, "open_cases": 1}]
    # A colleague can't take it over; the clerk of another hall can't see it.
    body = {"to_user_id": w.xf2.user_id, "note": "换班移交"}
    assert (await w.xf2.post(f"/api/v1/window/cases/{cid}/handover",
                             json={"to_user_id": w.xf2.user_id, "note": "我来"})).status == 403
    assert (await w.qc.post(f"/api/v1/window/cases/{cid}/handover", json=body)).status == 404
    bad = await w.xf.post(f"/api/v1/window/cases/{cid}/handover",
                          json={"to_user_id": w.qc.user_id, "note": "移交"})
    assert bad.status == 422  # the receiver must be able to handle the case
    ok = await w.xf.post(f"/api/v1/window/cases/{cid}/handover", json=body)
    assert ok.status == 200, ok.text
    assert ok.json["owner"]["staff_id"] == w.xf2.user_id
    assert ok.json["owner"]["handed_over_by"] == w.xf.user_id
    assert [o["staff_id"] for o in ok.json["owner_history"]] == [w.xf.user_id, w.xf2.user_id]
    # The hall manager may reassign too.
    back = await w.manager.post(f"/api/v1/window/cases/{cid}/handover",
                                json={"to_user_id": w.xf.user_id, "note": "负责人调配"})
    assert back.status == 200 and back.json["owner"]["staff_id"] == w.xf.user_id
    for s in (w.zhang, w.li):
        assert (await s.get("/api/v1/window/unowned")).status == 403


# --- 一次性告知 before acceptance -----------------------------------------------------------------


async def test_missing_materials_told_before_acceptance_with_a_readable_pdf(api: Any) -> None:
    w = await _world(api)
    case = await _walk_in(w.xf)
    cid = case["id"]
    resp = await w.xf.post(f"/api/v1/cases/{cid}/supplement-requests", json={"items": [
        {"material": "户口簿", "reason": "未携带原件"},
        {"material": "社会保障卡或银行卡", "reason": "需提供本人账户用于发放"}]})
    assert resp.status == 201, resp.text
    assert resp.json["status"] == "materials_pending" and resp.json["due_at"] is None
    # The applicant sees the same list in the mini program.
    mine = await w.zhang.get(f"/api/v1/cases/{cid}")
    assert [m["material"] for m in mine.json["missing"]] == ["户口簿", "社会保障卡或银行卡"]
    view = await w.zhang.get(f"/api/v1/window/cases/{cid}")
    pdf_path = view.json["notices"][0]["notice_pdf"]
    pdf = await w.zhang.get(pdf_path)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    text = _pdf_text(pdf.body)
    for expected in ("一次性告知单", "高龄津贴申领", "户口簿", "未携带原件", "社会保障卡或银行卡",
                     "老年人权益保障法", "西峰区政务服务中心", f"工作人员{w.xf.user_id}",
                     "编号：GZ-"):
        assert expected in text, expected
    # Someone else and another hall's clerk get nothing.
    assert (await w.li.get(pdf_path)).status == 404
    assert (await w.qc.get(pdf_path)).status == 404
    # Handing the materials in at the desk puts it back to submitted; then a plain accept.
    back = await w.xf.post(f"/api/v1/cases/{cid}/transitions", json={"action": "resubmit"})
    assert back.status == 200 and back.json["status"] == "submitted"
    ok = await w.xf.post(f"/api/v1/window/cases/{cid}/accept", json={})
    assert ok.status == 200 and ok.json["status"] == "accepted" and ok.json["due_at"]


# --- 容缺受理 ---------------------------------------------------------------------------------


async def test_tolerated_accept_supplied_then_result_released(api: Any) -> None:
    w = await _world(api)
    cid = (await _walk_in(w.xf))["id"]
    await w.xf.post(f"/api/v1/cases/{cid}/supplement-requests", json={"items": [
        {"material": "居民身份证", "reason": "证件已过期"}]})
    # The ID card is a key material: no 容缺 for it.
    key = await w.xf.post(f"/api/v1/window/cases/{cid}/accept", json={})
    assert key.status == 409 and key.json["error"]["code"] == "window_key_materials_missing"
    # Refused with a tolerable material named: the move rolls back with nothing written.
    half = await w.xf.post(f"/api/v1/window/cases/{cid}/accept", json={
        "tolerated": [{"material": "户口簿", "reason": "在老家"}],
        "supply_by": str(clock.today() + timedelta(days=5))})
    assert half.status == 409
    assert await ToleratedMaterial.filter(case_id=cid).count() == 0
    assert (await Case.get(id=cid)).status is CaseStatus.materials_pending
    refused = await w.xf.post(f"/api/v1/window/cases/{cid}/accept", json={
        "tolerated": [{"material": "居民身份证", "reason": "过期"}],
        "supply_by": str(clock.today() + timedelta(days=5))})
    assert refused.status == 422 and "tolerated.0.material" in refused.json["error"]["fields"]
    # A bare transition can't accept a case whose materials are pending either.
    bare = await w.xf.post(f"/api/v1/cases/{cid}/transitions", json={"action": "accept"})
    assert bare.status == 422
    await w.xf.post(f"/api/v1/cases/{cid}/transitions", json={"action": "resubmit"})
    no_date = await w.xf.post(f"/api/v1/window/cases/{cid}/accept", json={
        "tolerated": [{"material": "户口簿", "reason": "在老家"}]})
    assert no_date.status == 422 and "supply_by" in no_date.json["error"]["fields"]
    resp = await w.xf.post(f"/api/v1/window/cases/{cid}/accept", json={
        "tolerated": [{"material": "户口簿", "reason": "在老家"}],
        "supply_by": str(clock.today() + timedelta(days=5))})
    assert resp.status == 200, resp.text
    assert resp.json["status"] == "accepted" and resp.json["due_at"]  # the clock runs
    assert [t["material"] for t in resp.json["tolerated"]] == ["户口簿"]
    assert resp.json["release_blockers"] == ["容缺材料“户口簿”尚未补齐"]
    # Through review to approval; the result can't be handed over while it's missing.
    # 后台分类审批 (services/approval): 市民政局's approver takes and approves it.
    [task] = (await w.mz.get("/api/v1/approval/tasks")).json["tasks"]
    assert task["case_id"] == cid
    await w.mz.post(f"/api/v1/approval/tasks/{task['id']}/claim")
    moved = await w.mz.post(f"/api/v1/approval/tasks/{task['id']}/decision",
                            json={"approve": True, "opinion": "符合条件"})
    assert moved.status == 200, moved.text
    held = await w.xf.post(f"/api/v1/cases/{cid}/transitions", json={"action": "deliver"})
    assert held.status == 409 and held.json["error"]["code"] == "window_result_blocked"
    tid = resp.json["tolerated"][0]["id"]
    assert (await w.qc.post(f"/api/v1/window/cases/{cid}/tolerated/{tid}/supplied")).status == 404
    assert (await w.zhang.post(f"/api/v1/window/cases/{cid}/tolerated/{tid}/supplied")).status \
        == 403
    got = await w.xf.post(f"/api/v1/window/cases/{cid}/tolerated/{tid}/supplied")
    assert got.status == 200 and got.json["release_blockers"] == []
    again = await w.xf.post(f"/api/v1/window/cases/{cid}/tolerated/{tid}/supplied")
    assert again.json["tolerated"][0]["supplied_at"] == got.json["tolerated"][0]["supplied_at"]
    done = await w.xf.post(f"/api/v1/cases/{cid}/transitions", json={"action": "deliver"})
    assert done.status == 200 and done.json["status"] == "result_delivered"


async def test_overdue_tolerated_material_alerts_once(api: Any) -> None:
    w = await _world(api)
    cid = (await _walk_in(w.xf))["id"]
    await w.xf.post(f"/api/v1/window/cases/{cid}/accept", json={
        "tolerated": [{"material": "户口簿", "reason": "在老家"}],
        "supply_by": str(clock.today() + timedelta(days=2))})
    assert await acceptance.raise_material_alerts() == 0  # not late yet
    later = clock.today() + timedelta(days=3)
    sent = len(await _notices(w.zhang.user_id))
    assert await acceptance.raise_material_alerts(today=later) == 1
    assert await acceptance.raise_material_alerts(today=later) == 0  # once
    assert await CaseAlert.filter(case_id=cid, level=CaseAlertLevel.materials_late).count() == 1
    assert len(await _notices(w.zhang.user_id)) == sent + 1
    alerts = await w.xf.get("/api/v1/admin/case-alerts", params={"level": "materials_late"})
    assert [a["case_id"] for a in alerts.json["alerts"]] == [cid]
    assert (await w.qc.get("/api/v1/admin/case-alerts",
                           params={"level": "materials_late"})).json["alerts"] == []
    row = await ToleratedMaterial.get(case_id=cid)
    assert row.alerted_at is not None


# --- 告知承诺制 ---------------------------------------------------------------------------------


async def test_commitment_accept_and_check_found_false(api: Any) -> None:
    w = await _world(api)
    # 高龄津贴 doesn't use 告知承诺制.
    plain = (await _walk_in(w.xf))["id"]
    no = await w.xf.post(f"/api/v1/window/cases/{plain}/accept",
                         json={"commitment_text": "本人承诺所提供信息真实有效，如有不实愿承担责任"})
    assert no.status == 422 and "commitment_text" in no.json["error"]["fields"]
    cid = (await _walk_in(w.xf, item="CL-002"))["id"]
    await w.xf.post(f"/api/v1/cases/{cid}/supplement-requests", json={"items": [
        {"material": "家庭经济困难证明", "reason": "未开具"}]})
    text = "本人承诺家庭经济困难情况属实，如有不实愿承担法律责任并退回补贴"
    resp = await w.xf.post(f"/api/v1/window/cases/{cid}/accept", json={"commitment_text": text})
    assert resp.status == 200, resp.text
    com = resp.json["commitment"]
    assert com["text"] == text and com["materials"] == ["家庭经济困难证明"]
    assert com["signer"] == "*建国" and com["check_status"] == "pending"
    # The 核查 task is the department's (市残联) and the hall's, in scope only.
    cl = await api.login("cl-approver", department="市残联")
    checks = await cl.get("/api/v1/window/commitment-checks")
    assert [c["case_id"] for c in checks.json["checks"]] == [cid]
    for other in (w.qc, w.mz):
        assert (await other.get("/api/v1/window/commitment-checks")).json["checks"] == []
    path = f"/api/v1/window/commitments/{com['id']}/check"
    body = {"truthful": False, "finding": "经入户核查，家庭收入高于当地低保标准"}
    assert (await w.qc.post(path, json=body)).status == 404
    assert (await w.mz.post(path, json=body)).status == 404
    assert (await w.zhang.post(path, json=body)).status == 403
    checked = await cl.post(path, json=body)
    assert checked.status == 200 and checked.json["check_status"] == "false"
    assert (await cl.post(path, json=body)).status == 409  # checked once
    view = await w.xf.get(f"/api/v1/window/cases/{cid}")
    assert view.json["release_blockers"] == ["告知承诺经核查不实，结果暂缓发放"]
    detail = await w.zhang.get(f"/api/v1/cases/{cid}")
    assert detail.json["timeline"][-1]["action"] == "commitment_false"


# --- 不予受理 -----------------------------------------------------------------------------------


async def test_refusal_with_a_ground_notice_and_pdf(api: Any) -> None:
    w = await _world(api)
    cid = (await _walk_in(w.xf, LI))["id"]
    path = f"/api/v1/window/cases/{cid}/refuse"
    assert (await w.xf.post(path, json={"ground": "看着不像"})).status == 422
    assert (await w.qc.post(path, json={"ground": "申请人未满80周岁"})).status == 404
    assert (await w.li.post(path, json={"ground": "申请人未满80周岁"})).status == 403
    bare = await w.xf.post(f"/api/v1/cases/{cid}/transitions", json={"action": "refuse"})
    assert bare.status == 422  # never a silent reject
    resp = await w.xf.post(path, json={"ground": "申请人未满80周岁", "note": "1975年出生"})
    assert resp.status == 200, resp.text
    assert resp.json["status"] == "not_accepted"
    assert resp.json["refusal"]["legal_basis"].startswith("《中华人民共和国老年人权益保障法》")
    assert (await _notices(w.li.user_id))[-1] == "case_result"  # the applicant is told
    pdf = await w.li.get(resp.json["refusal"]["notice_pdf"])
    assert pdf.status == 200
    text = _pdf_text(pdf.body)
    for expected in ("不予受理告知书", "申请人未满80周岁", "老年人权益保障法", "行政复议"):
        assert expected in text, expected
    assert (await w.zhang.get(resp.json["refusal"]["notice_pdf"])).status == 404
    again = await w.xf.post(path, json={"ground": "申请人未满80周岁"})
    assert again.status == 409
    assert (await Case.get(id=cid)).status is CaseStatus.not_accepted


async def test_window_journeys_in_process(api: Any, app: Any) -> None:
    """The scripted client's window journeys over ASGI against the demo data, twice (a rerun
    must find nothing left behind that breaks it)."""
    import httpx

    from miniprogram_stub import demo_accounts
    from miniprogram_stub.client import Journeys
    from miniprogram_stub.journeys import window as window_journeys
    from services.settings import get_settings

    await seed.run()
    await demo_accounts.seed(get_settings().wechat_appid)
    await api.get("/healthz")  # let the test client finish the app's startup first
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mp") as http:
        j = Journeys(http)
        for _ in range(2):
            for journey in window_journeys.JOURNEYS:
                await journey(j)


async def test_identity_look_ups_at_the_window_are_rate_limited(
        api: Any, monkeypatch: Any) -> None:
    w = await _world(api)
    from services.window import intake

    monkeypatch.setattr(intake, "INTAKE_PER_HOUR", 2)
    body = {"name": "王某某", "id_number": ZHANG[1], "item_code": "MZ-004"}
    for _ in range(2):
        assert (await w.xf.post("/api/v1/window/cases", json=body)).status == 422
    limited = await w.xf.post("/api/v1/window/cases", json=body)
    assert limited.status == 429 and limited.json["error"]["code"] == "rate_limited"
    # Per clerk: a colleague at the same hall is not held up.
    assert (await w.xf2.post("/api/v1/window/cases", json=body)).status == 422
