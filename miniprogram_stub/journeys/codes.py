"""一码通: show my code, a window clerk scans it, a resident scans a door plate."""

from __future__ import annotations

from miniprogram_stub.client import Journeys


async def journey_show_my_code(j: Journeys) -> None:
    # 张建国 opens 我的码: a signed one-minute code, as JSON and as a picture.
    zhang = await j.phone("zhang")
    code = await zhang.call("GET", "/api/v1/me/code")
    assert code["content"].split("/c/")[1].startswith("P"), code
    assert code["expires_at"] and code["refresh_after_seconds"] > 0, code
    png = await zhang.call("GET", "/api/v1/me/code", params={"format": "png"})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # A newcomer without real-name binding is told to bind first.
    newcomer = await j.phone("journey-codes-newcomer")
    err = await newcomer.call("GET", "/api/v1/me/code", expect=(409, 200))
    assert "error" in err or "content" in err


async def journey_staff_scan(j: Journeys) -> None:
    li = await j.phone("li")
    content = (await li.call("GET", "/api/v1/me/code"))["content"]
    staff = await j.phone("demo-staff")
    seen = await staff.call("POST", "/api/v1/codes/scan",
                            json={"content": content})
    person = seen["person"]
    assert person["identity"]["id_number"].count("*") >= 8, person
    assert any(lic["kind"] == "disability_cert" for lic in person["licences"]), person
    # Another resident's phone gets nothing from it.
    wang = await j.phone("wang")
    await wang.call("POST", "/api/v1/codes/scan", json={"content": content}, expect=403)
    # Li sees who scanned: the window, not the clerk.
    scans = await li.call("GET", "/api/v1/me/code/scans")
    assert scans["scans"][0]["scanner_role"] in ("居民", "窗口工作人员"), scans
    assert all("scanner_id" not in s for s in scans["scans"])


async def journey_resident_scans_door_plate(j: Journeys) -> None:
    staff = await j.phone("demo-staff")
    batch = await staff.call("POST", "/api/v1/codes/doorplates/batch",
                             json={"plate_codes": ["D-XF-0001", "D-XF-0002"]})
    content = next(c["content"] for c in batch["codes"] if c["plate_code"] == "D-XF-0001")
    sheet = await staff.call("GET", "/api/v1/codes/doorplates/sheet",
                             params={"plate_codes": ["D-XF-0001", "D-XF-0002"]})
    assert sheet[:8] == b"\x89PNG\r\n\x1a\n"
    zhao = await j.phone("zhao")
    plate = (await zhao.call("POST", "/api/v1/codes/scan", json={"content": content}))["doorplate"]
    assert plate["community"] == "长庆社区" and plate["nearest_halls"], plate
    assert "households" not in plate
    # The grid's community worker also sees who lives there (masked).
    worker = await j.phone("demo-worker")
    mine = (await worker.call("POST", "/api/v1/codes/scan", json={"content": content}))
    assert mine["doorplate"]["households"], mine


JOURNEYS = [
    journey_show_my_code,
    journey_staff_scan,
    journey_resident_scans_door_plate,
]
