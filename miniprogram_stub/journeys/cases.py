"""办件 and 帮办: apply → 一次性告知 → resubmit → approved; ask for help → a helper takes it."""

from __future__ import annotations

from typing import Any

from miniprogram_stub.client import Journeys, MiniProgram
from miniprogram_stub.journeys.approval import department_approves


async def journey_apply_supplement_approved(j: Journeys) -> None:
    zhang = await j.phone("zhang")
    staff = await j.phone("demo-staff")
    await zhang.call("POST", "/api/v1/me/subscriptions",
                     json={"template": "case_status", "accepted": True, "long_term": True})
    case = await zhang.call("POST", "/api/v1/cases",
                            json={"item_code": "MZ-003", "hall_code": "H-XF-000",
                                  "note": "申请最低生活保障"}, expect=201)
    cid = case["id"]
    assert case["applicant"]["id_number"].startswith("6210**"), case["applicant"]

    async def move(who: MiniProgram, action: str, note: str = "") -> Any:
        return await who.call("POST", f"/api/v1/cases/{cid}/transitions",
                              json={"action": action, "note": note})

    accepted = await move(staff, "accept", "材料初审通过，予以受理")
    assert accepted["due_at"], accepted
    # 一次性告知: everything missing in one notice, each with its reason.
    await staff.call("POST", f"/api/v1/cases/{cid}/supplement-requests", expect=201, json={
        "items": [{"material": "户口簿", "reason": "缺少户主页"},
                  {"material": "家庭收入情况声明", "reason": "未签字"}]})
    mine = await zhang.call("GET", f"/api/v1/cases/{cid}")
    assert mine["clock_paused"] and len(mine["missing"]) == 2, mine
    await move(zhang, "resubmit", "已补齐户口簿与签字的声明")
    await move(staff, "start_review")
    # The applicant can't approve their own case.
    await zhang.call("POST", f"/api/v1/cases/{cid}/transitions",
                     json={"action": "approve"}, expect=403)
    # 后台分类审批: the clerk sends it on; 市民政局's approver decides (services/approval).
    await department_approves(await j.phone("demo-approver"), cid)
    approved = await zhang.call("GET", f"/api/v1/cases/{cid}")
    assert approved["status"] == "approved" and approved["missing"] == []
    # Approving twice is an illegal transition, not a silent no-op.
    await staff.call("POST", f"/api/v1/cases/{cid}/transitions", json={"action": "approve"},
                     expect=409)
    await move(staff, "deliver")
    # Another resident can't see it.
    wang = await j.phone("wang")
    await wang.call("GET", f"/api/v1/cases/{cid}", expect=404)


async def journey_ask_for_help_helper_takes_it(j: Journeys) -> None:
    li = await j.phone("li")
    staff = await j.phone("demo-staff")
    # 残疾人证: only demo-helper covers 市残联 at the 西峰区 hall.
    case = await li.call("POST", "/api/v1/cases", expect=201, json={
        "item_code": "CL-001", "hall_code": "H-XF-000", "need_help": True,
        "help_note": "行动不便，请帮忙办理"})
    cid = case["id"]
    assert case["helper"] is not None, case
    helper = await j.phone("demo-helper")
    assert case["helper"]["helper_user_id"] == helper.user_id, case["helper"]
    work = await helper.call("GET", "/api/v1/helper/cases")
    mine = [w for w in work["items"] if w["case_id"] == cid]
    assert mine and mine[0]["applicant_name"].startswith("*"), mine
    await helper.call("POST", f"/api/v1/helper/assignments/{mine[0]['assignment_id']}/accept")
    # The other helper never sees it.
    other = await j.phone("demo-helper2")
    await other.call("GET", f"/api/v1/cases/{cid}", expect=404)

    # Staff ask for one more material; the helper resubmits for li only once li authorises it.
    await staff.call("POST", f"/api/v1/cases/{cid}/transitions", json={"action": "accept"})
    await staff.call("POST", f"/api/v1/cases/{cid}/supplement-requests", expect=201, json={
        "items": [{"material": "残疾评定表", "reason": "须二级以上医院出具"}]})
    await helper.call("POST", f"/api/v1/cases/{cid}/transitions",
                      json={"action": "resubmit"}, expect=403)
    await li.call("POST", "/api/v1/proxy-authorizations", expect=201, json={
        "helper_user_id": helper.user_id, "scopes": ["supplement"], "case_id": cid, "days": 7})
    done = await helper.call("POST", f"/api/v1/cases/{cid}/transitions",
                             json={"action": "resubmit", "note": "已陪同到医院开具评定表"})
    assert done["status"] == "resubmitted" and done["timeline"][-1]["actor_kind"] == "helper"


JOURNEYS = [
    journey_apply_supplement_approved,
    journey_ask_for_help_helper_takes_it,
]
