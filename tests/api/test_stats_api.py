"""GET /api/v1/admin/stats over HTTP: staff only, validated range, figures as documented."""

from __future__ import annotations

from typing import Any

from models.cases import Case
from models.ratings import Rating
from models.users import Role
from services import clock


async def test_residents_and_helpers_get_403(api: Any) -> None:
    for code, roles in (("resident-a", ()), ("helper-a", (Role.helper,))):
        s = await api.login(code, *roles)
        resp = await s.get("/api/v1/admin/stats")
        assert resp.status == 403, resp.text
    assert (await api.get("/api/v1/admin/stats")).status == 401


async def test_staff_see_figures(api: Any) -> None:
    staff = await api.login("clerk", Role.staff)
    me = await api.login("resident-a")
    today = clock.today().isoformat()
    c = await Case.create(applicant_id=me.user_id, submitted_by_id=me.user_id,
                          department="市民政局", hall_code="H-XF-000", status="approved")
    await Case.create(applicant_id=me.user_id, submitted_by_id=me.user_id,
                      department="市民政局", hall_code="H-XF-000", status="accepted",
                      accepted_at=clock.now(), due_at=clock.now().replace(year=2020))
    await Rating.create(target_type="case", target_id=c.id, rater_id=me.user_id, level=5,
                        label="非常满意", tags={"tags": []}, department="市民政局",
                        hall_code="H-XF-000")
    resp = await staff.get("/api/v1/admin/stats",
                           params={"from": today, "to": today, "group_by": "department"})
    assert resp.status == 200, resp.text
    body = resp.json
    assert body["from_date"] == today and body["group_by"] == "department"
    [group] = body["groups"]
    assert group["key"] == "市民政局"
    assert group["cases"]["total"] == 2 and group["cases"]["overdue"] == 1
    assert group["cases"]["by_status"]["approved"] == 1
    assert group["ratings"]["satisfaction_rate"] == 1.0
    assert body["total"]["name"] == "合计"


async def test_bad_queries_are_422(api: Any) -> None:
    staff = await api.login("clerk", Role.staff)
    for params in ({"from": "2026-13-01"}, {"to": "yesterday"}, {"group_by": "county"},
                   {"from": "2026-11-02", "to": "2026-11-01"},
                   {"from": "2020-01-01", "to": "2026-11-01"}):
        resp = await staff.get("/api/v1/admin/stats", params=params)
        assert resp.status == 422, (params, resp.text)
        assert resp.json["error"]["code"] == "validation_failed"


async def test_documented_in_openapi(api: Any) -> None:
    spec = (await api.get("/docs/openapi.json")).json
    op = spec["paths"]["/api/v1/admin/stats"]["get"]
    names = {p["name"] for p in op["parameters"]}
    assert {"from", "to", "group_by"} <= names
    assert "403" in op["responses"]
