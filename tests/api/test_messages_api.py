"""站内消息 over HTTP: each notice lands in its recipient's centre once, unread counts and
paging, nobody reads another's messages; consent, settings and staff figures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from models.users import Role
from services import jobs, outbox, people, sms
from tests.api.test_appointments_api import ITEM, WANG, ZHANG, _open_slots, _resident
from tests.api.test_helpers_api import _setup as helpers_setup
from tests.unit.test_appointments_common import catalogue
from tests.utils.relations import lives_in_workers_grid


@pytest.fixture
def sms_box() -> Iterator[sms.RecordingSms]:
    box = sms.RecordingSms()
    sms.configure(box)
    yield box
    sms.configure(None)


async def _delivered() -> None:
    """What a worker does in the background: due jobs, then every notice the commits promised
    (the outbox), until nothing is left (a delivered notice may promise the worker's relay)."""
    await jobs.run_due()
    while await outbox.dispatch_due():
        pass


async def _messages(s: Any, **params: Any) -> Any:
    await _delivered()
    resp = await s.get("/api/v1/me/messages", params=params)
    assert resp.status == 200, resp.text
    return resp.json


async def test_resident_books_and_finds_the_confirmation(api: Any, fake_wechat: Any,
                                                         sms_box: sms.RecordingSms) -> None:
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    await people.bind_phone(user_id=wang.user_id, phone="13800001111")
    slot = (await _open_slots(wang))[0]
    resp = await wang.post("/api/v1/appointments", json={"slot_id": slot["id"],
                                                         "item_code": ITEM})
    assert resp.status == 201, resp.text
    await _delivered()
    await _delivered()  # a second run finds nothing more to send
    page = await _messages(wang)
    [msg] = page["messages"]
    assert msg["template"] == "appointment_booked" and msg["title"] == "预约成功"
    assert msg["category"] == "appointments" and msg["read"] is False
    assert msg["page"] == f"pages/appointments/detail?id={resp.json['id']}"
    assert page["unread"] == 1 and page["unread_by_category"] == {"appointments": 1}
    # Never subscribed: the confirmation matters, so it went by SMS as well.
    assert [s.phone for s in sms_box.sent] == ["13800001111"]

    read = await wang.post(f"/api/v1/me/messages/{msg['id']}/read")
    assert read.status == 200 and read.json["read"] is True and read.json["read_at"]
    assert (await _messages(wang))["unread"] == 0
    assert (await _messages(wang, unread="true"))["messages"] == []
    unread = await wang.post(f"/api/v1/me/messages/{msg['id']}/unread")
    assert unread.json["read"] is False
    done = await wang.post("/api/v1/me/messages/read-all", json={"category": "appointments"})
    assert done.status == 200 and done.json["marked"] == 1


async def test_nobody_reads_anothers_messages(api: Any, fake_wechat: Any,
                                              sms_box: sms.RecordingSms) -> None:
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    slot = (await _open_slots(wang))[0]
    await wang.post("/api/v1/appointments", json={"slot_id": slot["id"], "item_code": ITEM})
    await _delivered()
    mid = (await _messages(wang))["messages"][0]["id"]
    other = await api.login("zhao")
    staff = await api.login("clerk", Role.staff, Role.admin)
    for s in (other, staff):
        assert (await s.get(f"/api/v1/me/messages/{mid}")).status == 404
        assert (await s.post(f"/api/v1/me/messages/{mid}/read")).status == 404
        assert (await s.post(f"/api/v1/me/messages/{mid}/unread")).status == 404
        assert (await _messages(s))["messages"] == []
        assert (await s.post("/api/v1/me/messages/read-all", json={})).json["marked"] == 0
    assert (await _messages(wang))["messages"][0]["read"] is False
    assert (await api.get("/api/v1/me/messages")).status == 401
    assert (await api.get(f"/api/v1/me/messages/{mid}")).status == 401
    assert (await wang.get("/api/v1/me/messages/99999999999999999999")).status == 404
    bad = await wang.get("/api/v1/me/messages", params={"category": "gossip"})
    assert bad.status == 422 and "category" in bad.json["error"]["fields"]
    bad = await wang.post("/api/v1/me/messages/read-all", json={"everything": True})
    assert bad.status == 422


async def test_paging_with_the_cursor(api: Any, fake_wechat: Any) -> None:
    from services import notifications
    me = await api.login("pager")
    for i in range(5):
        await notifications.notify(user_id=me.user_id, template="policy_published",
                                   data={"thing1": f"政策{i}"}, dedup_key=f"policy:{i}")
    first = await _messages(me, limit=2)
    assert [m["body"][:3] for m in first["messages"]] == ["政策4", "政策3"]
    assert first["next_cursor"] and first["unread"] == 5
    second = await _messages(me, limit=2, cursor=first["next_cursor"])
    third = await _messages(me, limit=2, cursor=second["next_cursor"])
    assert [m["body"][:3] for m in second["messages"] + third["messages"]] == [
        "政策2", "政策1", "政策0"]
    assert third["next_cursor"] is None
    assert (await _messages(me, category="cases"))["messages"] == []


async def test_on_behalf_booking_tells_the_person_and_the_worker(
        api: Any, fake_wechat: Any, sms_box: sms.RecordingSms) -> None:
    await catalogue()
    zhang = await _resident(api, "zhang", ZHANG)
    worker = await api.login("demo-worker", Role.community_worker)
    await lives_in_workers_grid(worker.user_id, name=ZHANG[0], id_number=ZHANG[1])
    slot = (await _open_slots(worker))[0]
    resp = await worker.post("/api/v1/appointments", json={
        "slot_id": slot["id"], "item_code": ITEM,
        "on_behalf_of": {"name": ZHANG[0], "id_number": ZHANG[1]}})
    assert resp.status == 201, resp.text
    await _delivered()
    [mine] = (await _messages(zhang))["messages"]
    assert mine["template"] == "appointment_booked"
    [told] = (await _messages(worker))["messages"]
    assert told["template"] == "on_behalf_relay" and "*建国" in told["body"]
    # He never subscribed and has no phone on file: the worker is asked to tell him.
    assert "请电话或上门告知" in told["body"] and ZHANG[0] not in told["body"]
    assert sms_box.sent == []


async def test_on_behalf_for_someone_without_an_account_reaches_the_worker(
        api: Any, fake_wechat: Any) -> None:
    await catalogue()
    worker = await api.login("demo-worker", Role.community_worker)
    await lives_in_workers_grid(worker.user_id, name=ZHANG[0], id_number=ZHANG[1])
    slot = (await _open_slots(worker))[0]
    await worker.post("/api/v1/appointments", json={
        "slot_id": slot["id"], "item_code": ITEM,
        "on_behalf_of": {"name": ZHANG[0], "id_number": ZHANG[1]}})
    await _delivered()
    [told] = (await _messages(worker))["messages"]
    assert told["template"] == "appointment_booked" and "*建国" in told["body"]
    assert "请转告本人" in told["body"]


async def test_helper_offered_accepts_from_the_notice_and_resident_is_told(
        api: Any, fake_wechat: Any) -> None:
    s = await helpers_setup(api)
    await people.bind_phone(user_id=s["h1"].user_id, phone="13912345678")
    await people.bind_phone(user_id=s["h2"].user_id, phone="13912345678")
    resp = await s["zhang"].post("/api/v1/cases", json={
        "item_code": "MZ-004", "hall_code": "H-XF-000", "need_help": True, "help_note": "请帮忙"})
    assert resp.status == 201, resp.text
    helper = "h1" if resp.json["helper"]["helper_user_id"] == s["h1"].user_id else "h2"
    other = "h2" if helper == "h1" else "h1"
    offers = (await _messages(s[helper], category="helper_offers"))["messages"]
    assert len(offers) == 1 and offers[0]["title"] == "新的帮办任务"
    assert "前接单" in offers[0]["body"]
    assert (await _messages(s[other]))["messages"] == []
    # The other helper can't act on it, the offered one can, straight from the notice.
    assert (await s[other].post(offers[0]["action_path"])).status == 404
    took = await s[helper].post(offers[0]["action_path"])
    assert took.status == 200 and took.json["status"] == "accepted"
    assigned = [m for m in (await _messages(s["zhang"]))["messages"]
                if m["template"] == "helper_assigned"]
    assert len(assigned) == 1 and "139****5678" in assigned[0]["body"]
    assert "13912345678" not in str(assigned)


async def test_case_notices_and_rating_invite(api: Any, fake_wechat: Any,
                                              sms_box: sms.RecordingSms) -> None:
    s = await helpers_setup(api)
    zhang, staff = s["zhang"], s["staff"]
    await people.bind_phone(user_id=zhang.user_id, phone="13800002222")
    cid = (await zhang.post("/api/v1/cases", json={"item_code": "MZ-003",
                                                   "hall_code": "H-XF-000"})).json["id"]

    async def move(who: Any, action: str) -> None:
        r = await who.post(f"/api/v1/cases/{cid}/transitions", json={"action": action})
        assert r.status == 200, r.text

    await move(staff, "accept")
    r = await staff.post(f"/api/v1/cases/{cid}/supplement-requests", json={
        "items": [{"material": "户口簿", "reason": "缺少户主页"}]})
    assert r.status == 201, r.text
    await move(zhang, "resubmit")
    await move(staff, "start_review")
    await move(staff, "approve")
    got = [m["template"] for m in reversed((await _messages(zhang, limit=50))["messages"])]
    assert got == ["case_status", "case_status", "case_supplement", "case_status",
                   "case_status", "case_result", "rating_invite"]
    # Only the supplement request and the result went by SMS.
    assert [p.params[0] for p in sms_box.sent] == ["需要补正材料", "办理结果已出"]


async def test_complaint_reply_lands_under_complaints(api: Any, fake_wechat: Any) -> None:
    me = await api.login("resident-a")
    staff = await api.login("clerk", Role.staff)
    fb = (await me.post("/api/v1/feedback", json={
        "kind": "complaint", "text": "窗口工作人员态度很差，让我来回跑了三次"})).json
    await staff.post(f"/api/v1/admin/feedback/{fb['id']}/reply", json={"text": "已处理完毕"})
    [msg] = (await _messages(me, category="complaints"))["messages"]
    assert msg["template"] == "feedback_reply" and "已处理完毕" in msg["body"]


async def test_consent_plan_record_and_settings(api: Any, fake_wechat: Any) -> None:
    me = await api.login("consenter")
    plan = await me.get("/api/v1/me/notifications/consent", params={"action": "booking"})
    assert plan.status == 200, plan.text
    assert plan.json["tmpl_ids"] == ["tmpl-appt-booked", "tmpl-appt-reminder", "tmpl-waitlist"]
    assert [t["long_term"] for t in plan.json["templates"]] == [False, True, False]
    bad = await me.get("/api/v1/me/notifications/consent", params={"action": "dancing"})
    assert bad.status == 422
    resp = await me.post("/api/v1/me/notifications/consent", json={"results": {
        "tmpl-appt-booked": "accept", "tmpl-appt-reminder": "accept", "tmpl-waitlist": "reject"}})
    assert resp.status == 200, resp.text
    by = {n["template"]: n for n in resp.json["notices"]}
    assert by["appointment_booked"]["wechat"] == "one_time"
    assert by["appointment_reminder"]["wechat"] == "long_term"
    assert by["waitlist_promoted"]["wechat"] == "not_subscribed"
    assert by["appointment_booked"]["sms_fallback"] is False  # no phone yet
    bad = await me.post("/api/v1/me/notifications/consent",
                        json={"results": {"tmpl-unknown": "accept"}})
    assert bad.status == 422 and "tmpl-unknown" in bad.json["error"]["fields"]
    await people.bind_phone(user_id=me.user_id, phone="13800003333")
    page = await me.get("/api/v1/me/notifications/settings")
    assert page.status == 200 and page.json["phone"] == "138****3333"
    assert {n["template"]: n for n in page.json["notices"]}["case_result"]["sms_fallback"]
    assert (await api.get("/api/v1/me/notifications/settings")).status == 401


async def test_figures_are_for_staff(api: Any, fake_wechat: Any) -> None:
    from services import notifications
    me = await api.login("counted")
    await notifications.notify(user_id=me.user_id, template="policy_published",
                               data={"thing1": "x"}, dedup_key="p:1")
    assert (await me.get("/api/v1/admin/notifications/figures")).status == 403
    staff = await api.login("clerk", Role.staff)
    resp = await staff.get("/api/v1/admin/notifications/figures")
    assert resp.status == 200, resp.text
    [row] = resp.json["rows"]
    assert row["template"] == "policy_published" and row["skipped"] == {"not_subscribed": 1}
    bad = await staff.get("/api/v1/admin/notifications/figures",
                          params={"from": "2026-01-01", "to": "2025-01-01"})
    assert bad.status == 422


async def test_a_client_cannot_claim_long_term_for_any_template(api: Any) -> None:
    me = await api.login("claimer")
    claimed = await me.post("/api/v1/me/subscriptions", json={
        "template": "policy_published", "accepted": True, "long_term": True})
    assert claimed.status == 200, claimed.text
    assert claimed.json["long_term"] is False and claimed.json["balance"] == 1
    granted = await me.post("/api/v1/me/subscriptions", json={
        "template": "appointment_reminder", "accepted": True, "long_term": True})
    assert granted.json["long_term"] is True


async def test_each_offer_is_notified_once_and_a_timed_out_offer_moves_on(
        api: Any, fake_wechat: Any) -> None:
    from datetime import timedelta

    from services import clock, helpers
    s = await helpers_setup(api)
    resp = await s["zhang"].post("/api/v1/cases", json={
        "item_code": "MZ-004", "hall_code": "H-XF-000", "need_help": True})
    first = "h1" if resp.json["helper"]["helper_user_id"] == s["h1"].user_id else "h2"
    second = "h2" if first == "h1" else "h1"
    # The sweep finding the same open offer again doesn't message twice.
    await helpers.expire_offers()
    assert len((await _messages(s[first]))["messages"]) == 1
    # Nobody answered in time: the offer moves on, and the next helper hears of it once.
    assert await helpers.expire_offers(now=clock.now() + timedelta(minutes=31)) == 1
    assert await helpers.expire_offers() == 0
    [offer] = (await _messages(s[second]))["messages"]
    assert offer["template"] == "helper_offered"
    assert len((await _messages(s[first]))["messages"]) == 1
    # The first helper's old notice no longer accepts.
    [old] = (await _messages(s[first]))["messages"]
    assert (await s[first].post(old["action_path"])).status == 409
    assert (await s[second].post(offer["action_path"])).status == 200


async def test_reminder_reaches_the_centre_and_falls_back_to_sms(
        api: Any, fake_wechat: Any, sms_box: sms.RecordingSms,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timedelta

    from services import appointments, clock
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    await people.bind_phone(user_id=wang.user_id, phone="13800004444")
    slot = (await _open_slots(wang))[0]
    appt = (await wang.post("/api/v1/appointments", json={"slot_id": slot["id"],
                                                          "item_code": ITEM})).json
    await _delivered()
    starts = datetime.fromisoformat(slot["starts_at"])
    monkeypatch.setattr(clock, "now", lambda: starts - timedelta(hours=20))
    assert await appointments.send_reminders() == 1
    assert await appointments.send_reminders() == 0
    reminders = [m for m in (await _messages(wang))["messages"]
                 if m["template"] == "appointment_reminder"]
    assert len(reminders) == 1 and str(appt["id"]) in reminders[0]["page"]
    # Booking confirmation and day-before reminder: both matter, both went by SMS.
    assert [p.params[0] for p in sms_box.sent] == ["预约成功", "预约提醒"]


async def test_checked_in_appointment_invites_a_rating_once(
        api: Any, fake_wechat: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime

    from services import clock
    await catalogue()
    wang = await _resident(api, "wang", WANG)
    staff = await api.login("clerk", Role.staff)
    slot = (await _open_slots(wang))[0]
    appt = (await wang.post("/api/v1/appointments", json={"slot_id": slot["id"],
                                                          "item_code": ITEM})).json
    monkeypatch.setattr(clock, "now", lambda: datetime.fromisoformat(slot["starts_at"]))
    for _ in range(2):  # a second scan of the same code is harmless, and invites no one twice
        done = await staff.post("/api/v1/appointments/check-in",
                                json={"code": appt["check_in_code"]})
        assert done.status == 200, done.text
    await _delivered()
    invites = [m for m in (await _messages(wang))["messages"] if m["template"] == "rating_invite"]
    assert len(invites) == 1 and f"appointment_id={appt['id']}" in invites[0]["page"]
    assert invites[0]["category"] == "appointments"
