"""组织机构 and 数据权限: staff see their own hall's work, not another hall's; a supervisor sees
their region; admins manage positions."""

from __future__ import annotations

from miniprogram_stub.client import Journeys


async def journey_staff_see_only_their_halls_work(j: Journeys) -> None:
    zhang = await j.phone("zhang")
    xf = await j.phone("demo-staff")  # 综窗 at 西峰区政务服务中心
    qc = await j.phone("demo-staff2")  # 综窗 at 庆城县政务服务中心
    supervisor = await j.phone("demo-supervisor")  # 督查, 西峰区 and below
    me = await xf.call("GET", "/api/v1/org/me")
    assert me["hall_codes"] == ["H-XF-000"] and me["scanning_hall"] == "H-XF-000", me
    case = await zhang.call("POST", "/api/v1/cases", expect=201,
                            json={"item_code": "MZ-003", "hall_code": "H-XF-000"})
    cid = case["id"]
    # The other hall's clerk: the case doesn't exist for them, and moving it changes nothing.
    await qc.call("GET", f"/api/v1/cases/{cid}", expect=404)
    await qc.call("POST", f"/api/v1/cases/{cid}/transitions", json={"action": "accept"},
                  expect=404)
    listed = await qc.call("GET", "/api/v1/admin/cases", params={"limit": 50})
    assert cid not in [c["id"] for c in listed["cases"]], listed
    seen = await supervisor.call("GET", f"/api/v1/cases/{cid}")
    assert seen["status"] == "submitted", seen
    accepted = await xf.call("POST", f"/api/v1/cases/{cid}/transitions",
                             json={"action": "accept", "note": "材料齐全，予以受理"})
    assert accepted["status"] == "accepted", accepted
    # Its hall's settings are the manager's: the clerk reads them, the other hall can't.
    await xf.call("GET", "/api/v1/halls/H-XF-000/slot-rules")
    await qc.call("GET", "/api/v1/halls/H-XF-000/slot-rules", expect=404)


async def journey_admin_sees_the_organisation(j: Journeys) -> None:
    admin = await j.phone("demo-admin")
    staff = await j.phone("demo-staff")
    regions = await admin.call("GET", "/api/v1/admin/org/regions", params={"parent": "621000"})
    counties = {r["name"] for r in regions["regions"]}
    assert counties >= {"西峰区", "庆城县", "环县", "镇原县"}, regions
    held = await admin.call("GET", "/api/v1/admin/org/memberships",
                            params={"hall_code": "H-XF-000"})
    positions = {(m["user_id"], m["position"]) for m in held["memberships"]}
    assert (staff.user_id, "clerk") in positions, held
    await staff.call("GET", "/api/v1/admin/org/memberships", expect=403)


JOURNEYS = [journey_staff_see_only_their_halls_work, journey_admin_sees_the_organisation]
