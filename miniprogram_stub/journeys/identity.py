"""实名 + 实人 (issue 11): a squatter can't become a neighbour, and the real person always wins.

周桂英, 78, has no smartphone account; the community worker books her a visit. A squatter
types her name and ID number (refused), then tries the face check with his own face (fails).
A window clerk is fooled by a forged card and desk-binds him; then 周桂英's granddaughter sets
up a phone for her, she passes the face check herself, takes her identity back and sees her
visit, and the squatter's account finds a notice. Rerunnable: each step accepts the state an
earlier run left.
"""

from __future__ import annotations

from miniprogram_stub.client import Journeys
from miniprogram_stub.journeys.appointments import ITEM, _open_slot

ZHOU = ("周桂英", "621002194807150227")
MASKED = "6210**********0227"


async def journey_squatter_fails_and_the_real_person_reclaims(j: Journeys) -> None:
    worker = await j.phone("demo-worker")
    mine = await worker.call("GET", "/api/v1/appointments", params={"status": "booked"})
    visit = next((a for a in mine["appointments"] if a["person_id_number"] == MASKED), None)
    if visit is None:
        slot = await _open_slot(worker)
        visit = await worker.call("POST", "/api/v1/appointments", json={
            "slot_id": slot["id"], "item_code": ITEM,
            "on_behalf_of": {"name": ZHOU[0], "id_number": ZHOU[1]}}, expect=201)

    squatter = await j.phone("journey-squatter")
    typed = await squatter.call("POST", "/api/v1/me/identity",
                                json={"name": ZHOU[0], "id_number": ZHOU[1]}, expect=410)
    assert typed["error"]["code"] == "identity_face_required", typed
    me = await squatter.call("GET", "/api/v1/me")
    if me["identity"] is None:
        # His own face is in front of the camera: WeChat says it isn't hers.
        refused = await squatter.verify_identity(*ZHOU, expect=409)
        assert refused["error"]["code"] == "face_mismatch", refused
        # Nor does a cancelled check bind anything.
        cancelled = await squatter.verify_identity(*ZHOU, result="cancel", expect=409)
        assert cancelled["error"]["code"] == "face_cancelled", cancelled
    seen = await squatter.call("GET", "/api/v1/appointments")
    assert visit["id"] not in [a["id"] for a in seen["appointments"]], seen
    await squatter.call("GET", f"/api/v1/appointments/{visit['id']}", expect=404)

    # A clerk is shown a forged card and binds him at the desk (the worst case for a desk).
    clerk = await j.phone("demo-staff")
    await clerk.call("POST", "/api/v1/admin/identity/desk-verifications", json={
        "user_id": squatter.user_id, "name": ZHOU[0], "id_number": ZHOU[1]},
        expect=(201, 409))  # 409 on a rerun: she holds it already

    # 周桂英 herself, on her new phone, in front of its camera.
    zhou = await j.phone("journey-zhou")
    profile = await zhou.call("GET", "/api/v1/me")
    if profile["identity"] is None:
        done = await zhou.verify_identity(*ZHOU, face=ZHOU[1])
        assert done["status"] == "passed", done
        profile = await zhou.call("GET", "/api/v1/me")
    assert profile["identity_level"] == "face" and profile["identity"]["id_number"] == MASKED
    hers = await zhou.call("GET", "/api/v1/appointments")
    assert visit["id"] in [a["id"] for a in hers["appointments"]], hers
    code = await zhou.call("GET", "/api/v1/me/code")
    assert code["content"], code

    # The squatter lost what the desk gave him, and is told.
    after = await squatter.call("GET", "/api/v1/me")
    assert after["identity"] is None, after
    notices = await squatter.call("GET", "/api/v1/me/identity/notices")
    assert any(n["id_number"] == MASKED for n in notices["notices"]), notices
    await squatter.call("GET", "/api/v1/me/code", expect=409)  # no identity, no 人码


JOURNEYS = [journey_squatter_fails_and_the_real_person_reclaims]
