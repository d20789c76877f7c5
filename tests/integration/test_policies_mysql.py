"""Policy push under concurrency: several job runs for one policy at once, on MySQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from models.enterprises import Enterprise, EnterpriseAgent
from models.notifications import Notification, SubscriptionBalance
from models.policies import Audience
from models.users import Role, User
from services import notifications, outbox, policies, seed
from services.auth import Principal

STAFF = Principal(user_id=1, roles=frozenset({Role.staff.value}))
AGENTS = 40


@pytest.mark.mysql
async def test_concurrent_push_runs_send_once_per_user(fake_wechat, monkeypatch):
    await seed.run()
    ent = await Enterprise.get(uscc="91621000MA700QY00N")  # micro catering firm
    users = []
    for i in range(AGENTS):
        u = await User.create(openid=f"o-agent-{i}")
        await EnterpriseAgent.create(user=u, enterprise=ent)
        # Half hold one one-time grant (must be spent exactly once), half a long-term one.
        await SubscriptionBalance.create(user=u, template=policies.TEMPLATE,
                                         balance=1 if i % 2 else 0, long_term=not i % 2)
        users.append(u)

    in_flight = 0
    peak = 0
    real_notify = notifications.notify

    async def counting_notify(**kw: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0)  # let the other runs reach the same user
            return await real_notify(**kw)
        finally:
            in_flight -= 1

    monkeypatch.setattr(notifications, "notify", counting_notify)

    p = await policies.create_policy(actor=STAFF, code="P-950", title="小微企业稳岗补贴",
                                     department="市人社局", theme="就业创业",
                                     audience=Audience.enterprise,
                                     criteria={"size": ["micro"]}, summary="")
    # Staff double-clicks publish while two workers' job loops and direct reruns race.
    await asyncio.gather(policies.publish(actor=STAFF, policy_id=p.id),
                         policies.publish(actor=STAFF, policy_id=p.id))
    results = await asyncio.gather(
        *(policies.push_policy(p.id) for _ in range(6)),
        outbox.dispatch_due(), outbox.dispatch_due(),
    )

    assert peak >= 2, "the runs never overlapped; the test proves nothing"
    created = sum(r for r in results[:6])
    assert await Notification.filter(dedup_key__startswith=f"policy:{p.id}:").count() == AGENTS
    sent = Counter(m["touser"] for m in fake_wechat.sent_messages)
    assert sent == Counter({u.openid: 1 for u in users})
    assert created <= AGENTS
    # Every one-time grant was spent once, never twice (balance can't go below zero).
    balances = await SubscriptionBalance.filter(template=policies.TEMPLATE, long_term=False) \
        .values_list("balance", flat=True)
    assert list(balances) == [0] * (AGENTS // 2)
