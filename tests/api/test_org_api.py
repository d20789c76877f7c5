"""组织机构 over HTTP: admins manage regions, departments and memberships; nobody else can;
bad input is a clear 4xx; a new position changes what its holder sees at the next refresh."""

from __future__ import annotations

from typing import Any

from models.org import Department, Membership, Region
from models.users import Role, UserRole
from services import seed

A = "/api/v1/admin/org"


async def test_only_admins_manage_the_organisation(api: Any) -> None:
    await seed.run()
    clerk = await api.login("clerk", hall="H-XF-000")
    manager = await api.login("manager", Role.staff, Role.helper)
    resident = await api.login("resident")
    dept = await Department.get(name="市民政局")
    calls = (("GET", f"{A}/regions", None), ("POST", f"{A}/regions",
             {"code": "621002004", "name": "东街街道", "level": "township",
              "parent_code": "621002"}),
             ("PUT", f"{A}/regions/621002", {"name": "西峰"}),
             ("DELETE", f"{A}/regions/621002101201", None),
             ("PUT", f"{A}/halls/H-XF-000/region", {"region_code": "621021"}),
             ("GET", f"{A}/departments", None),
             ("POST", f"{A}/departments", {"region_code": "621002", "name": "西峰区教育局"}),
             ("PUT", f"{A}/departments/{dept.id}", {"name": "市民政"}),
             ("DELETE", f"{A}/departments/{dept.id}", None),
             ("GET", f"{A}/memberships", None),
             ("POST", f"{A}/memberships", {"user_id": resident.user_id, "position": "clerk",
                                           "hall_code": "H-XF-000"}),
             ("PUT", f"{A}/memberships/1", {"hall_code": "H-QC-000"}),
             ("DELETE", f"{A}/memberships/1", None))
    before = (await Region.all().count(), await Department.all().count(),
              await Membership.all().count())
    for method, path, body in calls:
        assert (await api.request(method, path, json=body)).status == 401, path
        for who in (clerk, manager, resident):
            resp = await api.request(method, path, json=body, token=who.token)
            assert resp.status == 403, (path, resp.text)
    assert before == (await Region.all().count(), await Department.all().count(),
                      await Membership.all().count())
    assert (await Region.get(code="621002")).name == "西峰区"


async def test_regions_and_departments(api: Any) -> None:
    await seed.run()
    admin = await api.login("admin", Role.admin)
    made = await admin.post(f"{A}/regions", json={"code": "621002004", "name": "东街街道",
                                                  "level": "township", "parent_code": "621002"})
    assert made.status == 201, made.text
    assert made.json == {"code": "621002004", "name": "东街街道", "level": "township",
                         "parent_code": "621002"}
    kids = (await admin.get(f"{A}/regions", params={"parent": "621002"})).json["regions"]
    assert "621002004" in [r["code"] for r in kids]
    assert {r["parent_code"] for r in kids} == {"621002"}
    parents = {r["code"]: r["parent_code"]
               for r in (await admin.get(f"{A}/regions")).json["regions"]}
    assert parents["621000"] is None and parents["621002"] == "621000"
    assert parents["621002001001"] == "621002001"
    for body, field in (
        ({"code": "621002004", "name": "x", "level": "township", "parent_code": "621002"},
         "code"),  # exists
        ({"code": "62100200", "name": "x", "level": "township", "parent_code": "621002"},
         "code"),  # 8 digits is no level's length
        ({"code": "621021005", "name": "x", "level": "township", "parent_code": "621002"},
         "code"),  # not under its parent
        ({"code": "621002005", "name": "x", "level": "community", "parent_code": "621002"},
         "code"),
        ({"code": "621002005", "name": "x", "level": "township", "parent_code": "621099"},
         "parent_code"),
        ({"code": "621002005", "name": "x", "level": "township"}, "parent_code"),
        ({"code": "abc", "name": "x", "level": "township", "parent_code": "621002"}, "code"),
        ({"code": "621002005", "name": "", "level": "township", "parent_code": "621002"},
         "name"),
        ({"code": "621002005", "name": "  ", "level": "township", "parent_code": "621002"},
         "name"),
        ({"code": "621002005", "name": "x", "level": "planet", "parent_code": "621002"},
         "level"),
    ):
        resp = await admin.post(f"{A}/regions", json=body)
        assert resp.status in (409, 422), (body, resp.text)
        assert field in resp.json["error"]["fields"], (body, resp.text)
    renamed = await admin.put(f"{A}/regions/621002004", json={"name": "东大街街道"})
    assert renamed.status == 200 and renamed.json["name"] == "东大街街道"
    assert (await admin.put(f"{A}/regions/999999", json={"name": "x"})).status == 404
    # A region with something under it can't go; an empty one can.
    busy = await admin.delete(f"{A}/regions/621002")
    assert busy.status == 409 and busy.json["error"]["code"] == "org_in_use"
    assert (await admin.delete(f"{A}/regions/621002004")).status == 200
    assert not await Region.exists(code="621002004")

    dept = await admin.post(f"{A}/departments", json={"region_code": "621002",
                                                      "name": "西峰区教育局"})
    assert dept.status == 201 and dept.json["region_name"] == "西峰区"
    dup = await admin.post(f"{A}/departments", json={"region_code": "621002",
                                                     "name": "西峰区教育局"})
    assert dup.status == 409 and dup.json["error"]["code"] == "org_conflict"
    listed = (await admin.get(f"{A}/departments", params={"region": "621002"})).json
    assert "西峰区教育局" in [d["name"] for d in listed["departments"]]
    renamed_dept = await admin.put(f"{A}/departments/{dept.json['id']}",
                                     json={"name": "西峰区教育和体育局"})
    assert renamed_dept.json["name"] == "西峰区教育和体育局"
    assert (await admin.delete(f"{A}/departments/{dept.json['id']}")).status == 200
    assert (await admin.delete(f"{A}/departments/{dept.json['id']}")).status == 404
    assert (await admin.delete(f"{A}/departments/{2**70}")).status == 404
    moved = await admin.put(f"{A}/halls/H-XF-103/region", json={"region_code": "621002101"})
    assert moved.status == 200 and moved.json == {"hall_code": "H-XF-103",
                                                   "region_code": "621002101"}
    assert (await admin.put(f"{A}/halls/NOPE/region",
                            json={"region_code": "621002"})).status == 404


