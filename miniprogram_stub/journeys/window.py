"""综窗 at the window: a walk-in is received by the clerk (首问负责), told everything missing
before acceptance (一次性告知单 PDF), accepted with a non-key material to follow (容缺), approved
and held at the window until the material is in; another walk-in is refused (不予受理) with a
ground and a printed 告知书. Other halls see none of it."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from miniprogram_stub.client import Journeys

ZHANG = ("张建国", "621002194103050316")
LI = ("李秀兰", "621021197508120426")
SHANGHAI = ZoneInfo("Asia/Shanghai")


async def journey_walk_in_at_the_comprehensive_window(j: Journeys) -> None:
    zhang = await j.phone("zhang")
    clerk = await j.phone("demo-staff")  # 综窗 at 西峰区政务服务中心
    other = await j.phone("demo-staff2")  # 庆城县: another hall
    supervisor = await j.phone("demo-supervisor")
    approver = await j.phone("demo-approver")  # 市民政局
    # The clerk reads zhang's ID card; the hall is the clerk's own.
    case = await clerk.call("POST", "/api/v1/window/cases", expect=201, json={
        "name": ZHANG[0], "id_number": ZHANG[1], "item_code": "MZ-004",
        "note": "老人到窗口申请高龄津贴"})
    cid = case["id"]
    assert case["hall_code"] == "H-XF-000" and case["owner"]["staff_id"] == clerk.user_id, case
    assert "户口簿" in case["rules"]["tolerable"], case["rules"]
    # 一次性告知 before acceptance: everything missing at once, each with its reason.
    told = await clerk.call("POST", f"/api/v1/cases/{cid}/supplement-requests", expect=201,
                            json={"items": [
                                {"material": "户口簿", "reason": "未携带原件"},
                                {"material": "社会保障卡或银行卡", "reason": "用于发放津贴"}]})
    assert told["status"] == "materials_pending", told
    # zhang sees the same list in the mini program and can print the notice.
    mine = await zhang.call("GET", f"/api/v1/cases/{cid}")
    assert [m["material"] for m in mine["missing"]] == ["户口簿", "社会保障卡或银行卡"], mine
    view = await zhang.call("GET", f"/api/v1/window/cases/{cid}")
    pdf = await zhang.call("GET", view["notices"][0]["notice_pdf"])
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF"), pdf[:20]
    await other.call("GET", f"/api/v1/window/cases/{cid}", expect=404)
    # zhang is back with the bank card; the 户口簿 is at his son's: 容缺受理, due in a week.
    accepted = await clerk.call("POST", f"/api/v1/window/cases/{cid}/accept", json={
        "received": ["社会保障卡或银行卡"],
        "tolerated": [{"material": "户口簿", "reason": "原件在子女处"}],
        # The phone's clock is the city's (a client has no services.clock).
        "supply_by": (datetime.now(SHANGHAI).date() + timedelta(days=7)).isoformat(),
        "note": "社会保障卡已当场核验"})
    assert accepted["status"] == "accepted" and accepted["due_at"], accepted
    assert accepted["release_blockers"] == ["容缺材料“户口簿”尚未补齐"], accepted
    load = await supervisor.call("GET", "/api/v1/window/owner-load")
    assert any(o["staff_id"] == clerk.user_id and o["open_cases"] >= 1
               for o in load["owners"]), load
    for action in ("start_review", "approve"):
        await approver.call("POST", f"/api/v1/cases/{cid}/transitions",
                            json={"action": action, "note": "符合条件"})
    # Approved, but the result waits at the window until the 户口簿 is in.
    await clerk.call("POST", f"/api/v1/cases/{cid}/transitions", json={"action": "deliver"},
                     expect=409)
    tid = accepted["tolerated"][0]["id"]
    supplied = await clerk.call("POST", f"/api/v1/window/cases/{cid}/tolerated/{tid}/supplied")
    assert supplied["release_blockers"] == [], supplied
    # 统一窗口出件: 张建国 collects the result at the window; the clerk checks his own 人码.
    await zhang.call("POST", f"/api/v1/approval/cases/{cid}/release-choice",
                     json={"method": "window"})
    own = (await zhang.call("GET", "/api/v1/me/code"))["content"]
    handed = await clerk.call("POST", f"/api/v1/approval/cases/{cid}/pickup",
                              json={"person_code": own})
    assert handed["verified_by"] == "person_code" and handed["released_at"], handed
    done = await zhang.call("GET", f"/api/v1/cases/{cid}")
    assert done["status"] == "result_delivered", done


async def journey_walk_in_refused_with_a_ground(j: Journeys) -> None:
    li = await j.phone("li")
    clerk = await j.phone("demo-staff")
    case = await clerk.call("POST", "/api/v1/window/cases", expect=201, json={
        "name": LI[0], "id_number": LI[1], "item_code": "MZ-004"})
    cid = case["id"]
    # Only a ground the item lists; a bare "refuse" transition is not a way around it.
    await clerk.call("POST", f"/api/v1/window/cases/{cid}/refuse",
                     json={"ground": "不想办"}, expect=422)
    await clerk.call("POST", f"/api/v1/cases/{cid}/transitions", json={"action": "refuse"},
                     expect=422)
    refused = await clerk.call("POST", f"/api/v1/window/cases/{cid}/refuse", json={
        "ground": "申请人未满80周岁", "note": "申请人1975年出生"})
    assert refused["status"] == "not_accepted" and refused["refusal"]["legal_basis"], refused
    pdf = await li.call("GET", refused["refusal"]["notice_pdf"])
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF")
    mine = await li.call("GET", f"/api/v1/cases/{cid}")
    assert mine["status_label"] == "不予受理", mine


JOURNEYS = [journey_walk_in_at_the_comprehensive_window, journey_walk_in_refused_with_a_ground]
