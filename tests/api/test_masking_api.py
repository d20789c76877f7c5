"""Personal data typed into free text is masked for everyone but its author: the public board,
staff of the handling hall (the original only through an audited reveal), staff of another
hall (not even the record), other residents (404)."""

from __future__ import annotations

from typing import Any

from models.audit import AuditLog
from models.users import Role
from services import seed

XF, QC = "H-XF-000", "H-QC-000"
ZHANG = ("张建国", "621002194103050316")
TYPED = "我叫张建国，电话13812345678，住西峰区长庆路12号3号楼501室，窗口让我跑了三次"
# What must never reach anyone but the author (or staff through the audited reveal).
SECRETS = ("张建国", "13812345678", "12号", "3号楼", "501室")


def _assert_masked(shown: str) -> None:
    for secret in SECRETS:
        assert secret not in shown, (secret, shown)
    assert "*建国" in shown and "138****5678" in shown and "长庆路****" in shown
    assert "窗口让我跑了三次" in shown  # the complaint itself still reads


async def _complaint(api: Any) -> tuple[Any, int]:
    await seed.run()
    me = await api.login("mask-zhang")
    await me.bind_identity(*ZHANG)
    resp = await me.post("/api/v1/feedback",
                         json={"kind": "complaint", "hall_code": XF, "text": TYPED})
    assert resp.status == 201, resp.text
    assert resp.json["text"] == TYPED  # the author reads what they wrote
    return me, int(resp.json["id"])


async def test_complaint_with_a_name_phone_and_address_is_masked_for_everyone_else(
        api: Any, fake_wechat: Any) -> None:
    me, fid = await _complaint(api)
    xf = await api.login("mask-xf-clerk", hall=XF)
    qc = await api.login("mask-qc-clerk", hall=QC)
    other = await api.login("mask-neighbour")
    # The handler answers, naming the resident: the reply is masked the same way.
    reply = await xf.post(f"/api/v1/admin/feedback/{fid}/reply",
                          json={"text": "张建国您好，已回电13812345678并为您办结"})
    assert reply.status == 200, reply.text
    assert "张建国" not in reply.json["reply"] and "*建国您好" in reply.json["reply"]
    _assert_masked(reply.json["text"])

    board = (await api.get("/api/v1/feedback/public")).json["feedback"]
    assert [f["id"] for f in board] == [fid]
    _assert_masked(board[0]["text"])
    assert "张建国" not in board[0]["reply"] and "13812345678" not in board[0]["reply"]

    listed = (await xf.get("/api/v1/admin/feedback")).json["feedback"]
    assert [f["id"] for f in listed] == [fid]
    _assert_masked(listed[0]["text"])
    assert listed[0]["resident"]["name"] == "*建国"
    _assert_masked((await xf.get(f"/api/v1/admin/feedback/{fid}")).json["text"])

    # Staff of another hall and other residents don't get the record at all.
    assert (await qc.get(f"/api/v1/admin/feedback/{fid}")).status == 404
    assert (await qc.get("/api/v1/admin/feedback")).json["feedback"] == []
    assert (await other.get(f"/api/v1/feedback/{fid}")).status == 404
    # The author still reads it whole.
    assert (await me.get(f"/api/v1/feedback/{fid}")).json["text"] == TYPED


async def test_staff_read_the_original_only_through_an_audited_reveal(
        api: Any, fake_wechat: Any) -> None:
    me, fid = await _complaint(api)
    xf = await api.login("mask-xf-clerk", hall=XF)
    qc = await api.login("mask-qc-clerk", hall=QC)
    path = f"/api/v1/admin/feedback/{fid}/reveal"
    assert (await xf.post(path, json={"reason": "短"})).status == 422
    assert (await qc.post(path, json={"reason": "回访核实情况"})).status == 404
    assert (await me.post(path, json={"reason": "回访核实情况"})).status == 403
    assert await AuditLog.filter(action="feedback.reveal").count() == 0
    full = await xf.post(path, json={"reason": "回访核实情况"})
    assert full.status == 200, full.text
    assert full.json["text"] == TYPED
    entry = await AuditLog.get(action="feedback.reveal")
    assert entry.actor_id == xf.user_id and entry.reason == "回访核实情况"
    # The resident sees who read their words, like any other reveal.
    log = (await me.get("/api/v1/me/access-log")).json
    assert "feedback.reveal" in str(log)


