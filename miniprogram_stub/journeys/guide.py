"""A resident's 精准导办 journey: search in their own words, read the guide, find a hall near
them that handles it; the guided Q&A; and the policies that fit them."""

from __future__ import annotations

from miniprogram_stub.client import Journeys

# wx.getLocation({type: "gcj02"}) somewhere in 西峰 downtown.
HERE = {"lat": 35.7100, "lng": 107.6430}


async def journey_search_guide_nearest_hall(j: Journeys) -> None:
    me = await j.phone("wang")
    found = await me.call("GET", "/api/v1/guide/search", params={"q": "身份证丢了怎么补办"})
    top = found["results"][0]
    assert (top["type"], top["code"]) == ("item", "GA-002"), found
    guide = await me.call("GET", f"/api/v1/guide/items/{top['code']}")
    assert guide["materials"] and guide["time_limit_unit"] == "working_days", guide
    near = await me.call("GET", "/api/v1/map/nearby",
                         params={**HERE, "item": top["code"], "radius_km": 20, "limit": 3})
    assert near["places"], near
    nearest = near["places"][0]
    assert nearest["code"] in {h["code"] for h in guide["halls"]}, (nearest, guide["halls"])
    marker = nearest["marker"]
    assert {"id", "latitude", "longitude", "title"} <= marker.keys()
    # Typed in pinyin initials on a small keyboard: still lands on 社保卡.
    sbk = await me.call("GET", "/api/v1/guide/search", params={"q": "sbk", "limit": 3})
    assert "RS-001" in [r["code"] for r in sbk["results"]], sbk


async def journey_guided_questions_to_a_bundle(j: Journeys) -> None:
    me = await j.phone("zhao")
    step = await me.call("POST", "/api/v1/guide/flows/huji/walk", json={"answers": []})
    answers: list[int] = []
    # 居民身份证 -> 新生儿首次登记户口 -> 一次办好
    for label in ("居民身份证", "新生儿首次登记户口", "一次办好(新生儿出生一件事)"):
        answers.append(step["question"]["options"].index(label))
        step = await me.call("POST", "/api/v1/guide/flows/huji/walk", json={"answers": answers})
    assert step["done"] and step["destination"]["code"] == "YJS-07", step
    bundle = await me.call("GET", "/api/v1/guide/bundles/YJS-07")
    idcard = [m for m in bundle["materials"] if m["name"] == "居民身份证"]
    assert len(idcard) == 1 and len(idcard[0]["needed_by"]) == 5, bundle


async def journey_policies_for_me(j: Journeys) -> None:
    elder = await j.phone("zhang")
    mine = await elder.call("GET", "/api/v1/policies/for-me")
    assert "P-001" in [p["code"] for p in mine["policies"]], mine
    agent = await j.phone("demo-agent")
    firm = await agent.call("GET", "/api/v1/policies/for-me")
    assert "P-009" in [p["code"] for p in firm["policies"]], firm
    await elder.call("POST", "/api/v1/admin/policies", json={}, expect=403)


JOURNEYS = [
    journey_search_guide_nearest_hall,
    journey_guided_questions_to_a_bundle,
    journey_policies_for_me,
]
