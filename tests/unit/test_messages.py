"""One path for every notice: kept in the centre once, WeChat, SMS fallback for the notices that
matter within a daily limit, the booking worker told, consent honoured, figures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from models.messages import Message, SmsQuota
from models.notifications import Notification
from models.users import IdentityLevel, Role, User, UserRole
from services import clock, notifications, outbox, people, scope, seed, sms
from services.auth import Principal
from services.errors import AppError, ErrorCode
from services.settings import get_settings
from tests.conftest import grant_position

PHONE = "13800001234"


@pytest.fixture
def production_scope() -> Iterator[None]:
    """As production runs: staff see what their memberships give them, nothing else."""
    scope.unassigned_staff_scope = scope.NOTHING
    yield


@pytest.fixture
def sms_box() -> Iterator[sms.RecordingSms]:
    box = sms.RecordingSms()
    sms.configure(box)
    yield box
    sms.configure(None)


async def _user(fake_wechat: Any, code: str, *, phone: str | None = PHONE) -> User:
    user = await User.create(openid=fake_wechat.openid_for(code))
    if phone:
        await people.bind_phone(user_id=user.id, phone=phone)
    return user


DATA = {"thing1": "庆阳市政务服务中心", "time2": "2026-12-03 09:00", "thing3": "居民身份证换领"}


async def _notice(user: User, template: str, key: str, **kw: Any) -> Notification | None:
    return await notifications.notify(user_id=user.id, template=template, data=DATA,
                                      dedup_key=key, **kw)


async def test_each_notice_is_kept_once_and_sent_once(fake_wechat: Any,
                                                       sms_box: sms.RecordingSms) -> None:
    user = await _user(fake_wechat, "alice")
    await notifications.record_subscription(user_id=user.id, template="appointment_booked",
                                            accepted=True, long_term=True)
    results = await asyncio.gather(*(_notice(user, "appointment_booked", "appt:1:booked")
                                     for _ in range(5)))
    assert sum(r is not None for r in results) == 1
    assert len(fake_wechat.sent_messages) == 1
    # The gateway got the values, not WeChat's {"value": ...} wrapper stringified twice.
    assert fake_wechat.sent_messages[0]["data"]["thing1"] == {"value": "庆阳市政务服务中心"}
    rows = await Message.filter(user_id=user.id)
    assert len(rows) == 1
    assert (rows[0].category, rows[0].title) == ("appointments", "预约成功")
    assert rows[0].body == "庆阳市政务服务中心 2026-12-03 09:00，办理：居民身份证换领"
    assert sms_box.sent == []  # WeChat delivered: no fallback


async def test_unsubscribed_person_gets_sms_only_for_notices_that_matter(
    fake_wechat: Any, sms_box: sms.RecordingSms
) -> None:
    user = await _user(fake_wechat, "bob")
    for template in ("appointment_booked", "appointment_reminder", "case_supplement",
                     "case_result"):
        note = await _notice(user, template, f"{template}:1")
        assert note is not None and note.status == "skipped" and note.detail == "not_subscribed"
        assert note.sms_status == "sent", template
    for template in ("case_status", "policy_published", "feedback_reply", "rating_invite",
                     "helper_assigned"):
        note = await _notice(user, template, f"{template}:1")
        assert note is not None and note.status == "skipped" and note.sms_status == "", template
    assert [s.phone for s in sms_box.sent] == [PHONE] * 4
    assert sms_box.sent[0].params == ["预约成功", "庆阳市政务服务中心 2026-12-03"]
    # Every one of them is in the centre, SMS or not.
    assert await Message.filter(user_id=user.id).count() == 9


async def test_refused_wechat_falls_back_and_no_phone_is_recorded(
    fake_wechat: Any, sms_box: sms.RecordingSms
) -> None:
    refused = await _user(fake_wechat, "carol")
    await notifications.record_subscription(user_id=refused.id, template="case_result",
                                            accepted=True)
    fake_wechat.refuse(refused.openid)
    note = await _notice(refused, "case_result", "r:1")
    assert note is not None and note.status == "failed" and note.sms_status == "sent"
    phoneless = await _user(fake_wechat, "dave", phone=None)
    note = await _notice(phoneless, "case_result", "r:2")
    assert note is not None and note.sms_status == "no_phone"
    assert len(sms_box.sent) == 1


async def test_consent_is_honoured(fake_wechat: Any, sms_box: sms.RecordingSms) -> None:
    user = await _user(fake_wechat, "erin")
    tid = notifications.template_id("appointment_booked")
    accepted = await notifications.record_consent(
        user_id=user.id, results={tid: "accept", notifications.template_id("waitlist_promoted"):
                                  "reject"})
    assert accepted == ["appointment_booked"]
    # One acceptance of a one-time template is worth exactly one WeChat message.
    first = await _notice(user, "appointment_booked", "a:1")
    second = await _notice(user, "appointment_booked", "a:2")
    assert first is not None and first.status == "sent" and first.sms_status == ""
    assert second is not None and second.detail == "no_balance" and second.sms_status == "sent"
    # A rejected template was not granted.
    promoted = await _notice(user, "waitlist_promoted", "w:1")
    assert promoted is not None and promoted.detail == "not_subscribed"
    # Long-term is ours to decide (政务 templates), not the client's to claim.
    reminder = notifications.template_id("appointment_reminder")
    await notifications.record_consent(user_id=user.id, results={reminder: "accept"})
    for i in range(3):
        note = await _notice(user, "appointment_reminder", f"rem:{i}")
        assert note is not None and note.status == "sent"
    # Muting a kind stops WeChat and the SMS fallback alike; the centre still keeps it.
    await notifications.set_muted(user_id=user.id, template="appointment_reminder", muted=True)
    muted = await _notice(user, "appointment_reminder", "rem:muted")
    assert muted is not None and (muted.detail, muted.sms_status) == ("muted", "muted")
    assert await Message.filter(dedup_key="rem:muted").exists()


async def test_consent_results_are_validated(fake_wechat: Any) -> None:
    user = await _user(fake_wechat, "fay")
    with pytest.raises(AppError) as err:
        await notifications.record_consent(user_id=user.id, results={"tmpl-nope": "accept"})
    assert err.value.code is ErrorCode.validation_failed and "tmpl-nope" in err.value.fields
    tid = notifications.template_id("case_result")
    with pytest.raises(AppError) as err:
        await notifications.record_consent(user_id=user.id, results={tid: "maybe"})
    assert tid in err.value.fields
    with pytest.raises(AppError):
        notifications.consent_for("dancing")
    asks = notifications.consent_for("booking")
    assert [a.template for a in asks] == ["appointment_booked", "appointment_reminder",
                                          "waitlist_promoted"]
    assert [a.long_term for a in asks] == [False, True, False]


async def test_daily_sms_limit_holds(fake_wechat: Any, sms_box: sms.RecordingSms,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "sms_daily_limit", 2)
    user = await _user(fake_wechat, "gus")
    notes = [await _notice(user, "case_supplement", f"s:{i}") for i in range(4)]
    assert [n.sms_status for n in notes if n] == ["sent", "sent", "limited", "limited"]
    assert len(sms_box.sent) == 2
    quota = await SmsQuota.get(user_id=user.id, day=clock.today())
    assert quota.count == 2
    # Another person has their own allowance.
    other = await _user(fake_wechat, "hal", phone="13900005678")
    note = await _notice(other, "case_supplement", "s:other")
    assert note is not None and note.sms_status == "sent"


async def test_deliver_runs_once_per_row(fake_wechat: Any, sms_box: sms.RecordingSms) -> None:
    user = await _user(fake_wechat, "ivy")
    note = await _notice(user, "case_result", "once:1")
    assert note is not None
    again = await notifications.deliver(note.id)
    assert again.status == "skipped" and len(sms_box.sent) == 1


async def test_failed_sms_is_recorded_not_raised(fake_wechat: Any,
                                                 sms_box: sms.RecordingSms) -> None:
    sms_box.fail_with = "LimitExceeded.PhoneNumberDailyLimit"
    user = await _user(fake_wechat, "jay")
    note = await _notice(user, "appointment_reminder", "f:1")
    assert note is not None
    assert (note.sms_status, note.sms_detail) == ("failed", "LimitExceeded.PhoneNumberDailyLimit")


async def test_worker_is_told_how_each_notice_went(fake_wechat: Any,
                                                   sms_box: sms.RecordingSms) -> None:
    worker = await _user(fake_wechat, "worker", phone="13700000000")
    # Bound as if face-verified (the verification flow itself: tests/api/test_identity_api.py).
    person = await people.upsert_person(name="张建国", id_number="621002194103050316")
    resident = await _user(fake_wechat, "old")
    await User.filter(id=resident.id).update(person_id=person.id, identity_level=IdentityLevel.face)
    resident = await User.get(id=resident.id)
    await _notice(resident, "appointment_booked", "appt:9:booked", relay_to=worker.id,
                  hall_code="H-XF-000")
    relay = await Message.get(user_id=worker.id)
    assert relay.dedup_key == "appt:9:booked:relay" and relay.title == "代办对象通知情况"
    # The relay is about the same appointment: it counts in the same hall's figures.
    assert (await Notification.get(dedup_key="appt:9:booked:relay")).hall_code == "H-XF-000"
    assert "*建国" in relay.body and "已短信告知本人" in relay.body
    assert "张建国" not in relay.body
    # Without a phone and without WeChat, the worker is asked to tell them in person.
    await User.filter(id=resident.id).update(phone_enc=None, phone_masked=None)
    await _notice(resident, "appointment_reminder", "appt:9:remind", relay_to=worker.id)
    relay = await Message.get(dedup_key="appt:9:remind:relay")
    assert "请电话或上门告知" in relay.body


async def test_figures_by_template_and_day(fake_wechat: Any, sms_box: sms.RecordingSms,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "sms_daily_limit", 1)
    user = await _user(fake_wechat, "kim")
    await notifications.record_subscription(user_id=user.id, template="case_status",
                                            accepted=True, long_term=True)
    await _notice(user, "case_status", "c:1")
    await _notice(user, "case_supplement", "c:2")
    await _notice(user, "case_supplement", "c:3")
    await _notice(user, "policy_published", "p:1")
    today = clock.today()
    admin = Principal(user.id, frozenset({"resident", "admin"}))
    rows = {r.template: r for r in await notifications.figures(actor=admin, start=today,
                                                                end=today)}
    assert rows["case_status"].sent == 1 and rows["case_status"].sms == {}
    sup = rows["case_supplement"]
    assert (sup.total, sup.skipped, sup.sms) == (2, {"not_subscribed": 2},
                                                 {"sent": 1, "limited": 1})
    assert rows["policy_published"].skipped == {"not_subscribed": 1}
    with pytest.raises(AppError):
        await notifications.figures(actor=admin, start=today,
                                    end=today.replace(year=today.year - 1))


async def test_figures_follow_the_notices_place(fake_wechat: Any,
                                                production_scope: None) -> None:
    """Each notice counts for the staff whose scope covers its hall and department; a notice
    promised through the outbox keeps its place on the way."""
    await seed.run()
    user = await _user(fake_wechat, "lee")
    await _notice(user, "case_status", "k:1", hall_code="H-XF-000", department="市民政局")
    await _notice(user, "appointment_booked", "k:2", hall_code="H-XF-101")
    await _notice(user, "policy_published", "k:3", department="市民政局")  # no hall
    await _notice(user, "identity_moved", "k:4")  # no hall, no department
    async with in_transaction() as conn:
        await notifications.notify_after_commit(
            user_id=user.id, template="case_status", data=DATA, dedup_key="k:5",
            hall_code="H-QC-000", department="市公安局", using_db=conn)
    await outbox.dispatch_due()
    assert (await Notification.get(dedup_key="k:5")).hall_code == "H-QC-000"

    async def keys(who: Principal) -> int:
        today = clock.today()
        return sum(r.total for r in await notifications.figures(actor=who, start=today,
                                                                 end=today))

    async def member(name: str, **unit: str) -> Principal:
        u = await User.create(openid=f"openid-{name}")
        await UserRole.create(user=u, role=Role.staff)
        await grant_position(u.id, **unit)
        return Principal(u.id, frozenset({"resident", "staff"}))

    assert await keys(await member("xf", hall="H-XF-000")) == 1
    assert await keys(await member("qc", hall="H-QC-000")) == 1
    assert await keys(await member("sup", region="621002")) == 2  # the county and its street
    assert await keys(await member("city-sup", region="621000")) == 5
    assert await keys(await member("mz", department="市民政局")) == 2  # its case, its policy
    assert await keys(await member("nobody")) == 0
    assert await keys(Principal(user.id, frozenset({"resident", "admin"}))) == 5
    with pytest.raises(AppError) as denied:
        await notifications.figures(actor=Principal(user.id, frozenset({"resident"})),
                                    start=clock.today(), end=clock.today())
    assert denied.value.code is ErrorCode.forbidden


async def test_settings_say_what_will_and_wont_arrive(fake_wechat: Any) -> None:
    user = await _user(fake_wechat, "lee")
    await notifications.record_subscription(user_id=user.id, template="appointment_booked",
                                            accepted=True)
    await notifications.set_muted(user_id=user.id, template="appointment_reminder", muted=True)
    s = await notifications.settings_of(user.id)
    by = {n.template: n for n in s.notices}
    assert s.phone == "138****1234"
    assert (by["appointment_booked"].wechat, by["appointment_booked"].wechat_remaining) == (
        "one_time", 1)
    assert by["appointment_booked"].sms_fallback
    assert by["appointment_reminder"].wechat == "muted"
    assert not by["appointment_reminder"].sms_fallback
    assert by["case_status"].wechat == "not_subscribed" and not by["case_status"].sms_fallback
