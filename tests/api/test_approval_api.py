"""综窗 behind the scenes and at the result window over HTTP: routing to the approving
department, its queue and scope, taking, deciding, returning to the window, a 一件事 bundle
decided by two departments in parallel, and the hand-over to the right person only.

The world: the demo catalogue and organisation; clerks at 西峰区 (H-XF-000) and 庆城县
(H-QC-000); two approvers of 市民政局, one of 市公安局; residents 张建国 and 李秀兰."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from models.approval import CaseRelease, CaseTask, TaskStatus
from models.audit import AuditLog
from models.cases import Case, CaseEvent
from models.catalogue import Bundle
from models.messages import Message
from models.users import Role
from services import clock, outbox, seed
from services.window import release as window_release
from tests.conftest import grant_position

ZHANG = ("张建国", "621002194103050316")
LI = ("李秀兰", "621021197508120426")
XF, QC = "H-XF-000", "H-QC-000"


@dataclass
class World:
    xf: Any
    qc: Any
    mz: Any
    mz2: Any
    ga: Any
    admin: Any
    zhang: Any
    li: Any


@pytest.fixture
async def w(api: Any) -> World:
    await seed.run()
    zhang = await api.login("zhang")
    await zhang.bind_identity(*ZHANG)
    li = await api.login("li")
    await li.bind_identity(*LI)
    return World(
        xf=await api.login("xf-clerk", hall=XF), qc=await api.login("qc-clerk", hall=QC),
        mz=await api.login("mz-approver", department="市民政局"),
        mz2=await api.login("mz-approver2", department="市民政局"),
        ga=await api.login("ga-approver", department="市公安局"),
        admin=await api.login("admin", Role.admin), zhang=zhang, li=li)


async def _accepted(w: World, *, item: str | None = "MZ-004",
                    bundle: str | None = None) -> int:
    body = {"hall_code": XF, **({"item_code": item} if bundle is None else
                                {"bundle_code": bundle})}
    made = await w.zhang.post("/api/v1/cases", json=body)
    assert made.status == 201, made.text
    cid = int(made.json["id"])
    ok = await w.xf.post(f"/api/v1/cases/{cid}/transitions", json={"action": "accept"})
    assert ok.status == 200, ok.text
    return cid


async def _task(w: World, cid: int, department: str = "市民政局") -> int:
    t = await CaseTask.get(case_id=cid, department=department)
    return int(t.id)


async def _status(cid: int) -> str:
    return str((await Case.get(id=cid)).status)


# ------------------------------------------------------------------ routing and scope


async def test_an_accepted_case_waits_in_its_departments_queue_only(w: World) -> None:
    cid = await _accepted(w)
    tid = await _task(w, cid)
    task = await CaseTask.get(id=tid)
    assert task.status is TaskStatus.pending and task.hall_code == XF
    assert task.due_at == (await Case.get(id=cid)).due_at  # one item: the case's promise
    mine = (await w.mz.get("/api/v1/approval/tasks")).json["tasks"]
    assert [t["id"] for t in mine] == [tid] and mine[0]["case_id"] == cid
    # Another department, the clerks of this and another hall: nothing in their queue, and
    # the task does not exist for them.
    for other in (w.ga, w.xf, w.qc):
        assert (await other.get("/api/v1/approval/tasks")).json["tasks"] == []
        assert (await other.get(f"/api/v1/approval/tasks/{tid}")).status == 404
        assert (await other.post(f"/api/v1/approval/tasks/{tid}/claim")).status == 404
    # A resident is not staff at all.
    assert (await w.zhang.get("/api/v1/approval/tasks")).status == 403
    assert (await w.admin.get(f"/api/v1/approval/tasks/{tid}")).status == 200


async def test_unknown_task_ids_are_404(w: World) -> None:
    assert (await w.mz.get("/api/v1/approval/tasks/999999")).status == 404
    assert (await w.mz.post("/api/v1/approval/tasks/999999/claim")).status == 404


async def test_take_decide_and_nobody_takes_twice(w: World) -> None:
    cid = await _accepted(w)
    tid = await _task(w, cid)
    # The clerk may not decide a routed case over the department's head.
    refused = await w.xf.post(f"/api/v1/cases/{cid}/transitions",
                              json={"action": "start_review"})
    assert refused.status == 200  # sending it on is the window's; deciding is not
    refused = await w.xf.post(f"/api/v1/cases/{cid}/transitions",
                              json={"action": "approve", "note": "符合"})
    assert refused.status == 409 and refused.json["error"]["code"] == "approval_by_departments"
    # Deciding before taking is refused; taking is once.
    early = await w.mz.post(f"/api/v1/approval/tasks/{tid}/decision",
                            json={"approve": True, "opinion": "符合条件"})
    assert early.status == 409 and early.json["error"]["code"] == "task_state"
    took = await w.mz.post(f"/api/v1/approval/tasks/{tid}/claim")
    assert took.status == 200 and took.json["status"] == "claimed"
    again = await w.mz.post(f"/api/v1/approval/tasks/{tid}/claim")
    assert again.status == 200  # a retry by the holder answers the same
    second = await w.mz2.post(f"/api/v1/approval/tasks/{tid}/claim")
    assert second.status == 409 and second.json["error"]["code"] == "task_taken"
    not_his = await w.mz2.post(f"/api/v1/approval/tasks/{tid}/decision",
                               json={"approve": True, "opinion": "符合条件"})
    assert not_his.status == 409 and not_his.json["error"]["code"] == "task_taken"
    bad = await w.mz.post(f"/api/v1/approval/tasks/{tid}/decision",
                          json={"approve": True, "opinion": " "})
    assert bad.status == 422
    done = await w.mz.post(f"/api/v1/approval/tasks/{tid}/decision",
                           json={"approve": True, "opinion": "年龄与户籍符合发放条件"})
    assert done.status == 200 and done.json["status"] == "approved"
    assert await _status(cid) == "approved"
    detail = (await w.zhang.get(f"/api/v1/cases/{cid}")).json
    assert detail["status"] == "approved"
    assert detail["departments"] == [{
        "department": "市民政局", "status": "approved", "status_label": "已批准",
        "due_at": detail["departments"][0]["due_at"],
        "decided_at": detail["departments"][0]["decided_at"],
        "opinion": "年龄与户籍符合发放条件"}]
    assert "市民政局：年龄与户籍符合发放条件" in [e["note"] for e in detail["timeline"]]
    # 办理结果已出: the existing result notice, promised in the deciding transaction (outbox),
    # reaches the applicant's message centre once, even if the dispatcher runs twice.
    while await outbox.dispatch_due():
        pass
    await outbox.dispatch_due()
    assert await Message.filter(user_id=w.zhang.user_id, template="case_result").count() == 1


async def test_return_to_the_window_and_send_on(w: World) -> None:
    cid = await _accepted(w)
    tid = await _task(w, cid)
    short = await w.mz.post(f"/api/v1/approval/tasks/{tid}/return", json={"reason": "不清"})
    assert short.status == 422
    not_taken = await w.mz.post(f"/api/v1/approval/tasks/{tid}/return",
                                json={"reason": "户籍证明页不清晰"})
    assert not_taken.status == 409
    await w.mz.post(f"/api/v1/approval/tasks/{tid}/claim")
    other = await w.ga.post(f"/api/v1/approval/tasks/{tid}/return",
                            json={"reason": "户籍证明页不清晰"})
    assert other.status == 404
    back = await w.mz.post(f"/api/v1/approval/tasks/{tid}/return",
                           json={"reason": "户籍证明页不清晰，请窗口核实"})
    assert back.status == 200 and back.json["status"] == "returned"
    detail = (await w.xf.get(f"/api/v1/cases/{cid}")).json
    assert detail["status"] == "returned"
    assert detail["timeline"][-1]["note"] == "市民政局：户籍证明页不清晰，请窗口核实"
    assert "start_review" in detail["actions"] and "request_supplement" in detail["actions"]
    # Nothing to decide while it is at the window.
    assert (await w.mz.get("/api/v1/approval/tasks")).json["tasks"] == []
    resent = await w.xf.post(f"/api/v1/cases/{cid}/transitions",
                             json={"action": "start_review", "note": "已核实原件"})
    assert resent.status == 200 and resent.json["status"] == "under_review"
    assert (await CaseTask.get(id=tid)).status is TaskStatus.pending
    assert [t["id"] for t in (await w.mz.get("/api/v1/approval/tasks")).json["tasks"]] == [tid]


async def test_a_supplement_pauses_the_departments_clock_too(w: World) -> None:
    cid = await _accepted(w)
    tid = await _task(w, cid)
    assert (await CaseTask.get(id=tid)).due_at is not None
    ask = await w.xf.post(f"/api/v1/cases/{cid}/supplement-requests",
                          json={"items": [{"material": "居民身份证", "reason": "已过期"}]})
    assert ask.status == 201, ask.text
    assert (await CaseTask.get(id=tid)).due_at is None
    await w.zhang.post(f"/api/v1/cases/{cid}/transitions", json={"action": "resubmit"})
    assert (await CaseTask.get(id=tid)).due_at == (await Case.get(id=cid)).due_at is not None


# ------------------------------------------------------------------ 并联审批


async def _two_department_bundle() -> str:
    # 高龄津贴 (市民政局, 10 working days) and 出生登记 (市公安局, 1): two departments, one case.
    await Bundle.create(code="T-PAR", name="测试并联一件事", subject="person",
                        item_codes=["MZ-004", "GA-005"])
    return "T-PAR"


async def test_a_bundle_runs_in_parallel_and_is_done_when_every_department_is(
        w: World) -> None:
    cid = await _accepted(w, bundle=await _two_department_bundle())
    mz_t, ga_t = await _task(w, cid, "市民政局"), await _task(w, cid, "市公安局")
    a, b = await CaseTask.get(id=mz_t), await CaseTask.get(id=ga_t)
    assert (a.promised_days, b.promised_days) == (10, 1)
    assert a.due_at is not None and b.due_at is not None and b.due_at < a.due_at
    # Each department sees its own part only.
    assert [t["id"] for t in (await w.mz.get("/api/v1/approval/tasks")).json["tasks"]] == [mz_t]
    assert [t["id"] for t in (await w.ga.get("/api/v1/approval/tasks")).json["tasks"]] == [ga_t]
    assert (await w.ga.get(f"/api/v1/approval/tasks/{mz_t}")).status == 404
    await w.ga.post(f"/api/v1/approval/tasks/{ga_t}/claim")
    await w.mz.post(f"/api/v1/approval/tasks/{mz_t}/claim")
    assert await _status(cid) == "under_review"
    await w.ga.post(f"/api/v1/approval/tasks/{ga_t}/decision",
                    json={"approve": True, "opinion": "出生医学证明核验一致"})
    mid = (await w.zhang.get(f"/api/v1/cases/{cid}")).json
    assert mid["status"] == "under_review"
    assert {d["department"]: d["status"] for d in mid["departments"]} == {
        "市民政局": "claimed", "市公安局": "approved"}
    await w.mz.post(f"/api/v1/approval/tasks/{mz_t}/decision",
                    json={"approve": True, "opinion": "符合发放条件"})
    done = (await w.zhang.get(f"/api/v1/cases/{cid}")).json
    assert done["status"] == "approved"
    assert {d["status"] for d in done["departments"]} == {"approved"}


async def test_one_department_rejecting_rejects_the_bundle(w: World) -> None:
    cid = await _accepted(w, bundle=await _two_department_bundle())
    mz_t, ga_t = await _task(w, cid, "市民政局"), await _task(w, cid, "市公安局")
    for who, tid in ((w.mz, mz_t), (w.ga, ga_t)):
        await who.post(f"/api/v1/approval/tasks/{tid}/claim")
    await w.mz.post(f"/api/v1/approval/tasks/{mz_t}/decision",
                    json={"approve": True, "opinion": "符合"})
    await w.ga.post(f"/api/v1/approval/tasks/{ga_t}/decision",
                    json={"approve": False, "opinion": "出生医学证明与信息不符"})
    assert await _status(cid) == "rejected"


async def test_the_sweep_settles_a_case_whose_last_decision_did_not_move_it(w: World) -> None:
    from services.approval import tasks

    cid = await _accepted(w)
    tid = await _task(w, cid)
    await w.mz.post(f"/api/v1/approval/tasks/{tid}/claim")
    # As if the process stopped right after the decision's commit.
    await CaseTask.filter(id=tid).update(status=TaskStatus.approved, opinion="符合",
                                         decided_by_id=w.mz.user_id, decided_at=clock.now())
    assert await _status(cid) == "under_review"
    assert await tasks.settle_stragglers() == 1
    assert await _status(cid) == "approved"
    assert await tasks.settle_stragglers() == 0


# ------------------------------------------------------------------ 统一窗口出件


async def _approved(w: World) -> int:
    cid = await _accepted(w)
    tid = await _task(w, cid)
    await w.mz.post(f"/api/v1/approval/tasks/{tid}/claim")
    await w.mz.post(f"/api/v1/approval/tasks/{tid}/decision",
                    json={"approve": True, "opinion": "符合"})
    assert await _status(cid) == "approved"
    return cid


async def test_pick_up_only_by_the_applicant_in_person(w: World) -> None:
    cid = await _approved(w)
    too_early = await w.zhang.post(f"/api/v1/approval/cases/{cid}/release-choice",
                                   json={"method": "window"})
    assert too_early.status == 200  # approved = the result is ready
    assert (await w.li.post(f"/api/v1/approval/cases/{cid}/release-choice",
                            json={"method": "window"})).status == 404
    assert (await w.xf.post(f"/api/v1/approval/cases/{cid}/release-choice",
                            json={"method": "window"})).status == 403
    # The generic deliver can't skip the identity check once a choice exists.
    skip = await w.xf.post(f"/api/v1/cases/{cid}/transitions", json={"action": "deliver"})
    assert skip.status == 409 and skip.json["error"]["code"] == "release_required"
    li_code = (await w.li.get("/api/v1/me/code")).json["content"]
    wrong = await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup",
                            json={"person_code": li_code})
    assert wrong.status == 403 and wrong.json["error"]["code"] == "pickup_wrong_person"
    wrong_card = await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup",
                                 json={"id_number": LI[1]})
    assert wrong_card.status == 403
    # Another hall's clerk: the case does not exist for them.
    zhang_code = (await w.zhang.get("/api/v1/me/code")).json["content"]
    assert (await w.qc.post(f"/api/v1/approval/cases/{cid}/pickup",
                            json={"person_code": zhang_code})).status == 404
    assert await _status(cid) == "approved"
    ok = await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup",
                         json={"person_code": zhang_code})
    assert ok.status == 200, ok.text
    assert ok.json["verified_by"] == "person_code" and ok.json["released_at"]
    assert await _status(cid) == "result_delivered"
    rel = await CaseRelease.get(case_id=cid)
    assert rel.collected_person_id == (await Case.get(id=cid)).person_id
    twice = await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup",
                            json={"id_number": ZHANG[1]})
    assert twice.status == 409


async def test_pick_up_by_id_card_at_the_desk(w: World) -> None:
    cid = await _approved(w)
    ok = await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup", json={"id_number": ZHANG[1]})
    assert ok.status == 200 and ok.json["verified_by"] == "id_card"
    assert (await w.zhang.get(f"/api/v1/cases/{cid}")).json["release"]["method"] == "window"


async def test_mail_keeps_the_address_encrypted_and_records_the_tracking_number(
        w: World) -> None:
    cid = await _approved(w)
    missing = await w.zhang.post(f"/api/v1/approval/cases/{cid}/release-choice",
                                 json={"method": "mail"})
    assert missing.status == 422 and set(missing.json["error"]["fields"]) == {"address", "phone"}
    address = "甘肃省庆阳市西峰区南大街88号3单元502室"
    chose = await w.zhang.post(f"/api/v1/approval/cases/{cid}/release-choice",
                               json={"method": "mail", "address": address,
                                     "phone": "13800001234"})
    assert chose.status == 200, chose.text
    assert chose.json["address"] == "甘肃省庆阳市西峰区南大街****"
    assert "1234" in chose.json["recipient_phone"]
    rel = await CaseRelease.get(case_id=cid)
    assert rel.address_enc and "南大街" not in rel.address_enc
    # A window hand-over is not what the applicant chose.
    wrong = await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup",
                            json={"id_number": ZHANG[1]})
    assert wrong.status == 409 and wrong.json["error"]["code"] == "release_method"
    # The clerk who posts it reads the full address, audited; another hall's clerk can't.
    assert (await w.qc.get(f"/api/v1/approval/cases/{cid}/mail-address")).status == 404
    assert (await w.zhang.get(f"/api/v1/approval/cases/{cid}/mail-address")).status == 403
    full = await w.xf.get(f"/api/v1/approval/cases/{cid}/mail-address")
    assert full.status == 200 and full.json == {"address": address, "phone": "13800001234"}
    assert await AuditLog.filter(action="case.release.address",
                                 actor_id=w.xf.user_id).count() == 1
    bad = await w.xf.post(f"/api/v1/approval/cases/{cid}/mail", json={"tracking_no": "ABC"})
    assert bad.status == 422
    assert (await w.qc.post(f"/api/v1/approval/cases/{cid}/mail",
                            json={"tracking_no": "1187654321098"})).status == 404
    sent = await w.xf.post(f"/api/v1/approval/cases/{cid}/mail",
                           json={"tracking_no": "1187654321098"})
    assert sent.status == 200 and sent.json["tracking_no"] == "1187654321098"
    detail = (await w.zhang.get(f"/api/v1/cases/{cid}")).json
    assert detail["status"] == "result_delivered"
    assert detail["release"]["tracking_no"] == "1187654321098"
    assert detail["release"]["address"] == "甘肃省庆阳市西峰区南大街****"


async def test_missing_window_materials_block_the_hand_over(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = await _approved(w)

    async def blockers(case: Case) -> list[str]:
        return ["容缺材料“户口簿”尚未补交"]

    monkeypatch.setattr(window_release, "result_release_blockers", blockers)
    held = await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup", json={"id_number": ZHANG[1]})
    assert held.status == 409 and held.json["error"]["code"] == "release_blocked"
    assert held.json["error"]["fields"] == {"blockers.0": "容缺材料“户口簿”尚未补交"}
    assert await _status(cid) == "approved"
    assert not await CaseEvent.filter(case_id=cid, action="deliver").exists()


async def test_an_unrouted_case_is_still_decided_at_the_hall(w: World) -> None:
    # Items whose department is outside the organisation get no task (the hall decides).
    from models.catalogue import ServiceItem

    await ServiceItem.filter(code="MZ-004").update(department="某未建档部门")
    cid = await _accepted(w)
    assert not await CaseTask.exists(case_id=cid)
    for action in ("start_review", "approve", "deliver"):
        moved = await w.xf.post(f"/api/v1/cases/{cid}/transitions",
                                json={"action": action, "note": "符合"})
        assert moved.status == 200, moved.text


# ------------------------------------------------------------------ 好差评 that reaches people


async def test_a_bad_rating_reaches_the_staff_who_served_and_counts_only_when_valid(
        w: World, api: Any) -> None:
    from models.ratings import RatingStaff, RectificationTask

    sup = await api.login("xf-supervisor", region="621002")
    sup2 = await api.login("city-supervisor", region="621000")
    cid = await _approved(w)
    await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup", json={"id_number": ZHANG[1]})
    rated = await w.zhang.post("/api/v1/ratings", json={
        "target_type": "case", "target_id": cid, "level": 1, "text": "等了很久"})
    assert rated.status == 201, rated.text
    rid = rated.json["id"]
    served = {(r.user_id, r.served_as.value) for r in
              await RatingStaff.filter(rating_id=rid)}
    assert served == {(w.xf.user_id, "clerk"), (w.mz.user_id, "approver")}

    def figures_of(body: Any) -> dict[int, dict[str, Any]]:
        return {f["user_id"]: f for f in body["staff"]}

    before = figures_of((await sup.get("/api/v1/admin/staff-ratings/figures")).json)
    assert before[w.mz.user_id]["bad"] == 1 and before[w.mz.user_id]["bad_unreviewed"] == 1
    assert before[w.mz.user_id]["bad_valid"] == 0 and before[w.xf.user_id]["ratings"] == 1
    # Another county's supervisor sees nobody; clerks and approvers read no colleague's
    # figures; another hall's clerk does not see the rating, a clerk in scope may not review.
    # (庆城县's clerk also supervises 庆城县 here; logins are rate-limited per test.)
    await grant_position(w.qc.user_id, region="621021")
    assert (await w.qc.get("/api/v1/admin/staff-ratings/figures")).json["staff"] == []
    for nosy in (w.xf, w.mz):
        assert (await nosy.get("/api/v1/admin/staff-ratings/figures")).status == 403
    assert (await w.qc.post(f"/api/v1/admin/staff-ratings/{rid}/review",
                            json={"verdict": "valid", "reason": "看看别处的"})).status == 404
    body = {"verdict": "valid", "reason": "办理超出承诺时限"}
    assert (await w.xf.post(f"/api/v1/admin/staff-ratings/{rid}/review", json=body)).status == 403
    assert (await w.zhang.post(f"/api/v1/admin/staff-ratings/{rid}/review",
                               json=body)).status == 403
    ok = await sup.post(f"/api/v1/admin/staff-ratings/{rid}/review", json=body)
    assert ok.status == 201 and ok.json["counts_against_staff"] is True
    twice = await sup2.post(f"/api/v1/admin/staff-ratings/{rid}/review", json=body)
    assert twice.status == 409
    valid = figures_of((await sup.get("/api/v1/admin/staff-ratings/figures")).json)
    assert valid[w.mz.user_id]["bad_valid"] == 1 and valid[w.mz.user_id]["bad_unreviewed"] == 0
    # Appeal: only someone the rating is about, once; decided by another supervisor.
    assert (await w.ga.post(f"/api/v1/admin/staff-ratings/{rid}/appeal",
                            json={"reason": "系统排队导致延误"})).status == 404
    appealed = await w.mz.post(f"/api/v1/admin/staff-ratings/{rid}/appeal",
                               json={"reason": "在承诺时限内办结，延误在寄递环节"})
    assert appealed.status == 200 and appealed.json["appealed_at"]
    assert (await w.xf.post(f"/api/v1/admin/staff-ratings/{rid}/appeal",
                            json={"reason": "再次申诉一下"})).status == 409
    decision = {"verdict": "invalid", "reason": "核查办理记录，未超时限"}
    same = await sup.post(f"/api/v1/admin/staff-ratings/{rid}/appeal-decision", json=decision)
    assert same.status == 403
    final = await sup2.post(f"/api/v1/admin/staff-ratings/{rid}/appeal-decision", json=decision)
    assert final.status == 200 and final.json["counts_against_staff"] is False
    after = figures_of((await sup.get("/api/v1/admin/staff-ratings/figures")).json)
    assert after[w.mz.user_id]["bad_valid"] == 0 and after[w.mz.user_id]["bad"] == 1
    # The rectification task the bad rating opened stays.
    assert await RectificationTask.exists(rating_id=rid)


async def test_a_good_rating_needs_no_review(w: World, api: Any) -> None:
    sup = await api.login("xf-supervisor", region="621002")
    cid = await _approved(w)
    rid = (await w.zhang.post("/api/v1/ratings", json={
        "target_type": "case", "target_id": cid, "level": 5})).json["id"]
    resp = await sup.post(f"/api/v1/admin/staff-ratings/{rid}/review",
                          json={"verdict": "valid", "reason": "核实一下好评"})
    assert resp.status == 409 and resp.json["error"]["code"] == "rating_review_state"
    assert (await sup.post("/api/v1/admin/staff-ratings/999999/review",
                           json={"verdict": "valid", "reason": "核实一下"})).status == 404


async def test_a_person_code_redis_lost_is_refused_not_guessed(w: World) -> None:
    from services import cache

    cid = await _approved(w)
    code = (await w.zhang.get("/api/v1/me/code")).json["content"]
    r = cache.redis()
    for key in await r.keys("code:p:*"):
        await r.delete(key)  # as after a Redis restart: the signed token alone proves nothing
    lost = await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup", json={"person_code": code})
    assert lost.status == 410 and lost.json["error"]["code"] == "code_expired", lost.text
    forged = await w.xf.post(f"/api/v1/approval/cases/{cid}/pickup",
                             json={"person_code": "P" + "A" * 40})
    assert forged.status == 404 and forged.json["error"]["code"] == "code_unrecognised"
    assert await _status(cid) == "approved"


async def test_a_retried_decision_with_its_key_gets_the_original_answer(w: World) -> None:
    cid = await _accepted(w)
    tid = await _task(w, cid)
    await w.mz.post(f"/api/v1/approval/tasks/{tid}/claim")
    body = {"approve": True, "opinion": "符合条件"}
    key = {"Idempotency-Key": "decide-once-1"}
    first = await w.mz.post(f"/api/v1/approval/tasks/{tid}/decision", json=body, headers=key)
    again = await w.mz.post(f"/api/v1/approval/tasks/{tid}/decision", json=body, headers=key)
    assert first.status == again.status == 200 and first.json == again.json
    bare = await w.mz.post(f"/api/v1/approval/tasks/{tid}/decision", json=body)
    assert bare.status == 409  # without the key a repeat is a new request: already decided
    assert await CaseEvent.filter(case_id=cid, action="approve").count() == 1
