"""投诉建议 over HTTP: complain → staff reply → satisfied, reopen once, content check, who may
read and do what."""

from __future__ import annotations

from typing import Any

from models.feedback import Feedback
from models.users import Role
from services import outbox

COMPLAINT = "窗口工作人员态度很差，让我来回跑了三次"


async def _complain(s: Any, text: str = COMPLAINT, **over: Any) -> Any:
    resp = await s.post("/api/v1/feedback", json={"kind": "complaint", "text": text} | over)
    return resp


async def test_complain_reply_satisfied(api: Any, fake_wechat: Any) -> None:
    me = await api.login("resident-a")
    staff = await api.login("clerk", Role.staff)
    resp = await _complain(me, photos=["https://img.example/1.jpg"])
    assert resp.status == 201, resp.text
    fb = resp.json
    assert fb["status"] == "submitted" and fb["kind_label"] == "投诉"
    assert fb["department"] == "市政务服务中心" and fb["is_public"] is True
    assert fb["photos"] == ["https://img.example/1.jpg"]
    assert fb["due_at"].endswith("+08:00") and fb["overdue"] is False
    assert [e["action"] for e in fb["events"]] == ["submitted"]

    listed = await staff.get("/api/v1/admin/feedback", params={"status": "submitted"})
    assert listed.status == 200, listed.text
    row = listed.json["feedback"][0]
    assert row["id"] == fb["id"] and row["resident"]["user_id"] == me.user_id

    assign = await staff.post(f"/api/v1/admin/feedback/{fb['id']}/assign",
                              json={"handler_id": staff.user_id, "department": "市公安局"})
    assert assign.status == 200, assign.text
    assert assign.json["handler_id"] == staff.user_id

    reply = await staff.post(f"/api/v1/admin/feedback/{fb['id']}/reply",
                             json={"text": "已对该窗口人员批评教育，并安排专人为您办理"})
    assert reply.status == 200, reply.text
    assert reply.json["status"] == "replied" and reply.json["can_reopen"] is True
    # The reply went out as a subscribe message (skipped: the resident never subscribed).
    from models.notifications import Notification
    await outbox.dispatch_due()  # the promised messages go out after commit
    note = await Notification.get(user_id=me.user_id, template="feedback_reply")
    assert note.dedup_key == f"feedback_reply:{fb['id']}:0"

    done = await me.post(f"/api/v1/feedback/{fb['id']}/satisfaction",
                         json={"satisfied": True, "note": "很满意"})
    assert done.status == 200, done.text
    assert done.json["status"] == "closed" and done.json["close_reason"] == "satisfied"
    assert done.json["can_reopen"] is False
    mine = await me.get("/api/v1/feedback")
    assert [f["id"] for f in mine.json["feedback"]] == [fb["id"]]


async def test_reply_message_is_delivered_to_a_subscriber(api: Any, fake_wechat: Any) -> None:
    me = await api.login("resident-sub")
    staff = await api.login("clerk", Role.staff)
    await me.post("/api/v1/me/subscriptions", json={"template": "feedback_reply",
                                                    "accepted": True})
    fb = (await _complain(me)).json
    await staff.post(f"/api/v1/admin/feedback/{fb['id']}/reply", json={"text": "已处理完毕"})
    await outbox.dispatch_due()  # the promised messages go out after commit
    sent = [m for m in fake_wechat.sent_messages if m["template_id"] == "tmpl-feedback-reply"]
    assert len(sent) == 1 and sent[0]["touser"] == fake_wechat.openid_for("resident-sub")


async def test_reopen_once_then_409(api: Any) -> None:
    me = await api.login("resident-a")
    staff = await api.login("clerk", Role.staff)
    fb = (await _complain(me, kind="unresolved")).json
    await staff.post(f"/api/v1/admin/feedback/{fb['id']}/reply", json={"text": "第一次答复"})
    first = await me.post(f"/api/v1/feedback/{fb['id']}/reopen", json={"reason": "问题没有解决"})
    assert first.status == 200, first.text
    assert first.json["status"] == "reopened" and first.json["reopen_count"] == 1
    await staff.post(f"/api/v1/admin/feedback/{fb['id']}/reply", json={"text": "第二次答复"})
    second = await me.post(f"/api/v1/feedback/{fb['id']}/reopen", json={"reason": "还是不行"})
    assert second.status == 409
    assert second.json["error"]["code"] == "feedback_reopen_used"


async def test_risky_text_refused_nothing_stored(api: Any) -> None:
    me = await api.login("resident-a")
    resp = await _complain(me, text="大厅旁边有人聚众赌博，请管一管")
    assert resp.status == 422
    assert resp.json["error"]["code"] == "content_rejected"
    assert await Feedback.all().count() == 0


