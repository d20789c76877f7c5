"""实名 + 实人 over HTTP: WeChat face verification (start, the phone's step, finish), every
refusal path, the real person reclaiming an ID, desk verification, the binding oracle and its
rate limits, and what needs a proven identity."""

from __future__ import annotations

from typing import Any

from models.audit import AuditLog
from models.notifications import Notification
from models.users import IdentityLevel, Person, Role, User
from models.verification import IdentityVerification, VerificationStatus
from services import jobs, people, seed
from services.identity import _id_check_char
from services.settings import get_settings
from tests.api.test_appointments_api import ITEM, _open_slots
from tests.unit.test_appointments_common import catalogue
from tests.utils.relations import lives_in_workers_grid

ZHANG = ("张建国", "621002194103050316")
LI = ("李秀兰", "621021197508120426")
START = "/api/v1/me/identity/verifications"


async def _start(s: Any, name: str, id_number: str) -> Any:
    return await s.post(START, json={"name": name, "id_number": id_number})


async def _face(api: Any, verify_id: str, **kw: Any) -> Any:
    """The phone's wx.requestFacialVerify step, against the stub platform."""
    return await api.post("/_stub/face/verify", json={"verify_id": verify_id, **kw})


async def _finish(s: Any, verification_id: int) -> Any:
    return await s.post(f"{START}/{verification_id}/finish")


async def _verify(api: Any, s: Any, who: tuple[str, str], **face: Any) -> Any:
    started = await _start(s, *who)
    assert started.status == 201, started.text
    await _face(api, started.json["verify_id"], **face)
    return await _finish(s, started.json["id"])


async def _user(s: Any) -> User:
    return await User.get(id=s.user_id).select_related("person")


async def test_face_verification_binds_only_after_the_server_asks_wechat(api, fake_wechat):
    s = await api.login("zhang")  # a demo login: the platform knows 张建国's face
    started = await _start(s, *ZHANG)
    assert started.status == 201, started.text
    body = started.json
    assert body["status"] == "pending" and body["verify_id"] and body["method"] == "face"
    assert body["id_number"] == "6210**********0316" and ZHANG[1] not in started.text
    # Before the face step WeChat has no result: nothing is bound, the attempt stays open.
    early = await _finish(s, body["id"])
    assert early.status == 409 and early.json["error"]["code"] == "face_pending"
    assert (await _user(s)).person is None
    step = await _face(api, body["verify_id"])
    assert step.json["verify_ret"] == 10000
    done = await _finish(s, body["id"])
    assert done.status == 200, done.text
    assert done.json["status"] == "passed" and done.json["verify_id"] is None
    me = (await s.get("/api/v1/me")).json
    assert me["identity_level"] == "face" and me["identity"]["id_number"] == "6210**********0316"
    row = await IdentityVerification.get(id=body["id"])
    assert row.verify_ret == 10000 and row.person_id is not None
    assert ZHANG[1] not in row.cert_no_enc and ZHANG[0] not in row.cert_name_enc
    # A retried finish gets the original answer and changes nothing.
    again = await _finish(s, body["id"])
    assert again.status == 200 and again.json == done.json
    # A proven account can't start over for another number (or the same one again).
    other = await _start(s, *LI)
    assert other.status == 409 and other.json["error"]["code"] == "identity_already_bound"


async def test_every_refusal_has_its_own_code_and_binds_nothing(api, fake_wechat, monkeypatch):
    monkeypatch.setattr(get_settings(), "identity_verify_rate_limit", 10)
    cases = {"cancel": "face_cancelled", "timeout": "face_timeout",
             "no_camera": "face_unsupported", "unsupported": "face_unsupported",
             "capture_failed": "face_capture_failed", "system_error": "face_failed"}
    s = await api.login("zhang")
    for result, code in cases.items():
        started = await _start(s, *ZHANG)
        await _face(api, started.json["verify_id"], result=result)
        resp = await _finish(s, started.json["id"])
        assert resp.status == 409, resp.text
        assert resp.json["error"]["code"] == code, (result, resp.text)
        assert resp.json["error"]["message"]  # a clear Chinese message for each
        # Retrying answers the same; the attempt is recorded as failed with its verify_ret.
        assert (await _finish(s, started.json["id"])).json == resp.json
        row = await IdentityVerification.get(id=started.json["id"])
        assert row.status == VerificationStatus.failed and row.outcome == code
        assert row.verify_ret is not None and row.verify_ret != 10000
    assert (await _user(s)).person is None
    assert await Person.all().count() == 0
    assert await IdentityVerification.filter(status="failed").count() == len(cases)


