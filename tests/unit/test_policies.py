"""政策推送: criteria, "for me", and publishing that pushes once per user and policy."""

from __future__ import annotations

from datetime import date

import pytest

from models.enterprises import Enterprise, EnterpriseAgent
from models.notifications import Notification
from models.policies import Audience, Policy, PolicyStatus
from models.users import IdentityLevel, Person, Role, User
from services import notifications, outbox, people, policies, seed
from services.auth import Principal
from services.errors import AppError

STAFF = Principal(user_id=1, roles=frozenset({Role.staff.value}))
RESIDENT = Principal(user_id=2, roles=frozenset({Role.resident.value}))

ZHANG = ("张建国", "621002194103050316")  # born 1941, elderly
LI = ("李秀兰", "621021197508120426")  # disabled
WANG = ("王小明", "621002200302170132")  # graduate
CATERING = "91621000MA700QY00N"
SOFTWARE = "91621000MA702QY83P"


async def user_for(openid: str, who: tuple[str, str] | None = None) -> User:
    user = await User.create(openid=openid)
    if who:
        # Bound as if face-verified; the verification flow itself: tests/api/test_identity_api.py
        person = await Person.get(id_number_hash=people.id_lookup_hash(who[1]))
        user.person = person
        user.identity_level = IdentityLevel.face
        await user.save(update_fields=["person_id", "identity_level"])
    return user


async def agent_for(openid: str, uscc: str) -> User:
    user = await User.create(openid=openid)
    await EnterpriseAgent.create(user=user, enterprise=await Enterprise.get(uscc=uscc))
    return user


def test_person_criteria():
    assert policies.person_matches({"min_age": 80}, age=85, tags=[])
    assert not policies.person_matches({"min_age": 80}, age=79, tags=["elderly"])
    assert policies.person_matches({"max_age": 35, "tags": ["graduate"]}, age=23,
                                   tags=["graduate", "veteran"])
    assert not policies.person_matches({"tags": ["graduate", "veteran"]}, age=23,
                                       tags=["graduate"])
    assert policies.person_matches({}, age=1, tags=[])


def test_enterprise_criteria():
    ent = Enterprise(industry="catering", size="micro", county="西峰区", tags=[], layoff_rate=None)
    assert policies.enterprise_matches({"size": ["micro", "small"]}, ent)
    assert policies.enterprise_matches({"industry": ["catering", "lodging"]}, ent)
    assert not policies.enterprise_matches({"industry": ["software"]}, ent)
    assert not policies.enterprise_matches({"tags": ["tech_sme"]}, ent)
    # Unknown layoff rate: no promise of a refund.
    assert not policies.enterprise_matches({"max_layoff_rate": 0.05}, ent)
    ent.layoff_rate = 0.02
    assert policies.enterprise_matches({"max_layoff_rate": 0.05, "county": ["西峰区"]}, ent)
    ent.layoff_rate = 0.2
    assert not policies.enterprise_matches({"max_layoff_rate": 0.05}, ent)


def test_enterprise_criteria_edge_cases_of_the_one_rule():
    """The rule the enterprise code's scan used to keep a copy of (services/codes): a bare
    value is one allowed value, never a substring; an empty condition is none; an unknown
    key is not claimed to match."""
    ent = Enterprise(industry="catering", size="micro", county="西峰区", tags=["veteran_run"],
                     layoff_rate=0.01)
    assert policies.enterprise_matches({"county": "西峰区", "tags": "veteran_run"}, ent)
    assert not policies.enterprise_matches({"county": "西峰"}, ent)  # was a substring match
    assert not policies.enterprise_matches({"county": "西峰区区"}, ent)
    assert policies.enterprise_matches({"industry": [], "tags": [], "max_layoff_rate": None}, ent)
    assert not policies.enterprise_matches({"employees_over": 10}, ent)  # can't evaluate
    assert policies.enterprise_matches({"max_layoff_rate": 0.01}, ent)
    assert not policies.enterprise_matches({"max_layoff_rate": 0}, ent)


