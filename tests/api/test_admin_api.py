"""Role administration and the audit log: only admins grant; staff list users, masked."""

from models.users import Role, UserRole
from services import people


async def test_resident_calling_admin_routes_gets_403(api):
    s = await api.login("alice")
    other = await api.login("bob")
    for method, path, body in [
        ("GET", "/api/v1/admin/users", None),
        ("POST", f"/api/v1/admin/users/{other.user_id}/roles", {"role": "admin"}),
        ("POST", f"/api/v1/admin/users/{s.user_id}/roles", {"role": "admin"}),
        ("DELETE", f"/api/v1/admin/users/{other.user_id}/roles/helper", None),
        ("GET", "/api/v1/admin/audit", None),
    ]:
        resp = await s.api.request(method, path, token=s.token, json=body)
        assert resp.status == 403, (method, path, resp.text)
        assert resp.json["error"]["code"] == "forbidden"
    assert await UserRole.filter(user_id=s.user_id).count() == 0


async def test_staff_is_not_admin_for_grants(api):
    staff = await api.login("clerk", Role.staff)
    target = await api.login("bob")
    resp = await staff.post(f"/api/v1/admin/users/{target.user_id}/roles", json={"role": "helper"})
    assert resp.status == 403
    listing = await staff.get("/api/v1/admin/users")
    assert listing.status == 200


async def test_admin_grants_and_revokes(api):
    admin = await api.login("root", Role.admin)
    bob = await api.login("bob")
    resp = await admin.post(f"/api/v1/admin/users/{bob.user_id}/roles", json={"role": "helper"})
    assert resp.status == 200 and resp.json["roles"] == ["helper", "resident"]
    again = await admin.post(f"/api/v1/admin/users/{bob.user_id}/roles", json={"role": "helper"})
    assert again.status == 200 and again.json["roles"] == ["helper", "resident"]
    gone = await admin.delete(f"/api/v1/admin/users/{bob.user_id}/roles/helper")
    assert gone.status == 200 and gone.json["roles"] == ["resident"]


async def test_grant_validation_and_missing_user(api):
    admin = await api.login("root", Role.admin)
    bad = await admin.post(f"/api/v1/admin/users/{admin.user_id}/roles", json={"role": "king"})
    assert bad.status == 422 and "role" in bad.json["error"]["fields"]
    resident = await admin.post(f"/api/v1/admin/users/{admin.user_id}/roles",
                                json={"role": "resident"})
    assert resident.status == 422
    missing = await admin.post("/api/v1/admin/users/999999/roles", json={"role": "helper"})
    assert missing.status == 404


async def test_admin_cannot_remove_own_admin(api):
    admin = await api.login("root", Role.admin)
    resp = await admin.delete(f"/api/v1/admin/users/{admin.user_id}/roles/admin")
    assert resp.status == 409


async def test_user_list_is_masked_and_paginated(api):
    staff = await api.login("clerk", Role.staff)
    z = await api.login("zhang")
    await z.bind_identity("张建国", "621002194103050316")
    for i in range(3):
        await api.login(f"u{i}")
    first = await staff.get("/api/v1/admin/users", params={"limit": 2})
    assert first.status == 200 and len(first.json["users"]) == 2
    assert "621002194103050316" not in first.text
    cursor = first.json["next_cursor"]
    second = await staff.get("/api/v1/admin/users", params={"limit": 10, "cursor": cursor})
    ids = [u["user_id"] for u in first.json["users"] + second.json["users"]]
    assert len(ids) == len(set(ids)) == 5
    zhang = next(u for u in first.json["users"] + second.json["users"]
                 if u["user_id"] == z.user_id)
    assert zhang["identity"]["id_number"] == "6210**********0316"
    helpers = await staff.get("/api/v1/admin/users", params={"role": "staff"})
    assert [u["user_id"] for u in helpers.json["users"]] == [staff.user_id]


async def test_audit_log_is_admin_only_and_filters(api):
    person = await people.upsert_person(name="张建国", id_number="621002194103050316")
    staff = await api.login("clerk", Role.staff)
    admin = await api.login("root", Role.admin)
    await staff.post(f"/api/v1/admin/persons/{person.id}/reveal", json={"reason": "核验身份信息"})
    assert (await staff.get("/api/v1/admin/audit")).status == 403
    resp = await admin.get("/api/v1/admin/audit", params={"person_id": person.id})
    assert resp.status == 200
    [entry] = resp.json["entries"]
    assert entry["actor_id"] == staff.user_id and entry["action"] == "person.reveal"
    assert entry["at"].endswith("+08:00")
    none = await admin.get("/api/v1/admin/audit", params={"person_id": person.id + 1})
    assert none.json["entries"] == []


async def test_reveal_unknown_person_is_404(api):
    staff = await api.login("clerk", Role.staff)
    resp = await staff.post("/api/v1/admin/persons/424242/reveal", json={"reason": "核验身份"})
    assert resp.status == 404