async def test_name_and_face_mismatches_are_one_answer(api, fake_wechat):
    """Issue 13: the flow must not tell whether the name typed for a number is right. A wrong
    name on 张建国's number (10003) and someone else's face (10004) answer alike."""
    zhang = await api.login("zhang")
    wrong_name = await _verify(api, zhang, ("张建民", ZHANG[1]))
    stranger = await api.login("stranger")
    wrong_face = await _verify(api, stranger, ZHANG)
    assert wrong_name.status == wrong_face.status == 409
    assert wrong_name.json == wrong_face.json
    assert wrong_name.json["error"]["code"] == "face_mismatch"
    rets = sorted(r.verify_ret for r in await IdentityVerification.all())
    assert rets == [10003, 10004]  # the platform did tell them apart; we don't


async def test_starting_reveals_nothing_about_who_holds_a_number(api, fake_wechat):
    """Issue 13, the oracle: before the fix a wrong name on a registered number answered 422
    (name mismatch) and the right name 409 (identity_taken). Now both typed bindings answer
    one 410, and starting a face verification answers alike whatever the registry holds."""
    holder = await api.login("zhang")
    await holder.bind_identity(*ZHANG)
    probe = await api.login("probe")
    typed = [await probe.post("/api/v1/me/identity", json={"name": n, "id_number": ZHANG[1]})
             for n in ("张建国", "李四")]
    assert typed[0].status == typed[1].status
    assert typed[0].json == typed[1].json
    fresh_number = "621002199001010025"
    starts = [await _start(probe, n, i) for n, i in
              (("张建国", ZHANG[1]), ("李四", ZHANG[1]), ("孙丽", fresh_number))]
    assert {r.status for r in starts} == {201}
    shapes = [{k: v for k, v in r.json.items()
               if k not in ("id", "verify_id", "id_number", "expires_at", "created_at")}
              for r in starts]
    assert shapes[0] == shapes[1] == shapes[2]


async def test_attempts_are_rate_limited_per_account_and_per_number(api, fake_wechat, monkeypatch):
    s = get_settings()
    monkeypatch.setattr(s, "identity_verify_rate_limit", 3)
    monkeypatch.setattr(s, "identity_verify_id_rate_limit", 4)
    a = await api.login("tries-a")
    for i in range(3):
        base = f"62100219900101{2 * i + 2:03d}"
        assert (await _start(a, "孙丽", base + _id_check_char(base))).status == 201
    over = await _start(a, *LI)
    assert over.status == 429 and over.json["error"]["code"] == "rate_limited"
    assert "retry-after" in over.headers
    # Per number: several accounts probing one number share a budget.
    answers = []
    for code in ("tries-b", "tries-c", "tries-d", "tries-e", "tries-f"):
        answers.append((await _start(await api.login(code), *ZHANG)).status)
    assert answers == [201, 201, 201, 201, 429]


async def test_someone_elses_verification_is_404(api, fake_wechat):
    zhang = await api.login("zhang")
    started = await _start(zhang, *ZHANG)
    vid = started.json["id"]
    other = await api.login("nosy")
    for resp in (await other.get(f"{START}/{vid}"), await _finish(other, vid),
                 await other.get(f"{START}/{vid + 1000}")):
        assert resp.status == 404 and resp.json["error"]["code"] == "not_found", resp.text
    await _face(api, started.json["verify_id"])
    assert (await _finish(other, vid)).status == 404
    assert (await _user(zhang)).person is None  # the other's finish did nothing
    assert (await api.get(f"{START}/{vid}")).status == 401
    assert (await api.post(f"{START}/{vid}/finish")).status == 401
    assert (await api.get("/api/v1/me/identity/notices")).status == 401
    assert (await api.post(START, json={"name": "张建国", "id_number": ZHANG[1]})).status == 401
    mine = await zhang.get(f"{START}/{vid}")
    assert mine.status == 200 and mine.json["status"] == "pending"