async def test_review_text_waits_for_staff(api: Any) -> None:
    me = await api.login("resident-a")
    staff = await api.login("clerk", Role.staff)
    fb = (await _complain(me, kind="suggestion", text="建议简化审核流程，减少材料")).json
    assert fb["moderation"] == "review" and fb["is_public"] is False
    assert (await api.get("/api/v1/feedback/public")).json["feedback"] == []
    pending = await staff.get("/api/v1/admin/feedback", params={"moderation": "review"})
    assert [f["id"] for f in pending.json["feedback"]] == [fb["id"]]
    ok = await staff.post(f"/api/v1/admin/feedback/{fb['id']}/moderate", json={"approve": True})
    assert ok.status == 200 and ok.json["is_public"] is True
    public = (await api.get("/api/v1/feedback/public")).json["feedback"]
    assert [f["id"] for f in public] == [fb["id"]]
    assert "user_id" not in public[0] and "resident" not in public[0]


async def test_input_validation(api: Any) -> None:
    me = await api.login("resident-a")
    bad = [
        {"kind": "praise", "text": "这是一条表扬信息"},
        {"kind": "complaint", "text": "短"},
        {"kind": "complaint", "text": "x" * 2001},
        {"kind": "complaint", "text": "图片地址不对的情况", "photos": ["javascript:alert(1)"]},
        {"kind": "complaint", "text": "图片太多的情况说明", "photos": ["https://a/b"] * 10},
        {"kind": "complaint", "text": "大厅编码不存在的情况", "hall_code": "NOPE"},
        {"kind": "complaint", "text": "办件编号不合法的情况", "case_id": 0},
        {"kind": "complaint", "text": "多余字段的情况说明", "extra": 1},
    ]
    for body in bad:
        resp = await me.post("/api/v1/feedback", json=body)
        assert resp.status == 422, (body, resp.text)
        assert resp.json["error"]["code"] == "validation_failed"
    assert await Feedback.all().count() == 0


async def test_someone_elses_report_is_404(api: Any) -> None:
    owner = await api.login("resident-a")
    other = await api.login("resident-b")
    staff = await api.login("clerk", Role.staff)
    fb = (await _complain(owner)).json
    await staff.post(f"/api/v1/admin/feedback/{fb['id']}/reply", json={"text": "已处理"})
    for method, path, body in (
        ("GET", f"/api/v1/feedback/{fb['id']}", None),
        ("POST", f"/api/v1/feedback/{fb['id']}/satisfaction", {"satisfied": True}),
        ("POST", f"/api/v1/feedback/{fb['id']}/reopen", {"reason": "冒充他人"}),
    ):
        resp = await other.api.request(method, path, token=other.token, json=body)
        assert resp.status == 404, (path, resp.text)
    assert (await other.get("/api/v1/feedback")).json["feedback"] == []
    # Staff read it through the admin door, not the resident one.
    assert (await staff.get(f"/api/v1/admin/feedback/{fb['id']}")).status == 200
    assert (await staff.get(f"/api/v1/feedback/{fb['id']}")).status == 404


async def test_residents_cannot_use_staff_routes(api: Any) -> None:
    me = await api.login("resident-a")
    fb = (await _complain(me)).json
    for method, path, body in (
        ("GET", "/api/v1/admin/feedback", None),
        ("GET", f"/api/v1/admin/feedback/{fb['id']}", None),
        ("POST", f"/api/v1/admin/feedback/{fb['id']}/reply", {"text": "自己答复自己"}),
        ("POST", f"/api/v1/admin/feedback/{fb['id']}/assign", {"department": "某部门"}),
        ("POST", f"/api/v1/admin/feedback/{fb['id']}/moderate", {"approve": True}),
    ):
        resp = await me.api.request(method, path, token=me.token, json=body)
        assert resp.status == 403, (path, resp.text)
    assert (await api.get("/api/v1/feedback")).status == 401


async def test_staff_unknown_ids_are_404(api: Any) -> None:
    staff = await api.login("clerk", Role.staff)
    resp = await staff.post("/api/v1/admin/feedback/999999/reply", json={"text": "不存在的诉求"})
    assert resp.status == 404


async def test_journeys_walk_in_process(api: Any, app: Any) -> None:
    """The scripted client's complaint and rating journeys, driven over ASGI."""
    import httpx

    from miniprogram_stub import demo_accounts
    from miniprogram_stub.client import Journeys
    from miniprogram_stub.journeys import feedback as feedback_journeys
    from services import seed
    from services.settings import get_settings

    await seed.run()
    await demo_accounts.seed(get_settings().wechat_appid)
    await api.get("/healthz")  # let the test client finish the app's startup first
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mp") as http:
        j = Journeys(http)
        for journey in feedback_journeys.JOURNEYS:
            await journey(j)


