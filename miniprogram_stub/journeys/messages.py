"""站内消息: a resident books and finds 预约成功 in the message centre; a helper is offered a case
and accepts it from the notice. Both leave nothing active behind, so they can be rerun."""

from __future__ import annotations

import asyncio
from typing import Any

from miniprogram_stub.client import Journeys, MiniProgram
from miniprogram_stub.journeys.appointments import ITEM, _clear, _open_slot


async def _find(mp: MiniProgram, *, category: str, match: str, template: str | None = None,
                seconds: float = 15) -> dict[str, Any]:
    """The newest message of ``category`` (and ``template``) whose page or action mentions
    ``match``. Notices go out through the outbox after the commit, so give the workers a
    moment."""
    for _ in range(int(seconds / 0.25)):
        page = await mp.call("GET", "/api/v1/me/messages", params={"category": category})
        for m in page["messages"]:
            if template is not None and m["template"] != template:
                continue
            if match in m["page"] or match in m["action_path"]:
                found: dict[str, Any] = m
                return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"no {category} message about {match} within {seconds}s")


async def journey_resident_books_and_sees_the_confirmation(j: Journeys) -> None:
    wang = await j.phone("wang")
    await _clear(wang)
    plan = await wang.call("GET", "/api/v1/me/notifications/consent",
                           params={"action": "booking"})
    assert len(plan["tmpl_ids"]) <= 3, plan
    # The resident declines every template: the confirmation must still reach the centre.
    await wang.call("POST", "/api/v1/me/notifications/consent",
                    json={"results": {t: "reject" for t in plan["tmpl_ids"]}})
    slot = await _open_slot(wang)
    booked = await wang.call("POST", "/api/v1/appointments",
                             json={"slot_id": slot["id"], "item_code": ITEM}, expect=201)
    msg = await _find(wang, category="appointments",
                      match=f"pages/appointments/detail?id={booked['id']}")
    assert msg["template"] == "appointment_booked" and msg["title"] == "预约成功", msg
    assert msg["read"] is False
    before = (await wang.call("GET", "/api/v1/me/messages"))["unread"]
    read = await wang.call("POST", f"/api/v1/me/messages/{msg['id']}/read")
    assert read["read"] is True, read
    after = (await wang.call("GET", "/api/v1/me/messages"))["unread"]
    assert after == before - 1, (before, after)
    # Someone else can't open it.
    zhao = await j.phone("zhao")
    await zhao.call("GET", f"/api/v1/me/messages/{msg['id']}", expect=404)
    await wang.call("POST", f"/api/v1/appointments/{booked['id']}/cancel")


async def journey_helper_accepts_from_the_notice(j: Journeys) -> None:
    li = await j.phone("li")
    # 残疾人证: only demo-helper covers 市残联 at the 西峰区 hall.
    case = await li.call("POST", "/api/v1/cases", expect=201, json={
        "item_code": "CL-001", "hall_code": "H-XF-000", "need_help": True,
        "help_note": "行动不便，请帮忙办理"})
    assert case["helper"] is not None, case
    aid = case["helper"]["assignment_id"]
    helper = await j.phone("demo-helper")
    offer = await _find(helper, category="helper_offers",
                        match=f"/api/v1/helper/assignments/{aid}/accept")
    assert offer["title"] == "新的帮办任务" and "前接单" in offer["body"], offer
    took = await helper.call("POST", offer["action_path"])
    assert took["status"] == "accepted", took
    # The resident is told who took the case (masked phone, in-app contact).
    told = await _find(li, category="cases", match=f"pages/cases/detail?id={case['id']}",
                       template="helper_assigned")
    assert "帮办员" in told["body"], told
    await li.call("POST", f"/api/v1/cases/{case['id']}/transitions",
                  json={"action": "withdraw", "note": "演示结束"})


JOURNEYS = [
    journey_resident_books_and_sees_the_confirmation,
    journey_helper_accepts_from_the_notice,
]
