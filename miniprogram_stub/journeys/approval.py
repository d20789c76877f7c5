"""综窗 behind the scenes and at the result window: a 一件事 bundle approved by two departments
in parallel, then handed over at the window to the applicant in person (人码 checked)."""

from __future__ import annotations

from typing import Any

from miniprogram_stub.client import Journeys, MiniProgram


async def task_of(approver: MiniProgram, case_id: int) -> Any:
    """The case's task in this approver's department queue."""
    queue = await approver.call("GET", "/api/v1/approval/tasks", params={"limit": 100})
    found = [t for t in queue["tasks"] if t["case_id"] == case_id]
    assert len(found) == 1, queue
    return found[0]


async def department_approves(approver: MiniProgram, case_id: int,
                              opinion: str = "符合条件") -> Any:
    """后台分类审批: take the case's task from the department's queue and approve it."""
    task = await task_of(approver, case_id)
    await approver.call("POST", f"/api/v1/approval/tasks/{task['id']}/claim")
    return await approver.call("POST", f"/api/v1/approval/tasks/{task['id']}/decision",
                               json={"approve": True, "opinion": opinion})


async def journey_bundle_approved_in_parallel_then_picked_up(j: Journeys) -> None:
    agent = await j.phone("demo-agent")
    clerk = await j.phone("demo-staff")
    sj = await j.phone("demo-approver-sj")  # 市市场监管局
    sw = await j.phone("demo-approver-sw")  # 市税务局
    me = await agent.call("GET", "/api/v1/me")
    enterprise_id = me["enterprises"][0]["id"]
    # 企业注销登记一件事: 市场监管局 and 税务局, one application at one window.
    case = await agent.call("POST", "/api/v1/cases", expect=201, json={
        "bundle_code": "YJS-06", "hall_code": "H-XF-000", "enterprise_id": enterprise_id})
    cid = case["id"]
    accepted = await clerk.call("POST", f"/api/v1/cases/{cid}/transitions",
                                json={"action": "accept", "note": "一窗受理"})
    assert {d["department"] for d in accepted["departments"]} == {"市市场监管局", "市税务局"}
    # Both departments take their part at once (并联审批); neither sees the other's task.
    t_sj, t_sw = await task_of(sj, cid), await task_of(sw, cid)
    await sw.call("GET", f"/api/v1/approval/tasks/{t_sj['id']}", expect=404)
    await sj.call("POST", f"/api/v1/approval/tasks/{t_sj['id']}/claim")
    await sw.call("POST", f"/api/v1/approval/tasks/{t_sw['id']}/claim")
    # The clerk receives; deciding is the departments'.
    refused = await clerk.call("POST", f"/api/v1/cases/{cid}/transitions", expect=409,
                               json={"action": "approve", "note": "符合"})
    assert refused["error"]["code"] == "approval_by_departments", refused
    await sj.call("POST", f"/api/v1/approval/tasks/{t_sj['id']}/decision",
                  json={"approve": True, "opinion": "注销材料齐全，准予注销登记"})
    half = await agent.call("GET", f"/api/v1/cases/{cid}")
    assert half["status"] == "under_review", half
    assert {d["department"]: d["status"] for d in half["departments"]} == {
        "市市场监管局": "approved", "市税务局": "claimed"}, half["departments"]
    await sw.call("POST", f"/api/v1/approval/tasks/{t_sw['id']}/decision",
                  json={"approve": True, "opinion": "无欠税，清税证明已出具"})
    done = await agent.call("GET", f"/api/v1/cases/{cid}")
    assert done["status"] == "approved", done
    # 统一窗口出件: the applicant picks it up at the window; the clerk checks their 人码.
    await agent.call("POST", f"/api/v1/approval/cases/{cid}/release-choice",
                     json={"method": "window"})
    zhang = await j.phone("zhang")
    someone_else = (await zhang.call("GET", "/api/v1/me/code"))["content"]
    wrong = await clerk.call("POST", f"/api/v1/approval/cases/{cid}/pickup", expect=403,
                             json={"person_code": someone_else})
    assert wrong["error"]["code"] == "pickup_wrong_person", wrong
    own = (await agent.call("GET", "/api/v1/me/code"))["content"]
    handed = await clerk.call("POST", f"/api/v1/approval/cases/{cid}/pickup",
                              json={"person_code": own})
    assert handed["verified_by"] == "person_code" and handed["released_at"], handed
    final = await agent.call("GET", f"/api/v1/cases/{cid}")
    assert final["status"] == "result_delivered" and final["release"]["released_at"], final


JOURNEYS = [journey_bundle_approved_in_parallel_then_picked_up]
