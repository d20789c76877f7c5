"""The bundled CJK font: present, loaded by default, draws real glyphs (not the missing-glyph
box) for what we print, and a door-plate sheet's labels come out in Chinese."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont

from models.codes import DoorPlate
from services import codes, doorplates, fonts
from services.settings import get_settings

LABEL = "长庆社区 西峰区长庆路99号3单元"
# Outside GB2312 but common in names and addresses: GBK's hanzi are in the subset too.
RARE_NAME_CHARACTERS = "喆堃玥珺昇頔"


def test_bundled_font_ships_with_its_licence() -> None:
    assert fonts.BUNDLED_CJK.is_file()
    assert fonts.BUNDLED_CJK.stat().st_size > 1_000_000  # a real font, not an LFS pointer
    assert "SIL Open Font License" in fonts.BUNDLED_CJK.with_name("OFL.txt").read_text()


def test_default_font_is_the_bundled_cjk_face(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "cjk_font_path", "")
    monkeypatch.setattr(fonts, "_SYSTEM_CJK", ())  # no help from the machine
    font, cjk = fonts.cjk_font(20)
    assert cjk and isinstance(font, ImageFont.FreeTypeFont)
    assert font.getname()[0] == "Noto Sans CJK SC"


def test_labels_draw_real_glyphs_not_tofu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "_SYSTEM_CJK", ())
    font, _ = fonts.cjk_font(20)
    assert fonts.missing_glyphs(font, LABEL + RARE_NAME_CHARACTERS + "D-XF-0001") == set()
    # Every GB2312 hanzi (level 1 and 2 rows: 0xB0A1..0xF7FE).
    gb2312 = {bytes([hi, lo]).decode("gb2312") for hi in range(0xB0, 0xF8)
              for lo in range(0xA1, 0xFF) if (hi, lo) < (0xD7, 0xFA) or hi > 0xD7}
    assert len(gb2312) == 6763
    assert fonts.missing_glyphs(font, "".join(sorted(gb2312))) == set()
    # The check can fail: a Latin font has no hanzi.
    latin = ImageFont.load_default()
    assert fonts.missing_glyphs(latin, "长庆") == {"长", "庆"}


def _address_line(png: bytes) -> Image.Image:
    """The strip of the first cell where the address line goes (under the plate code)."""
    top = doorplates.MARGIN + doorplates.QR_SIZE + 32
    return Image.open(io.BytesIO(png)).convert("L").crop(
        (doorplates.MARGIN, top, doorplates.MARGIN + doorplates.CELL_W, top + 20))


def test_sheet_labels_are_chinese(monkeypatch: pytest.MonkeyPatch) -> None:
    plate = DoorPlate(code="D-XF-0009", county="西峰区", street="北街街道", community="长庆社区",
                      address="长庆路99号", lat=35.7, lng=107.6)
    qr = codes.IssuedQr(token="L" + "z" * 20, content=codes.code_url("L" + "z" * 20),
                        expires_at=None)
    monkeypatch.setattr(fonts, "_SYSTEM_CJK", ())
    sheet = doorplates.render_sheet([(plate, qr)])
    assert sheet.cjk_labels
    small, _ = fonts.cjk_font(14)
    assert fonts.missing_glyphs(small, f"{plate.community} {plate.address}") == set()
    # The address line is really drawn: ink where it goes, the same ink as the text drawn
    # alone with the bundled font.
    line = _address_line(sheet.png)
    assert ImageChops.invert(line).getbbox() is not None
    alone = Image.new("L", line.size, 255)
    ImageDraw.Draw(alone).text((doorplates.CELL_W // 2, 0), f"{plate.community} {plate.address}",
                               fill=0, font=small, anchor="ma")
    assert ImageChops.difference(line, alone).getbbox() is None

    # Without a CJK font (the old behaviour on this machine) that line stays blank.
    monkeypatch.setattr(fonts, "_candidates", lambda: ())
    fallback = doorplates.render_sheet([(plate, qr)])
    assert not fallback.cjk_labels
    assert ImageChops.invert(_address_line(fallback.png)).getbbox() is None
