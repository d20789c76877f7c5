"""投诉建议 and 好差评: complain → staff reply → satisfied; rate an approved case badly →
rectification reply → 回访."""

from __future__ import annotations

from miniprogram_stub.client import Journeys
from miniprogram_stub.journeys.approval import department_approves


async def journey_complain_reply_satisfied(j: Journeys) -> None:
    zhao = await j.phone("zhao")
    staff = await j.phone("demo-staff")
    await zhao.call("POST", "/api/v1/me/subscriptions",
                    json={"template": "feedback_reply", "accepted": True})
    fb = await zhao.call("POST", "/api/v1/feedback", expect=201, json={
        "kind": "complaint", "hall_code": "H-XF-000",
        "text": "周六上午去西峰区政务服务中心，综合窗口只开了一个，排队一个半小时，"
                "请回电 139-1234-5678",
        "photos": ["https://img.example.cn/queue.jpg"]})
    fid = fb["id"]
    assert fb["status"] == "submitted" and fb["department"] == "西峰区政务服务中心", fb
    # Risky words never reach the database.
    err = await zhao.call("POST", "/api/v1/feedback", expect=422,
                          json={"kind": "complaint", "text": "门口有人招揽赌博"})
    assert err["error"]["code"] == "content_rejected", err
    # Nobody else reads it; a resident can't reach the staff side.
    wang = await j.phone("wang")
    await wang.call("GET", f"/api/v1/feedback/{fid}", expect=404)
    await wang.call("POST", f"/api/v1/admin/feedback/{fid}/reply",
                    json={"text": "冒充工作人员"}, expect=403)

    queue = await staff.call("GET", "/api/v1/admin/feedback",
                             params={"status": "submitted", "limit": 100})
    assert any(f["id"] == fid for f in queue["feedback"]), queue
    replied = await staff.call("POST", f"/api/v1/admin/feedback/{fid}/reply", json={
        "text": "经核实，当日两名工作人员请假。已建立周末弹性窗口，高峰期增开至三个窗口"})
    assert replied["status"] == "replied", replied
    mine = await zhao.call("GET", f"/api/v1/feedback/{fid}")
    assert mine["reply"] and mine["can_reopen"], mine
    closed = await zhao.call("POST", f"/api/v1/feedback/{fid}/satisfaction",
                             json={"satisfied": True, "note": "答复及时"})
    assert closed["status"] == "closed" and closed["close_reason"] == "satisfied", closed
    # The public board shows it with the phone number masked; the resident can take it down.
    board = await zhao.call("GET", "/api/v1/feedback/public", params={"limit": 100})
    [shown] = [f for f in board["feedback"] if f["id"] == fid]
    assert "139-****-5678" in shown["text"] and "1234" not in shown["text"], shown
    hidden = await zhao.call("PUT", f"/api/v1/feedback/{fid}/publication",
                             json={"publish": False})
    assert hidden["publish"] is False, hidden
    board = await zhao.call("GET", "/api/v1/feedback/public", params={"limit": 100})
    assert all(f["id"] != fid for f in board["feedback"]), board


async def journey_rate_an_approved_case(j: Journeys) -> None:
    wang = await j.phone("wang")
    staff = await j.phone("demo-staff")
    case = await wang.call("POST", "/api/v1/cases", expect=201,
                           json={"item_code": "MZ-003", "hall_code": "H-XF-000"})
    cid = case["id"]
    # Not finished yet: nothing to rate.
    early = await wang.call("POST", "/api/v1/ratings", expect=409,
                            json={"target_type": "case", "target_id": cid, "level": 5})
    assert early["error"]["code"] == "rating_not_open", early
    for action in ("accept", "start_review"):
        await staff.call("POST", f"/api/v1/cases/{cid}/transitions", json={"action": action})
    # The department decides (后台分类审批, services/approval).
    await department_approves(await j.phone("demo-approver"), cid)
    # Only the applicant rates; for anyone else the case doesn't exist.
    zhang = await j.phone("zhang")
    await zhang.call("POST", "/api/v1/ratings", expect=404,
                     json={"target_type": "case", "target_id": cid, "level": 1})
    rating = await wang.call("POST", "/api/v1/ratings", expect=201, json={
        "target_type": "case", "target_id": cid, "level": 2, "tags": ["等待时间长"],
        "text": "审批比承诺时间慢"})
    assert rating["label"] == "不满意" and rating["rectification"]["status"] == "open", rating
    # 一事一评.
    await wang.call("POST", "/api/v1/ratings", expect=409,
                    json={"target_type": "case", "target_id": cid, "level": 5})

    task_id = rating["rectification"]["id"]
    task = await staff.call("GET", f"/api/v1/admin/rectifications/{task_id}")
    assert task["department"] == case["department"] and task["escalation_level"] == 0, task
    await staff.call("POST", f"/api/v1/admin/rectifications/{task_id}/reply",
                     json={"text": "已优化审批流程，低保审核改为并联办理"})
    visited = await staff.call("POST", f"/api/v1/admin/rectifications/{task_id}/follow-up",
                               json={"result": "satisfied", "note": "电话回访，居民认可整改"})
    assert visited["status"] == "closed", visited
    mine = await wang.call("GET", "/api/v1/ratings")
    ours = [r for r in mine["ratings"] if r["target_id"] == cid]
    assert ours and ours[0]["rectification"]["reply"], ours

    figures = await staff.call("GET", "/api/v1/admin/stats", params={"group_by": "department"})
    assert figures["total"]["ratings"]["total"] >= 1, figures
    await wang.call("GET", "/api/v1/admin/stats", expect=403)


JOURNEYS = [
    journey_complain_reply_satisfied,
    journey_rate_an_approved_case,
]
