"""办事指南 rules: 一件事 material merge, catalogue version and the per-worker search index."""

from __future__ import annotations

import pytest

from models.catalogue import ServiceItem
from models.guide import CatalogueVersion
from models.users import Role
from services import guide, seed
from services.auth import Principal
from services.errors import AppError

STAFF = Principal(user_id=1, roles=frozenset({Role.staff.value}))
RESIDENT = Principal(user_id=2, roles=frozenset({Role.resident.value}))


def _item(code: str, materials: list[dict[str, object]]) -> ServiceItem:
    return ServiceItem(code=code, name=f"事项{code}", materials=materials)


def test_merge_asks_a_shared_material_once_and_names_who_needs_it():
    items = [
        _item("A", [{"name": "居民身份证", "form": "原件", "note": "可用电子证照"},
                    {"name": "户口簿", "form": "原件"}]),
        _item("B", [{"name": "居民身份证", "form": "复印件", "copies": 2}]),
        _item("C", [{"name": " 居民身份证 ", "form": "原件", "note": "可用电子证照"}]),
    ]
    merged = guide.merge_materials(items)
    assert [m.name for m in merged] == ["居民身份证", "户口簿"]
    idcard = merged[0]
    assert [c for c, _ in idcard.needed_by] == ["A", "B", "C"]
    assert idcard.forms == ["原件", "复印件"]
    assert idcard.copies == 2
    # B wants a paper copy, so an electronic licence can't stand in for the whole bundle.
    assert idcard.electronic_ok is False


def test_merge_is_strictest_about_required_and_lenient_names():
    items = [
        _item("A", [{"name": "经营场所使用证明（租赁合同）", "required": False}]),
        _item("B", [{"name": "经营场所使用证明(租赁合同)", "required": True}]),
    ]
    merged = guide.merge_materials(items)
    assert len(merged) == 1  # full-width and half-width brackets are the same material
    assert merged[0].required is True
    assert [c for c, _ in merged[0].needed_by] == ["A", "B"]


async def test_newborn_bundle_asks_the_id_card_once_for_five_items():
    await seed.run()
    detail = await guide.bundle_detail("YJS-07")
    assert len(detail.items) == 5
    idcards = [m for m in detail.materials if m.name == "居民身份证"]
    assert len(idcards) == 1
    assert len(idcards[0].needed_by) == 5
    assert detail.asked_total > len(detail.materials)


async def test_seeding_twice_keeps_the_version_and_edits_move_it():
    await seed.run()
    first = await guide.catalogue_token()
    await seed.run()
    assert await guide.catalogue_token() == first
    await guide.bump_catalogue_version()
    assert await guide.catalogue_token() != first
    assert await CatalogueVersion.all().count() == 1


def _new_item_values(**over: object) -> dict[str, object]:
    values: dict[str, object] = {
        "name": "老年人公交乘车卡办理", "department": "市交通运输局", "kind": "公共服务",
        "subject": "person", "theme": "养老服务", "window_kind": "comprehensive",
        "hall_codes": ["H-QY-000"], "keywords": ["老年卡", "坐公交免费"],
        "materials": [{"name": "居民身份证", "form": "原件", "required": True}],
        "promised_limit_days": 0,
    }
    values.update(over)
    return values


async def test_search_index_follows_staff_edits():
    await seed.run()
    before = [r.hit.code for r in await guide.search(q="老年卡")]
    assert "GJ-900" not in before
    await guide.save_item(actor=STAFF, code="GJ-900", values=_new_item_values(), create=True)
    found = [r.hit.code for r in await guide.search(q="老年卡")]
    assert found[0] == "GJ-900"
    await guide.deactivate_item(actor=STAFF, code="GJ-900")
    assert "GJ-900" not in [r.hit.code for r in await guide.search(q="老年卡")]


async def test_another_worker_notices_a_change_it_did_not_make():
    await seed.run()
    await guide.search(q="身份证")  # this worker's index is now current
    # Another worker writes the item and the version; this process' memory is untouched.
    await ServiceItem.create(code="ZZ-001", **_new_item_values(name="坐公交老年卡"))
    await guide.bump_catalogue_version()
    assert [r.hit.code for r in await guide.search(q="老年卡")][:1] == ["ZZ-001"]


async def test_staff_only_and_references_checked():
    await seed.run()
    with pytest.raises(AppError) as exc:
        await guide.save_item(actor=RESIDENT, code="X-1", values=_new_item_values(), create=True)
    assert exc.value.status == 403
    with pytest.raises(AppError) as exc:
        await guide.save_item(actor=STAFF, code="X-1",
                              values=_new_item_values(hall_codes=["H-NOPE"]), create=True)
    assert exc.value.status == 422 and "hall_codes" in exc.value.fields
    with pytest.raises(AppError) as exc:
        await guide.save_item(actor=STAFF, code="GA-001", values=_new_item_values(), create=True)
    assert exc.value.status == 409
    with pytest.raises(AppError) as exc:
        await guide.save_bundle(actor=STAFF, code="YJS-99", name="测试一件事", subject="person",
                                item_codes=["GA-001", "NOPE-1"])
    assert exc.value.status == 422
    assert not await ServiceItem.exists(code="X-1")


async def test_list_items_filters_and_pages():
    await seed.run()
    page, nxt = await guide.list_items(theme="不动产", limit=2)
    assert [i.code for i in page] == ["BD-001", "BD-002"] and nxt == "BD-002"
    page, nxt = await guide.list_items(theme="不动产", after=nxt, limit=2)
    assert [i.code for i in page] == ["BD-003", "BD-004"] and nxt is None
    gjj, _ = await guide.list_items(hall="H-QY-GJJ", limit=100)
    assert {i.code for i in gjj} >= {"GJ-001", "GJ-002"}
    assert all("H-QY-GJJ" in i.hall_codes for i in gjj)
    ents, _ = await guide.list_items(subject="enterprise", department="市市场监管局", limit=100)
    assert ents and all(i.subject == "enterprise" for i in ents)