async def test_squatter_fails_and_the_real_person_reclaims(api, fake_wechat):
    """Issue 11: a community worker books for 李秀兰, who has no account. A squatter can't
    bind her by typing, nor pass her face check; she signs up, passes, and sees her visit."""
    await catalogue()
    worker = await api.login("demo-worker", Role.community_worker)
    await lives_in_workers_grid(worker.user_id, name=LI[0], id_number=LI[1])  # her neighbour
    slot = (await _open_slots(worker))[0]
    booked = await worker.post("/api/v1/appointments", json={
        "slot_id": slot["id"], "item_code": ITEM,
        "on_behalf_of": {"name": LI[0], "id_number": LI[1]}})
    assert booked.status == 201, booked.text
    squatter = await api.login("squatter")
    typed = await squatter.post("/api/v1/me/identity", json={"name": LI[0], "id_number": LI[1]})
    assert typed.status == 410
    tried = await _verify(api, squatter, LI)  # the squatter's own face is in front of the camera
    assert tried.status == 409 and tried.json["error"]["code"] == "face_mismatch"
    assert (await _user(squatter)).person is None
    assert (await squatter.get("/api/v1/appointments")).json["appointments"] == []
    assert (await squatter.get(f"/api/v1/appointments/{booked.json['id']}")).status == 404
    assert (await squatter.get("/api/v1/me/code")).status in (403, 409)

    li = await api.login("li")  # her own phone: the platform knows her face
    ok = await _verify(api, li, LI)
    assert ok.status == 200, ok.text
    mine = (await li.get("/api/v1/appointments")).json["appointments"]
    assert [a["id"] for a in mine] == [booked.json["id"]]
    assert (await li.get(f"/api/v1/appointments/{booked.json['id']}")).status == 200


async def test_a_typed_in_holder_loses_the_person_is_told_and_it_is_audited(api, fake_wechat):
    """A binding typed in before proofs existed (or a desk mistake) never beats the face: the
    verified account gets the person, the old one loses it and finds a notice."""
    person = await people.upsert_person(name=LI[0], id_number=LI[1])
    squatter = await api.login("old-squatter")
    await User.filter(id=squatter.user_id).update(person_id=person.id)  # legacy typed binding
    # Unproven, the legacy binding shows nothing of hers and gets no 人码.
    code = await squatter.get("/api/v1/me/code")
    assert code.status == 403 and code.json["error"]["code"] == "identity_unverified"

    li = await api.login("li")
    ok = await _verify(api, li, LI)
    assert ok.status == 200, ok.text
    assert (await _user(li)).person.id == person.id
    old = await _user(squatter)
    assert old.person is None and old.identity_level == IdentityLevel.none
    assert (await squatter.get("/api/v1/me")).json["identity"] is None
    notices = (await squatter.get("/api/v1/me/identity/notices")).json["notices"]
    assert len(notices) == 1 and notices[0]["id_number"] == "6210**********0426"
    assert (await li.get("/api/v1/me/identity/notices")).json["notices"] == []
    entry = await AuditLog.get(action="identity.reclaimed")
    assert entry.actor_id == li.user_id and entry.subject_person_id == person.id
    # Told through the one durable path: the queued job (or the sweep) writes the notice once.
    await jobs.run_due()
    from services.verification import sweep_moved_notices

    await sweep_moved_notices()
    sent = await Notification.filter(user_id=squatter.user_id, template="identity_moved")
    assert len(sent) == 1
    row = await IdentityVerification.get(took_from_id=squatter.user_id)
    assert row.took_from_notified_at is not None


async def test_a_worker_typo_in_the_name_is_corrected_by_the_face_verified_name(api, fake_wechat):
    await people.upsert_person(name="李秀蓝", id_number=LI[1])  # the worker mistyped 兰
    li = await api.login("li")
    ok = await _verify(api, li, LI)
    assert ok.status == 200, ok.text
    assert (await li.get("/api/v1/me")).json["identity"]["name"] == "*秀兰"
    assert await Person.all().count() == 1


