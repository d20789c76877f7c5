import asyncio

from models.notifications import Notification
from models.users import User
from services import idempotency, notifications
from services.errors import AppError, ErrorCode


async def test_idempotent_action_runs_once_and_replays():
    user = await User.create(openid="o1")
    calls = []

    async def action():
        calls.append(1)
        return 201, {"id": len(calls)}

    fp = idempotency.request_fingerprint("POST", "/x", {"a": 1})
    first = await idempotency.run_once(user_id=user.id, key="k", fingerprint=fp, action=action)
    second = await idempotency.run_once(user_id=user.id, key="k", fingerprint=fp, action=action)
    assert first == second == (201, {"id": 1}) and calls == [1]


async def test_idempotency_key_reused_for_a_different_request_is_409():
    user = await User.create(openid="o1")

    async def action():
        return 201, {}

    await idempotency.run_once(user_id=user.id, key="k", fingerprint="a", action=action)
    try:
        await idempotency.run_once(user_id=user.id, key="k", fingerprint="b", action=action)
    except AppError as exc:
        assert exc.code is ErrorCode.idempotency_conflict
    else:
        raise AssertionError("expected a conflict")


async def test_refusals_are_remembered_too():
    user = await User.create(openid="o1")
    calls = []

    async def action():
        calls.append(1)
        raise AppError(ErrorCode.conflict, "满了")

    r1 = await idempotency.run_once(user_id=user.id, key="k", fingerprint="a", action=action)
    r2 = await idempotency.run_once(user_id=user.id, key="k", fingerprint="a", action=action)
    assert r1 == r2 and r1[0] == 409 and calls == [1]


async def test_notify_spends_balance_and_sends_once(fake_wechat):
    user = await User.create(openid=fake_wechat.openid_for("alice"))
    await notifications.record_subscription(user_id=user.id, template="case_status",
                                            accepted=True)
    results = await asyncio.gather(*(
        notifications.notify(user_id=user.id, template="case_status", data={"thing1": "受理"},
                             dedup_key="case:1:accepted") for _ in range(5)))
    assert sum(r is not None for r in results) == 1
    assert len(fake_wechat.sent_messages) == 1
    # Balance is spent: the next different message is skipped, not sent.
    note = await notifications.notify(user_id=user.id, template="case_status", data={},
                                      dedup_key="case:1:approved")
    assert note.status == "skipped" and note.detail == "no_balance"
    assert len(fake_wechat.sent_messages) == 1


async def test_notify_records_refusal_without_raising(fake_wechat):
    user = await User.create(openid=fake_wechat.openid_for("bob"))
    await notifications.record_subscription(user_id=user.id, template="t", accepted=True,
                                            long_term=True)
    fake_wechat.refuse(user.openid)
    note = await notifications.notify(user_id=user.id, template="t", data={}, dedup_key="d1")
    assert note.status == "failed"
    assert (await Notification.get(dedup_key="d1")).status == "failed"
