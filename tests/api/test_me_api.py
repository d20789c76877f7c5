"""Real-name binding, masking, phone, subscriptions, the access log a resident can read."""

import pytest
from cryptography.exceptions import InvalidTag

from models.audit import AuditLog
from models.users import Person, Role, User
from services import pii
from services.people import P_ID, P_NAME

ZHANG = ("张建国", "621002194103050316")


async def test_bind_identity_masks_and_derives_birth_and_age(api):
    s = await api.login("zhang")
    body = await s.bind_identity(*ZHANG)
    ident = body["identity"]
    assert ident["id_number"] == "6210**********0316"
    assert ident["name"] == "*建国"
    assert ident["birth_date"] == "1941-03-05"
    assert ident["age"] >= 85
    assert ident["sex"] == "male"
    me = await s.get("/api/v1/me")
    assert ZHANG[1] not in me.text and ZHANG[0] not in me.text


async def test_identity_is_encrypted_at_rest_with_a_keyed_lookup(api):
    s = await api.login("zhang")
    await s.bind_identity(*ZHANG)
    person = await Person.get()
    for column in (person.id_number_enc, person.name_enc, person.id_number_hash):
        assert ZHANG[1] not in column and ZHANG[0] not in column
    assert pii.decrypt(person.id_number_enc, purpose=P_ID) == ZHANG[1]
    assert pii.decrypt(person.name_enc, purpose=P_NAME) == ZHANG[0]
    # Ciphertext bound to its purpose: an ID ciphertext can't be read as a name.
    with pytest.raises(InvalidTag):
        pii.decrypt(person.id_number_enc, purpose=P_NAME)


@pytest.mark.parametrize(
    ("id_number", "fragment"),
    [
        ("621002194103050317", "校验位"),
        ("62100219410305031", "18"),
        ("621002194113050316", "出生日期"),
        ("62100219410305031Y", "数字或X"),
    ],
)
async def test_bad_id_number_is_a_clear_422(api, id_number, fragment):
    s = await api.login("zhang")
    resp = await s.post("/api/v1/me/identity/verifications",
                        json={"name": "张建国", "id_number": id_number})
    assert resp.status == 422
    err = resp.json["error"]
    assert err["code"] == "validation_failed"
    assert "id_number" in err["fields"]
    assert fragment in err["fields"]["id_number"] or fragment in err["message"], err
    assert await Person.all().count() == 0


async def test_typing_a_name_and_number_no_longer_binds(api):
    # Issue 11: the old endpoint bound whoever typed a valid number. It now only points to
    # the face-verification flow, and nothing is written.
    s = await api.login("someone")
    resp = await s.post("/api/v1/me/identity", json={"name": "张建国", "id_number": ZHANG[1]})
    assert resp.status == 410 and resp.json["error"]["code"] == "identity_face_required"
    assert await Person.all().count() == 0
    assert (await s.get("/api/v1/me")).json["identity"] is None


async def test_bind_phone_through_wechat_code(api, fake_wechat):
    s = await api.login("zhang")
    resp = await s.post("/api/v1/me/phone", json={"code": "phone-code-1"})
    assert resp.status == 200, resp.text
    phone = fake_wechat.phone_for("phone-code-1")
    assert resp.json["phone"] == phone[:3] + "****" + phone[-4:]
    user = await User.get(id=s.user_id)
    assert phone not in (user.phone_enc or "")
    bad = await s.post("/api/v1/me/phone", json={"code": "invalid-x"})
    assert bad.status == 422


async def test_staff_reveal_is_audited_and_visible_to_the_resident(api):
    resident = await api.login("zhang")
    await resident.bind_identity(*ZHANG)
    person = await Person.get()
    staff = await api.login("clerk", Role.staff)

    no_reason = await staff.post(f"/api/v1/admin/persons/{person.id}/reveal", json={"reason": ""})
    assert no_reason.status == 422
    assert await AuditLog.all().count() == 0

    resp = await staff.post(f"/api/v1/admin/persons/{person.id}/reveal",
                            json={"reason": "窗口核验身份"})
    assert resp.status == 200
    assert resp.json["id_number"] == ZHANG[1]
    entry = await AuditLog.get()
    assert entry.actor_id == staff.user_id
    assert entry.subject_person_id == person.id
    assert entry.reason == "窗口核验身份"
    assert "id_number" in entry.fields_read
    assert entry.request_id == resp.headers["x-request-id"]

    log = await resident.get("/api/v1/me/access-log")
    assert log.status == 200
    assert [e["reason"] for e in log.json["entries"]] == ["窗口核验身份"]


async def test_residents_and_helpers_cannot_reveal(api):
    from services import people

    person = await people.upsert_person(name="张建国", id_number=ZHANG[1])
    for code, roles in (("nosy", ()), ("helper", (Role.helper,))):
        s = await api.login(code, *roles)
        resp = await s.post(f"/api/v1/admin/persons/{person.id}/reveal",
                            json={"reason": "想看看"})
        assert resp.status == 403
    assert await AuditLog.all().count() == 0


async def test_subscriptions_balance_and_mute(api):
    s = await api.login("alice")
    for _ in range(2):
        resp = await s.post("/api/v1/me/subscriptions",
                            json={"template": "policy_published", "accepted": True})
    assert resp.json["balance"] == 2
    muted = await s.put("/api/v1/me/subscriptions",
                        json={"template": "policy_published", "muted": True})
    assert muted.json["muted"] is True and muted.json["balance"] == 2