def test_criteria_are_validated_for_the_audience():
    assert policies.parse_criteria(Audience.person, {"min_age": 80, "tags": []}) == {"min_age": 80}
    for audience, bad in [
        (Audience.person, {"size": ["micro"]}),  # enterprise key on a person policy
        (Audience.enterprise, {"min_age": 60}),
        (Audience.person, {"min_age": -1}),
        (Audience.person, {"tags": ["Not A Tag"]}),
        (Audience.person, {"min_age": 70, "max_age": 60}),
        (Audience.enterprise, {"max_layoff_rate": 2}),
        (Audience.person, {"max_age": False}),  # JSON false is not age 0
    ]:
        with pytest.raises(AppError) as exc:
            policies.parse_criteria(audience, bad)
        assert exc.value.status == 422


async def test_seeded_policies_match_the_demo_people_and_enterprises():
    await seed.run()
    assert await Policy.filter(status=PolicyStatus.published).count() == 10
    zhang = await user_for("o-zhang", ZHANG)
    li = await user_for("o-li", LI)
    nobody = await user_for("o-nobody")
    agent = await agent_for("o-agent", CATERING)
    codes = lambda ms: sorted(m.policy.code for m in ms)  # noqa: E731
    assert codes(await policies.for_me(user_id=zhang.id)) == ["P-001"]
    assert codes(await policies.for_me(user_id=li.id)) == ["P-002"]
    assert await policies.for_me(user_id=nobody.id) == []
    got = await policies.for_me(user_id=agent.id)
    assert codes(got) == ["P-007", "P-009"]
    assert all(not m.for_person and [e.uscc for e in m.enterprises] == [CATERING] for m in got)
    # The demo's small software firm is the 科技型中小企业 P-008 aims at.
    tech = await agent_for("o-tech", SOFTWARE)
    assert "P-008" in codes(await policies.for_me(user_id=tech.id))


async def test_age_is_taken_on_today(monkeypatch):
    await seed.run()
    zhang = await user_for("o-zhang", ZHANG)
    monkeypatch.setattr("services.clock.today", lambda: date(2021, 3, 4))  # 79, a day short
    assert [m.policy.code for m in await policies.for_me(user_id=zhang.id)] == []


async def _publish_new(
    criteria: dict[str, object], audience: Audience = Audience.person
) -> Policy:
    p = await policies.create_policy(actor=STAFF, code="P-900", title="新政策",
                                     department="市民政局", theme="养老服务", audience=audience,
                                     criteria=criteria, summary="摘要")
    return await policies.publish(actor=STAFF, policy_id=p.id)


async def test_publish_pushes_once_to_matching_subscribers_only(fake_wechat):
    await seed.run()
    subscribed = await user_for("o-zhang", ZHANG)
    await notifications.record_subscription(user_id=subscribed.id, template="policy_published",
                                            accepted=True)
    await user_for("o-li", LI)  # matches, never subscribed
    muted = await user_for("o-wang", WANG)
    await notifications.record_subscription(user_id=muted.id, template="policy_published",
                                            accepted=True, long_term=True)
    await notifications.set_muted(user_id=muted.id, template="policy_published", muted=True)
    no_match = await user_for("o-other")
    await notifications.record_subscription(user_id=no_match.id, template="policy_published",
                                            accepted=True)

    policy = await _publish_new({"min_age": 18})
    assert not fake_wechat.sent_messages  # nothing inside the request
    assert await outbox.dispatch_due() == 1
    sent = [m["touser"] for m in fake_wechat.sent_messages]
    assert sent == [subscribed.openid]
    assert fake_wechat.sent_messages[0]["data"]["thing1"]["value"] == "新政策"
    note = await Notification.get(user_id=subscribed.id)
    assert note.dedup_key == f"policy:{policy.id}:user:{subscribed.id}"

    # Retried job, staff publishing again, a second worker: still one message.
    await notifications.record_subscription(user_id=subscribed.id, template="policy_published",
                                            accepted=True)
    assert await policies.push_policy(policy.id) == 0
    await policies.publish(actor=STAFF, policy_id=policy.id)
    await outbox.dispatch_due()
    assert [m["touser"] for m in fake_wechat.sent_messages] == [subscribed.openid]