async def test_memberships_grant_the_role_and_change_the_scope(api: Any) -> None:
    await seed.run()
    admin = await api.login("admin", Role.admin)
    someone = await api.login("someone")
    body = {"user_id": someone.user_id, "position": "clerk", "hall_code": "H-XF-000"}
    made = await admin.post(f"{A}/memberships", json=body)
    assert made.status == 201, made.text
    assert made.json["hall_name"] == "西峰区政务服务中心" and made.json["position"] == "clerk"
    assert await UserRole.exists(user_id=someone.user_id, role=Role.staff)
    again = await admin.post(f"{A}/memberships", json=body)
    assert again.status == 409 and again.json["error"]["code"] == "org_conflict"
    for bad, field in (
        ({"user_id": someone.user_id, "position": "clerk"}, "hall_code"),
        ({"user_id": someone.user_id, "position": "clerk", "hall_code": "H-XF-000",
          "region_code": "621002"}, "hall_code"),  # one unit only
        ({"user_id": someone.user_id, "position": "approver", "hall_code": "H-XF-000"},
         "department_id"),
        ({"user_id": someone.user_id, "position": "supervisor", "region_code": "621099"},
         "region_code"),
        ({"user_id": someone.user_id, "position": "clerk", "hall_code": "NOPE"}, "hall_code"),
        ({"user_id": 2**40, "position": "clerk", "hall_code": "H-QC-000"}, "user_id"),
        ({"user_id": someone.user_id, "position": "mayor", "hall_code": "H-QC-000"},
         "position"),
    ):
        resp = await admin.post(f"{A}/memberships", json=bad)
        assert resp.status == 422, (bad, resp.text)
        assert field in resp.json["error"]["fields"], (bad, resp.text)
    # The role rides in the token: after a refresh the clerk sees their hall.
    refreshed = await api.post("/api/v1/auth/refresh", json={"refresh_token": someone.refresh})
    token = refreshed.json["access_token"]
    mine = await api.get("/api/v1/org/me", token=token)
    assert mine.status == 200, mine.text
    assert mine.json["hall_codes"] == ["H-XF-000"] and mine.json["scanning_hall"] == "H-XF-000"
    assert [m["position"] for m in mine.json["memberships"]] == ["clerk"]
    mid = made.json["id"]
    moved = await admin.put(f"{A}/memberships/{mid}", json={"hall_code": "H-QC-000"})
    assert moved.status == 200 and moved.json["hall_code"] == "H-QC-000"
    assert (await api.get("/api/v1/org/me", token=token)).json["hall_codes"] == ["H-QC-000"]
    wrong_kind = await admin.put(f"{A}/memberships/{mid}", json={"region_code": "621002"})
    assert wrong_kind.status == 422
    listed = await admin.get(f"{A}/memberships", params={"user_id": someone.user_id})
    assert [m["id"] for m in listed.json["memberships"]] == [mid]
    by_hall = await admin.get(f"{A}/memberships", params={"hall_code": "H-QC-000",
                                                          "position": "clerk"})
    assert [m["id"] for m in by_hall.json["memberships"]] == [mid]
    # A department is refused deletion while someone holds a position in it.
    dept = await Department.get(name="市民政局")
    approver = await admin.post(f"{A}/memberships", json={
        "user_id": someone.user_id, "position": "approver", "department_id": dept.id})
    assert approver.status == 201 and approver.json["region_code"] == "621000"
    assert (await admin.delete(f"{A}/departments/{dept.id}")).status == 409
    assert (await admin.delete(f"{A}/memberships/{mid}")).status == 200
    assert (await admin.delete(f"{A}/memberships/{mid}")).status == 404
    mine = (await api.get("/api/v1/org/me", token=token)).json
    assert mine["hall_codes"] == [] and mine["departments"] == ["市民政局"]
    assert (await api.get("/api/v1/org/me")).status == 401