async def test_desk_verification_binds_a_walk_in_and_never_moves_a_person(api, fake_wechat):
    clerk = await api.login("clerk", Role.staff)
    walk_in = await api.login("walk-in")
    desk = "/api/v1/admin/identity/desk-verifications"
    body = {"user_id": walk_in.user_id, "name": ZHANG[0], "id_number": ZHANG[1]}
    # Only staff; residents and helpers are refused; an unknown account is 404.
    helper = await api.login("helper-x", Role.helper)
    assert (await walk_in.post(desk, json=body)).status == 403
    assert (await helper.post(desk, json=body)).status == 403
    assert (await api.post(desk, json=body)).status == 401
    assert (await clerk.post(desk, json={**body, "user_id": 10**12})).status == 404
    own = await clerk.post(desk, json={**body, "user_id": clerk.user_id})
    assert own.status == 403  # never for one's own account
    assert (await _user(clerk)).person is None
    resp = await clerk.post(desk, json=body)
    assert resp.status == 201, resp.text
    assert resp.json["method"] == "desk" and resp.json["status"] == "passed"
    me = (await walk_in.get("/api/v1/me")).json
    assert me["identity_level"] == "desk" and me["identity"]["name"] == "*建国"
    entry = await AuditLog.get(action="identity.desk_verified")
    assert entry.actor_id == clerk.user_id
    # Desk-verified counts as proven: the 人码 works.
    assert (await walk_in.get("/api/v1/me/code")).status == 200

    # Held by another account: refused, and a wrong name on a known number answers the same.
    second = await api.login("walk-in-2")
    taken = await clerk.post(desk, json={**body, "user_id": second.user_id})
    wrong = await clerk.post(desk, json={**body, "user_id": second.user_id, "name": "张建民"})
    assert taken.status == wrong.status == 409
    assert taken.json == wrong.json and taken.json["error"]["code"] == "identity_desk_conflict"
    assert (await _user(second)).person is None
    assert (await _user(walk_in)).identity_level == IdentityLevel.desk
    assert await AuditLog.filter(action="identity.desk_refused").count() == 2

    # The real person's face still wins over a desk binding (a clerk's mistake is undoable).
    zhang = await api.login("zhang")
    assert (await _verify(api, zhang, ZHANG)).status == 200
    assert (await _user(walk_in)).person is None


async def test_desk_then_face_upgrades_and_face_is_never_downgraded(api, fake_wechat):
    clerk = await api.login("clerk", Role.staff)
    zhang = await api.login("zhang")
    desk = "/api/v1/admin/identity/desk-verifications"
    body = {"user_id": zhang.user_id, "name": ZHANG[0], "id_number": ZHANG[1]}
    assert (await clerk.post(desk, json=body)).status == 201
    assert (await _verify(api, zhang, ZHANG)).status == 200
    assert (await _user(zhang)).identity_level == IdentityLevel.face
    again = await clerk.post(desk, json=body)
    assert again.status == 201
    assert (await _user(zhang)).identity_level == IdentityLevel.face


async def test_what_needs_a_proven_identity(api, fake_wechat):
    person = await people.upsert_person(name=ZHANG[0], id_number=ZHANG[1])
    legacy = await api.login("legacy")
    await User.filter(id=legacy.user_id).update(person_id=person.id)
    helper = await api.login("helper-y", Role.helper)
    grant = {"helper_user_id": helper.user_id, "scopes": ["apply"], "days": 7}
    refused = await legacy.post("/api/v1/proxy-authorizations", json=grant)
    assert refused.status == 403 and refused.json["error"]["code"] == "identity_unverified"
    nobody = await api.login("nobody-z")
    assert (await nobody.post("/api/v1/proxy-authorizations", json=grant)).json["error"][
        "code"] == "identity_required"
    admin = await api.login("boss", Role.admin)
    role = await admin.post(f"/api/v1/admin/users/{legacy.user_id}/roles",
                            json={"role": "enterprise_agent"})
    assert role.status == 403 and role.json["error"]["code"] == "identity_unverified"
    # Once proven, the same calls go through.
    zhang = await api.login("zhang")
    await zhang.bind_identity(*ZHANG)
    ok = await zhang.post("/api/v1/proxy-authorizations", json=grant)
    assert ok.status == 201, ok.text
    role = await admin.post(f"/api/v1/admin/users/{zhang.user_id}/roles",
                            json={"role": "enterprise_agent"})
    assert role.status == 200 and "enterprise_agent" in role.json["roles"]


