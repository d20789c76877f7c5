"""预约服务: a resident books and cancels, a community worker books for an elderly neighbour,
staff check a resident in. Each journey leaves no active booking behind, so they can be rerun."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from miniprogram_stub.client import MiniProgram

HALL = "H-XF-000"
ITEM = "GA-001"  # 居民身份证换领, comprehensive window
ZHANG = {"name": "张建国", "id_number": "621002194103050316"}


async def _clear(mp: MiniProgram) -> None:
    """Cancel what an earlier run left booked (a too-late one stays; the limit allows it)."""
    mine = await mp.call("GET", "/api/v1/appointments", params={"status": "booked"})
    for a in mine["appointments"]:
        await mp.call("POST", f"/api/v1/appointments/{a['id']}/cancel", expect=(200, 409))


async def _open_slot(mp: MiniProgram, *, today_first: bool = False) -> dict[str, Any]:
    # A slot this account already holds (an earlier run's check-in stays checked in) is
    # bookable for others but "already booked" for it: skip those.
    mine = await mp.call("GET", "/api/v1/appointments")
    held = {a["starts_at"] for a in mine["appointments"]
            if a["hall_code"] == HALL and a["status"] != "cancelled"}
    start = 0 if today_first else 1
    for ahead in range(start, 8):
        day = (datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=ahead)).isoformat()
        listing = await mp.call("GET", f"/api/v1/halls/{HALL}/slots",
                                params={"date": day, "item_code": ITEM})
        free = [s for s in listing["slots"] if s["bookable"] and s["starts_at"] not in held]
        if free:
            first: dict[str, Any] = free[0]
            return first
    raise AssertionError("no bookable slot at the demo hall in the next week")


async def journey_resident_books_and_cancels(j: Any) -> None:
    wang = await j.phone("wang")
    await _clear(wang)
    slot = await _open_slot(wang)
    assert slot["starts_at"].endswith("+08:00"), slot
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"slot_id": slot["id"], "item_code": ITEM}
    booked = await wang.call("POST", "/api/v1/appointments", json=body, headers=key, expect=201)
    # A flaky network retries the same request: same appointment, not a second one.
    again = await wang.call("POST", "/api/v1/appointments", json=body, headers=key, expect=201)
    assert again["id"] == booked["id"], (booked, again)
    assert booked["check_in_code"] and booked["person_id_number"].count("*") >= 8
    dup = await wang.call("POST", "/api/v1/appointments", json=body, expect=409)
    assert dup["error"]["code"] == "already_booked", dup
    mine = await wang.call("GET", "/api/v1/appointments")
    assert booked["id"] in [a["id"] for a in mine["appointments"]]
    done = await wang.call("POST", f"/api/v1/appointments/{booked['id']}/cancel")
    assert done["status"] == "cancelled", done


async def journey_worker_books_for_elderly_neighbour(j: Any) -> None:
    worker = await j.phone("demo-worker")
    zhang = await j.phone("zhang")
    await _clear(zhang)
    slot = await _open_slot(worker)
    appt = await worker.call("POST", "/api/v1/appointments", expect=201, json={
        "slot_id": slot["id"], "item_code": ITEM, "on_behalf_of": ZHANG})
    # The worker sees only the masked identity.
    assert appt["person_id_number"] == "6210**********0316", appt
    assert appt["person_name"] == "*建国" and appt["on_behalf"] and appt["green_channel"]
    # 张建国 finds it in his own list.
    mine = await zhang.call("GET", "/api/v1/appointments")
    theirs = [a for a in mine["appointments"] if a["id"] == appt["id"]]
    assert theirs and theirs[0]["booked_by_me"] is False, mine
    # Someone else can't see it.
    wang = await j.phone("wang")
    await wang.call("GET", f"/api/v1/appointments/{appt['id']}", expect=404)
    await worker.call("POST", f"/api/v1/appointments/{appt['id']}/cancel")


async def journey_staff_check_in(j: Any) -> None:
    li = await j.phone("li")
    staff = await j.phone("demo-staff")
    await _clear(li)
    slot = await _open_slot(li, today_first=True)
    appt = await li.call("POST", "/api/v1/appointments", expect=201,
                         json={"slot_id": slot["id"], "item_code": ITEM})
    assert appt["green_channel"], appt  # 李秀兰 is disabled: green channel
    scanned = await staff.call("POST", "/api/v1/appointments/check-in", expect=(200, 409),
                               json={"code": appt["check_in_code"]})
    if "error" in scanned:
        # Outside hall hours the next slot is hours away: the scan is refused, clearly.
        assert scanned["error"]["code"] == "check_in_closed", scanned
        await li.call("POST", f"/api/v1/appointments/{appt['id']}/cancel", expect=(200, 409))
    else:
        assert scanned["status"] == "checked_in", scanned
    hall_code = await staff.call("GET", f"/api/v1/halls/{HALL}/check-in-code")
    assert hall_code["qr_content"].startswith(f"xq-checkin:{HALL}:"), hall_code
    await li.call("GET", f"/api/v1/halls/{HALL}/check-in-code", expect=403)


JOURNEYS = [
    journey_resident_books_and_cancels,
    journey_worker_books_for_elderly_neighbour,
    journey_staff_check_in,
]
