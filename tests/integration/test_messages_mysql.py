"""Notices under real concurrency on MariaDB: many workers racing on one event keep one
message and send one; many fallbacks racing for one person's SMS allowance send exactly the
daily limit; two dispatchers running one stored notice send it once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from models.messages import Message, SmsQuota
from models.notifications import Notification
from models.users import User
from services import clock, notifications, people, sms
from services.settings import get_settings

pytestmark = [pytest.mark.mysql]

N = 30


class SlowRecordingSms(sms.RecordingSms):
    """Yields inside the send so the racing deliveries really overlap."""

    async def send(self, *, phone: str, template_id: str, params: list[str]) -> sms.SmsOutcome:
        await asyncio.sleep(0.01)
        return await super().send(phone=phone, template_id=template_id, params=params)


@pytest.fixture
def box() -> Iterator[SlowRecordingSms]:
    b = SlowRecordingSms()
    sms.configure(b)
    yield b
    sms.configure(None)


async def _person(fake_wechat: Any, code: str) -> User:
    user = await User.create(openid=fake_wechat.openid_for(code))
    await people.bind_phone(user_id=user.id, phone="13800009999")
    return user


async def test_one_event_many_workers_one_message(fake_wechat: Any,
                                                  box: SlowRecordingSms) -> None:
    user = await _person(fake_wechat, "racer")
    results = await asyncio.gather(*(
        notifications.notify(user_id=user.id, template="appointment_booked",
                             data={"thing1": "大厅"}, dedup_key="appt:1:booked")
        for _ in range(N)))
    assert sum(r is not None for r in results) == 1
    assert await Message.filter(user_id=user.id).count() == 1
    assert await Notification.filter(user_id=user.id).count() == 1
    assert len(box.sent) == 1


async def test_daily_sms_limit_holds_under_concurrency(fake_wechat: Any, box: SlowRecordingSms,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "sms_daily_limit", 3)
    user = await _person(fake_wechat, "busy")
    notes = await asyncio.gather(*(
        notifications.notify(user_id=user.id, template="case_supplement",
                             data={"title": f"办件{i}"}, dedup_key=f"case:{i}:supplement")
        for i in range(N)))
    statuses = sorted(n.sms_status for n in notes if n is not None)
    assert statuses.count("sent") == 3 and statuses.count("limited") == N - 3
    assert len(box.sent) == 3
    assert (await SmsQuota.get(user_id=user.id, day=clock.today())).count == 3
    # Every one of them is still in the centre.
    assert await Message.filter(user_id=user.id).count() == N


async def test_two_dispatchers_deliver_a_stored_notice_once(fake_wechat: Any,
                                                            box: SlowRecordingSms) -> None:
    user = await _person(fake_wechat, "twice")
    await notifications.record_subscription(user_id=user.id, template="case_result",
                                            accepted=True, long_term=True)
    note = await Notification.create(user_id=user.id, template="case_result",
                                      dedup_key="case:9:event:1", data={"title": "x"})
    await Message.create(user_id=user.id, category="cases", template="case_result",
                         title="办理结果已出", body="x", dedup_key="case:9:event:1")
    done = await asyncio.gather(*(notifications.deliver(note.id) for _ in range(N)))
    assert {d.id for d in done} == {note.id}
    assert len(fake_wechat.sent_messages) == 1
    await note.refresh_from_db()
    assert note.status == "sent"
