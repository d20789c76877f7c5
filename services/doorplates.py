"""Door plates: the printable sheet of plate codes, and the 一码通 demo seed (plates, licences,
households)."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from PIL import Image, ImageDraw

from models.codes import DoorPlate, ElectronicLicence, Household
from models.enterprises import Enterprise
from models.users import Person
from services import fonts, licences, people
from services.codes import IssuedQr

log = logging.getLogger(__name__)

COLUMNS = 3
CELL_W = 360
QR_SIZE = 300
LABEL_H = 64
MARGIN = 30
FallbackNote = "CJK font not found: labels show plate codes only"


@dataclass(frozen=True)
class Sheet:
    png: bytes
    cjk_labels: bool  # False only if the bundled CJK font is missing: ASCII plate codes only
    count: int


def render_sheet(entries: list[tuple[DoorPlate, IssuedQr]]) -> Sheet:
    """One PNG: codes in a grid, each with its plate code and (when a CJK font exists) the
    address under it. Without a CJK font the label is the plate code alone, and the sheet's
    footer says so, because a printed sheet of tofu boxes would be worse than no address."""
    font, cjk = fonts.cjk_font(20)
    small, _ = fonts.cjk_font(14)
    if not cjk:
        log.warning("door-plate sheet without CJK font; labels fall back to plate codes")
    rows = max(1, (len(entries) + COLUMNS - 1) // COLUMNS)
    width = MARGIN * 2 + CELL_W * min(COLUMNS, max(1, len(entries)))
    height = MARGIN * 2 + rows * (QR_SIZE + LABEL_H) + 24
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (plate, qr) in enumerate(entries):
        x = MARGIN + (i % COLUMNS) * CELL_W
        y = MARGIN + (i // COLUMNS) * (QR_SIZE + LABEL_H)
        img = Image.open(io.BytesIO(qr.png())).convert("RGB").resize((QR_SIZE, QR_SIZE),
                                                                      Image.Resampling.NEAREST)
        sheet.paste(img, (x + (CELL_W - QR_SIZE) // 2, y))
        draw.text((x + CELL_W // 2, y + QR_SIZE + 4), plate.code, fill="black", font=font,
                  anchor="ma")
        if cjk:
            label = f"{plate.community} {plate.address}"
            draw.text((x + CELL_W // 2, y + QR_SIZE + 32), label, fill="black", font=small,
                      anchor="ma")
    if not cjk:
        draw.text((MARGIN, height - MARGIN), FallbackNote, fill="gray", font=small)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return Sheet(png=buf.getvalue(), cjk_labels=cjk, count=len(entries))


# --- seed ---------------------------------------------------------------------------------

# Demo electronic licences. Numbers are stored masked (see models.codes.ElectronicLicence).
_PERSON_LICENCES: dict[str, list[dict[str, Any]]] = {
    "621021197508120426": [
        {"kind": "disability_cert", "title": "中华人民共和国残疾人证",
         "number_masked": "6210**********042642", "issuer": "庆阳市残疾人联合会",
         "issued_on": "2019-04-12", "valid_until": "2029-04-11"},
    ],
    "621026199206300246": [
        {"kind": "marriage_cert", "title": "结婚证", "number_masked": "J621002-2019-****21",
         "issuer": "西峰区民政局婚姻登记处", "issued_on": "2019-05-20"},
    ],
}
_ENTERPRISE_LICENCES: list[dict[str, Any]] = [
    {"kind": "business_licence", "title": "营业执照", "issuer": "庆阳市市场监督管理局",
     "issued_on": "2021-03-01", "is_public": True},
    {"kind": "tax_credit", "title": "纳税信用等级评价结果", "issuer": "国家税务总局庆阳市税务局",
     "issued_on": "2025-04-30", "is_public": False},
]
_CATERING = {"kind": "food_business_licence", "title": "食品经营许可证",
             "issuer": "西峰区市场监督管理局", "issued_on": "2021-04-15",
             "valid_until": "2026-04-14", "is_public": True}
HOUSEHOLD_PLATE = "D-XF-0001"
_HOUSEHOLDS = (("621002194103050316", "户主"), ("621002200302170132", "孙子"))


def _d(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


async def seed_codes(data: dict[str, Any]) -> None:
    # Only what is missing (see services/seed.py): staff may have corrected a plate's address
    # or re-issued a licence since.
    for p in data.get("doorplates", []):
        await DoorPlate.get_or_create(
            code=p["code"],
            defaults={"county": p["county"], "street": p["street"], "community": p["community"],
                      "address": p["address"], "lat": p["lat"], "lng": p["lng"]})
    for id_number, lics in _PERSON_LICENCES.items():
        person = await Person.get_or_none(id_number_hash=people.id_lookup_hash(id_number))
        if person is None:
            continue
        for lic in lics:
            if await ElectronicLicence.exists(person_id=person.id, kind=lic["kind"]):
                continue
            await licences.grant_licence(
                person_id=person.id, kind=lic["kind"], title=lic["title"],
                number_masked=lic["number_masked"], issuer=lic["issuer"],
                issued_on=date.fromisoformat(lic["issued_on"]),
                valid_until=_d(lic.get("valid_until")))
    for ent in await Enterprise.all():
        extra = [_CATERING] if ent.industry == "catering" else []
        for lic in [*_ENTERPRISE_LICENCES, *extra]:
            if await ElectronicLicence.exists(enterprise_id=ent.id, kind=lic["kind"]):
                continue
            number = ent.uscc if lic["kind"] == "business_licence" else f"{ent.uscc[:8]}****"
            await licences.grant_licence(
                enterprise_id=ent.id, kind=lic["kind"], title=lic["title"],
                number_masked=number, issuer=lic["issuer"],
                issued_on=date.fromisoformat(lic["issued_on"]),
                valid_until=_d(lic.get("valid_until")), is_public=lic["is_public"])
    plate = await DoorPlate.get_or_none(code=HOUSEHOLD_PLATE)
    if plate is None:
        return
    for id_number, relation in _HOUSEHOLDS:
        person = await Person.get_or_none(id_number_hash=people.id_lookup_hash(id_number))
        if person is not None:
            await Household.get_or_create(doorplate=plate, person=person,
                                          defaults={"relation": relation})
