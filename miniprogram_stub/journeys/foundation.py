"""Login, identity binding, profile, and an admin granting a role."""

from __future__ import annotations

from miniprogram_stub.client import Journeys


async def journey_login_bind_identity_profile(j: Journeys) -> None:
    # A newcomer: wx.login -> login -> real name by face verification -> the masked profile.
    me = await j.phone("journey-newcomer")
    profile = await me.call("GET", "/api/v1/me")
    if profile["identity"] is None:
        # Typing a name and number no longer binds: the old endpoint names the new flow.
        gone = await me.call("POST", "/api/v1/me/identity",
                             json={"name": "孙丽", "id_number": "621002199001010025"}, expect=410)
        assert gone["error"]["code"] == "identity_face_required", gone
        # 孙丽 herself is in front of the camera.
        await me.verify_identity("孙丽", "621002199001010025", face="621002199001010025")
        profile = await me.call("GET", "/api/v1/me")
    assert profile["identity"]["id_number"] == "6210**********0025", profile
    assert profile["identity_level"] == "face", profile
    # A wrong check digit is refused with a clear field error before any face step.
    other = await j.phone("journey-typo")
    err = await other.call("POST", "/api/v1/me/identity/verifications",
                           json={"name": "钱多", "id_number": "621002199001010021"}, expect=422)
    assert "id_number" in err["error"]["fields"], err


async def journey_refresh_and_logout(j: Journeys) -> None:
    me = await j.phone("journey-refresh")
    pair = await me.call("POST", "/api/v1/auth/refresh",
                         json={"refresh_token": me.refresh_token}, auth=False)
    me.token, me.refresh_token = pair["access_token"], pair["refresh_token"]
    await me.call("POST", "/api/v1/auth/logout", json={"refresh_token": me.refresh_token})


async def journey_admin_grants_role(j: Journeys) -> None:
    admin = await j.phone("demo-admin")
    newcomer = await j.phone("journey-helper-to-be")
    roles = await admin.call("POST", f"/api/v1/admin/users/{newcomer.user_id}/roles",
                             json={"role": "helper"})
    assert "helper" in roles["roles"], roles
    resident = await j.phone("wang")
    await resident.call("GET", "/api/v1/admin/users", expect=403)


JOURNEYS = [
    journey_login_bind_identity_profile,
    journey_refresh_and_logout,
    journey_admin_grants_role,
]