async def test_enterprise_policy_reaches_agents_once_even_for_two_matching_firms(fake_wechat):
    await seed.run()
    agent = await agent_for("o-agent", CATERING)
    await EnterpriseAgent.create(user=agent, enterprise=await Enterprise.get(uscc=SOFTWARE))
    await notifications.record_subscription(user_id=agent.id, template="policy_published",
                                            accepted=True, long_term=True)
    await _publish_new({"size": ["micro", "small"]}, audience=Audience.enterprise)
    await outbox.dispatch_due()
    assert [m["touser"] for m in fake_wechat.sent_messages] == [agent.openid]


async def test_drafts_and_withdrawn_policies_are_not_pushed_or_listed(fake_wechat):
    await seed.run()
    zhang = await user_for("o-zhang", ZHANG)
    await notifications.record_subscription(user_id=zhang.id, template="policy_published",
                                            accepted=True, long_term=True)
    draft = await policies.create_policy(actor=STAFF, code="P-901", title="草稿", department="",
                                         theme="", audience=Audience.person,
                                         criteria={"min_age": 60}, summary="")
    assert await policies.push_policy(draft.id) == 0
    assert "P-901" not in [m.policy.code for m in await policies.for_me(user_id=zhang.id)]
    await policies.publish(actor=STAFF, policy_id=draft.id)
    await policies.withdraw(actor=STAFF, policy_id=draft.id)
    await outbox.dispatch_due()
    assert fake_wechat.sent_messages == []
    with pytest.raises(AppError) as exc:
        await policies.publish(actor=STAFF, policy_id=draft.id)
    assert exc.value.status == 409


async def test_published_audience_is_frozen_and_staff_only():
    await seed.run()
    p = await _publish_new({"min_age": 60})
    with pytest.raises(AppError) as exc:
        await policies.update_policy(actor=STAFF, policy_id=p.id, title="新政策",
                                     department="", theme="", audience=Audience.person,
                                     criteria={"min_age": 50}, summary="")
    assert exc.value.status == 409
    edited = await policies.update_policy(actor=STAFF, policy_id=p.id, title="新标题",
                                          department="", theme="", audience=Audience.person,
                                          criteria={"min_age": 60}, summary="更正摘要")
    assert edited.title == "新标题"
    for call in (policies.publish(actor=RESIDENT, policy_id=p.id),
                 policies.withdraw(actor=RESIDENT, policy_id=p.id)):
        with pytest.raises(AppError) as exc:
            await call
        assert exc.value.status == 403
    with pytest.raises(AppError) as exc:
        await policies.get_published(2**70)
    assert exc.value.status == 404


async def test_a_muted_theme_is_skipped_and_others_still_arrive(fake_wechat):
    await seed.run()
    zhang = await user_for("o-zhang", ZHANG)
    await notifications.record_subscription(user_id=zhang.id, template="policy_published",
                                            accepted=True, long_term=True)
    assert await policies.set_theme_muted(user_id=zhang.id, theme="养老服务", muted=True) \
        == ["养老服务"]
    await policies.set_theme_muted(user_id=zhang.id, theme="养老服务", muted=True)  # idempotent
    await _publish_new({"min_age": 60})  # theme 养老服务
    await outbox.dispatch_due()
    assert fake_wechat.sent_messages == []
    other = await policies.create_policy(actor=STAFF, code="P-902", title="老年人就业补贴",
                                         department="市人社局", theme="就业创业",
                                         audience=Audience.person, criteria={"min_age": 60},
                                         summary="")
    await policies.publish(actor=STAFF, policy_id=other.id)
    await outbox.dispatch_due()
    assert [m["touser"] for m in fake_wechat.sent_messages] == [zhang.openid]
    assert await policies.set_theme_muted(user_id=zhang.id, theme="养老服务", muted=False) == []
