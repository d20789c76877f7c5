"""综窗 rules below HTTP: the content seeder fills only what is missing, a bundle's 容缺/承诺
marks need every item's agreement, and the notice PDF renders the text it was given."""

from __future__ import annotations

import io

import zxingcpp
from pypdf import PdfReader

from models.cases import Case
from models.catalogue import Bundle, ServiceItem
from services import seed
from services.window import content, notices
from services.window.rules import rules_for


async def _catalogue() -> None:
    data = seed.load_demo_data()
    await seed.seed_people(data)
    await seed.seed_catalogue(data)


async def test_seeder_fills_what_is_empty_and_keeps_staff_edits() -> None:
    await _catalogue()
    item = await ServiceItem.get(code="MZ-004")
    assert item.legal_basis == "" and item.refusal_cases == []
    # A staff member already wrote their own legal basis and marked a material themselves.
    item.legal_basis = "本地依据"
    item.materials = [{"name": "居民身份证", "tolerable": False},
                      {"name": "户口簿", "tolerable": False}]
    await item.save()
    await content.seed_window_rules({})
    await content.seed_window_rules({})  # twice: nothing doubles
    item = await ServiceItem.get(code="MZ-004")
    assert item.legal_basis == "本地依据"
    assert "申请人未满80周岁" in item.refusal_cases and item.faq and item.conditions
    names = [m["name"] for m in item.materials]
    assert names == ["居民身份证", "户口簿", "社会保障卡或银行卡"]
    marks = {m["name"]: m.get("tolerable") for m in item.materials}
    assert marks == {"居民身份证": False, "户口簿": False, "社会保障卡或银行卡": True}


async def test_every_seeded_item_exists_and_its_marked_materials_are_listed() -> None:
    await _catalogue()
    await content.seed_window_rules({})
    for spec in content.load_rules()["items"]:
        item = await ServiceItem.get(code=spec["code"])
        assert item.legal_basis and item.refusal_cases, spec["code"]
        listed = {m["name"] for m in item.materials}
        assert {m["name"] for m in spec["materials"]} <= listed


async def test_a_bundle_tolerates_a_material_only_if_every_item_does() -> None:
    await _catalogue()
    for code, tolerable in (("MZ-004", True), ("CL-002", False)):
        item = await ServiceItem.get(code=code)
        item.materials = [{"name": "居民身份证"},
                          {"name": "户口簿", "tolerable": tolerable},
                          {"name": f"{code}专用表", "tolerable": True}]
        item.refusal_cases = [f"{code}不符"]
        await item.save()
    await Bundle.create(code="T-1", name="测试一件事", subject="person",
                        item_codes=["MZ-004", "CL-002"])
    case = Case(item_code=None, bundle_code="T-1")
    rules = await rules_for(case)
    assert rules.materials == ["居民身份证", "户口簿", "MZ-004专用表", "CL-002专用表"]
    assert rules.tolerable == {"MZ-004专用表", "CL-002专用表"}
    assert rules.refusal_grounds == ["MZ-004不符", "CL-002不符"]


def test_notice_pdf_carries_every_line_and_the_case_qr() -> None:
    data = notices.NoticeData(
        title="一次性告知单", number="GZ-7-1", case_id=7, item="高龄津贴申领", applicant="*建国",
        lines=[(f"材料{i}", f"原因{i}") for i in range(40)],  # long enough for a second page
        legal_basis="《中华人民共和国老年人权益保障法》第三十三条", clerk="工作人员3",
        hall="西峰区政务服务中心", hall_phone="0934-12345", day="2026年12月02日")
    reader = PdfReader(io.BytesIO(notices.render(data)))
    text = "".join(p.extract_text() for p in reader.pages)
    assert len(reader.pages) >= 2
    for i in range(40):
        assert f"材料{i}——原因{i}" in text
    assert "第三十三条" in text and "西峰区政务服务中心" in text
    # The QR code on the first page opens this case.
    image = reader.pages[0].images[0].image
    assert image is not None
    found = zxingcpp.read_barcodes(image.convert("L"))
    assert [b.text for b in found] == [notices.case_qr_content(7)] == ["xqbb://case/7"]