async def test_a_repeated_start_with_a_key_gets_the_first_answer(api, fake_wechat):
    s = await api.login("zhang")
    key = {"Idempotency-Key": "start-1"}
    first = await s.post(START, json={"name": ZHANG[0], "id_number": ZHANG[1]}, headers=key)
    again = await s.post(START, json={"name": ZHANG[0], "id_number": ZHANG[1]}, headers=key)
    assert first.status == again.status == 201 and again.json == first.json
    assert await IdentityVerification.all().count() == 1
    other = await s.post(START, json={"name": LI[0], "id_number": LI[1]}, headers=key)
    assert other.status == 409 and other.json["error"]["code"] == "idempotency_conflict"


async def test_wechat_down_is_a_fast_503_and_the_attempt_survives(api, fake_wechat, monkeypatch):
    import requests

    s = await api.login("zhang")
    started = await _start(s, *ZHANG)
    await _face(api, started.json["verify_id"])

    def down(*_a: Any, **_k: Any) -> Any:
        raise requests.ConnectionError("wechat unreachable")

    monkeypatch.setattr(fake_wechat, "handle", down)
    finish = await _finish(s, started.json["id"])
    assert finish.status == 503 and finish.json["error"]["code"] == "wechat_unavailable"
    row = await IdentityVerification.get(id=started.json["id"])
    assert row.status == VerificationStatus.pending  # nothing decided: finishing later works
    refused = await _start(s, *ZHANG)
    assert refused.status == 503 and refused.json["error"]["code"] == "wechat_unavailable"
    assert await IdentityVerification.filter(outcome="wechat_unavailable").count() == 1
    monkeypatch.undo()
    done = await _finish(s, started.json["id"])
    assert done.status == 200 and done.json["status"] == "passed", done.text


async def test_policy_matches_need_a_proven_person(api, fake_wechat):
    """Matches reveal a person's facts (age 85 -> 高龄补贴): a typed-in binding sees none."""
    from services import seed

    await seed.run()
    person = await Person.get(id_number_hash=people.id_lookup_hash(ZHANG[1]))
    legacy = await api.login("legacy-policies")
    await User.filter(id=legacy.user_id).update(person_id=person.id)
    mine = await legacy.get("/api/v1/policies/for-me")
    assert mine.status == 200, mine.text
    assert not [m for m in mine.json["policies"] if m["for_me"]]
    await User.filter(id=legacy.user_id).update(person_id=None)
    zhang = await api.login("zhang")
    await zhang.bind_identity(*ZHANG)
    proven = (await zhang.get("/api/v1/policies/for-me")).json["policies"]
    assert [m for m in proven if m["for_me"]]


async def test_polling_a_pending_finish_is_limited(api, fake_wechat):
    s = await api.login("zhang")
    started = await _start(s, *ZHANG)
    answers = [(await _finish(s, started.json["id"])).status for _ in range(31)]
    assert answers[:30] == [409] * 30 and answers[30] == 429
    row = await IdentityVerification.get(id=started.json["id"])
    assert row.status == VerificationStatus.pending  # polling decided nothing


async def test_desk_verification_is_for_whoever_sits_at_a_hall_window(api, fake_wechat):
    """The desk check stands for a clerk comparing the card with the face in front of them:
    a clerk or manager at a hall may do it, an approver or a supervisor (no window) may not."""
    await seed.run()
    walk_in = await api.login("walk-in")
    desk = "/api/v1/admin/identity/desk-verifications"
    body = {"user_id": walk_in.user_id, "name": ZHANG[0], "id_number": ZHANG[1]}
    approver = await api.login("approver", Role.staff, department="市民政局")
    supervisor = await api.login("supervisor", Role.staff, region="621002")
    for office in (approver, supervisor):
        refused = await office.post(desk, json=body)
        assert refused.status == 403, refused.text
    assert (await _user(walk_in)).person is None
    clerk = await api.login("clerk-xf", Role.staff, hall="H-XF-000")
    resp = await clerk.post(desk, json=body)
    assert resp.status == 201, resp.text
    assert (await _user(walk_in)).identity_level == IdentityLevel.desk