async def test_retry_with_idempotency_key_stores_one_report(api: Any) -> None:
    me = await api.login("resident-a")
    body = {"kind": "suggestion", "text": "建议在大厅增加饮水机"}
    first = await me.post("/api/v1/feedback", json=body, headers={"Idempotency-Key": "fb-1"})
    again = await me.post("/api/v1/feedback", json=body, headers={"Idempotency-Key": "fb-1"})
    assert first.status == again.status == 201
    assert first.json["id"] == again.json["id"]
    assert await Feedback.all().count() == 1
    other = await me.post("/api/v1/feedback", json=body | {"kind": "complaint"},
                          headers={"Idempotency-Key": "fb-1"})
    assert other.status == 409


async def test_daily_limit(api: Any, monkeypatch: Any) -> None:
    from services.settings import get_settings

    monkeypatch.setattr(get_settings(), "feedback_daily_limit", 2)
    me = await api.login("resident-a")
    codes = [(await _complain(me)).status for _ in range(3)]
    assert codes == [201, 201, 429]
    assert await Feedback.all().count() == 2


# --- personal data on the public board ------------------------------------------------------

PERSONAL = ("我的身份证号621002194103050316，手机13812345678，座机0934-8212345，"
            "卡号6222021234567890123，邮箱zhang.san@qq.com，窗口让我跑了三次")


async def test_public_board_masks_personal_data_and_handler_reveals_original(
        api: Any, fake_wechat: Any) -> None:
    me = await api.login("resident-pii")
    staff = await api.login("clerk-pii", Role.staff)
    fb = (await _complain(me, text=PERSONAL)).json
    reply = await staff.post(f"/api/v1/admin/feedback/{fb['id']}/reply",
                             json={"text": "已联系您的手机13812345678，请携带身份证办理"})
    assert reply.status == 200, reply.text

    public = (await api.get("/api/v1/feedback/public")).json["feedback"]
    assert [f["id"] for f in public] == [fb["id"]]
    shown = public[0]["text"] + public[0]["reply"]
    for secret in ("621002194103050316", "13812345678", "8212345", "6222021234567890123",
                   "zhang.san@"):
        assert secret not in shown, secret
    assert "6210**********0316" in shown and "138****5678" in shown
    assert "窗口让我跑了三次" in shown  # the complaint itself still reads
    # The resident keeps what was typed; the handler reads it masked, the original through the
    # audited reveal (tests/api/test_masking_api.py).
    staff_view = (await staff.get(f"/api/v1/admin/feedback/{fb['id']}")).json
    assert "621002194103050316" not in staff_view["text"]
    revealed = await staff.post(f"/api/v1/admin/feedback/{fb['id']}/reveal",
                                json={"reason": "回访核实情况"})
    assert revealed.status == 200 and revealed.json["text"] == PERSONAL
    assert (await me.get(f"/api/v1/feedback/{fb['id']}")).json["text"] == PERSONAL


async def test_resident_may_keep_a_report_off_the_board(api: Any, fake_wechat: Any) -> None:
    me = await api.login("resident-private")
    fb = (await _complain(me, publish=False)).json
    assert fb["publish"] is False and fb["is_public"] is True
    assert (await api.get("/api/v1/feedback/public")).json["feedback"] == []


async def test_resident_withdraws_and_republishes(api: Any, fake_wechat: Any) -> None:
    me = await api.login("resident-withdraw")
    fb = (await _complain(me)).json
    assert fb["publish"] is True
    assert len((await api.get("/api/v1/feedback/public")).json["feedback"]) == 1

    out = await me.put(f"/api/v1/feedback/{fb['id']}/publication", json={"publish": False})
    assert out.status == 200, out.text
    assert out.json["publish"] is False and out.json["events"][-1]["action"] == "unpublished"
    assert (await api.get("/api/v1/feedback/public")).json["feedback"] == []
    again = await me.put(f"/api/v1/feedback/{fb['id']}/publication", json={"publish": False})
    assert again.status == 200 and len(again.json["events"]) == len(out.json["events"])

    back = await me.put(f"/api/v1/feedback/{fb['id']}/publication", json={"publish": True})
    assert back.status == 200 and back.json["publish"] is True
    assert len((await api.get("/api/v1/feedback/public")).json["feedback"]) == 1


async def test_only_the_resident_decides_publication(api: Any, fake_wechat: Any) -> None:
    me = await api.login("resident-owner")
    other = await api.login("resident-other")
    staff = await api.login("clerk-pub", Role.staff)
    fb = (await _complain(me)).json
    path = f"/api/v1/feedback/{fb['id']}/publication"
    assert (await other.put(path, json={"publish": False})).status == 404
    assert (await staff.put(path, json={"publish": False})).status == 404
    assert (await api.put(path, json={"publish": False})).status == 401
    assert (await me.put(path, json={"publish": "nope"})).status == 422
    assert (await me.put("/api/v1/feedback/999999/publication",
                         json={"publish": False})).status == 404
    assert len((await api.get("/api/v1/feedback/public")).json["feedback"]) == 1