async def test_a_staff_role_without_a_hall_sees_the_mask_too(api: Any, fake_wechat: Any) -> None:
    _, fid = await _complaint(api)
    admin = await api.login("mask-admin", Role.admin, Role.staff)
    _assert_masked((await admin.get(f"/api/v1/admin/feedback/{fid}")).json["text"])


async def test_bad_rating_text_reply_and_visit_note_are_masked_for_staff(
        api: Any, fake_wechat: Any) -> None:
    from models.cases import Case, CaseStatus
    me = await api.login("mask-rater")
    await me.bind_identity(*ZHANG)
    staff = await api.login("mask-rating-clerk", Role.staff)
    case = await Case.create(applicant_id=me.user_id, submitted_by_id=me.user_id,
                             department="市民政局", hall_code=XF, status=CaseStatus.approved)
    rated = await me.post("/api/v1/ratings", json={
        "target_type": "case", "target_id": case.id, "level": 1, "text": TYPED})
    assert rated.status == 201, rated.text
    assert rated.json["text"] == TYPED  # the rater's own view
    tid = rated.json["rectification"]["id"]
    row = (await staff.get("/api/v1/admin/rectifications")).json["tasks"][0]
    assert row["id"] == tid and row["rater"]["name"] == "*建国"
    _assert_masked(row["rating_text"])
    replied = await staff.post(f"/api/v1/admin/rectifications/{tid}/reply",
                               json={"text": "张建国您好，已整改"})
    assert replied.status == 200 and replied.json["reply"] == "*建国您好，已整改"
    visited = await staff.post(f"/api/v1/admin/rectifications/{tid}/follow-up", json={
        "result": "satisfied", "note": "已电话联系张建国13812345678，表示认可"})
    assert visited.status == 200, visited.text
    assert visited.json["visit_note"] == "已电话联系*建国138****5678，表示认可"
    _assert_masked((await staff.get(f"/api/v1/admin/rectifications/{tid}")).json["rating_text"])


async def test_help_note_and_case_timeline_are_masked_for_the_helper(api: Any) -> None:
    from tests.api.test_helpers_api import _setup
    s = await _setup(api)
    resp = await s["zhang"].post("/api/v1/cases", json={
        "item_code": "MZ-004", "hall_code": XF, "need_help": True, "help_note": TYPED,
        "note": TYPED})
    assert resp.status == 201, resp.text
    cid = resp.json["id"]
    helper = next(h for h in ("h1", "h2")
                  if resp.json["helper"]["helper_user_id"] == s[h].user_id)
    work = (await s[helper].get("/api/v1/helper/cases")).json["items"]
    assert [w["case_id"] for w in work] == [cid]
    _assert_masked(work[0]["help_note"])
    aid = work[0]["assignment_id"]
    assert (await s[helper].post(f"/api/v1/helper/assignments/{aid}/accept")).status == 200
    # A clerk's note naming the applicant, then the case as each reader sees it.
    moved = await s["staff"].post(f"/api/v1/cases/{cid}/transitions", json={
        "action": "accept", "note": "已电话联系张建国13812345678"})
    assert moved.status == 200, moved.text
    for reader in (s[helper], s["staff"]):
        notes = " ".join(e["note"] for e in (await reader.get(f"/api/v1/cases/{cid}")).json[
            "timeline"])
        assert "张建国" not in notes and "13812345678" not in notes, notes
        assert "*建国138****5678" in notes
    mine = " ".join(e["note"] for e in (await s["zhang"].get(f"/api/v1/cases/{cid}")).json[
        "timeline"])
    assert "已电话联系张建国13812345678" in mine
