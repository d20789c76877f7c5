"""The one place that finds a font for anything we print (door-plate sheets today, the
一次性告知单 PDF tomorrow).

The project ships its own CJK font, so Chinese prints on any machine, with or without system
fonts: ``NotoSansSC-GB2312.otf`` beside this file, the Simplified Chinese face of Noto Sans CJK
(SIL Open Font License 1.1, ``OFL.txt``) cut to printable ASCII, all of GB2312 and every hanzi
of GBK (21 681 characters, 6 MB; ``scripts/make_cjk_font.py`` rebuilds it). A site that wants
another face sets ``XQ_CJK_FONT_PATH``; a path that doesn't load is logged and skipped.

``cjk_font(size)`` answers the font and whether it is really CJK-capable: only if the bundled
file were missing from an install (and no system font found) does it fall back, and callers
print ASCII rather than tofu boxes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from services.settings import get_settings

log = logging.getLogger(__name__)

BUNDLED_CJK = Path(__file__).with_name("NotoSansSC-GB2312.otf")
# Only if the bundled file is absent: where Debian/Ubuntu/CentOS keep a CJK font.
_SYSTEM_CJK = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
_LATIN = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",)
# A code point no font maps: what the font draws for it is its "missing glyph" box.
_UNMAPPED = "\U0010fffd"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _candidates() -> tuple[str, ...]:
    configured = get_settings().cjk_font_path
    return ((configured,) if configured else ()) + (str(BUNDLED_CJK),) + _SYSTEM_CJK


def cjk_font(size: int) -> tuple[Font, bool]:
    """A font of ``size`` pixels and True when it draws Chinese; (a Latin font, False) only
    when no CJK font could be loaded at all. FreeType opens the face lazily (~0.3 ms), so
    there is nothing to cache."""
    for path in _candidates():
        if not Path(path).is_file():
            continue
        try:
            return ImageFont.truetype(path, size), True
        except OSError:
            log.warning("font file does not load, skipped", extra={"path": path})
    log.warning("no CJK font found; printed labels fall back to ASCII")
    for path in _LATIN:
        if Path(path).is_file():
            return ImageFont.truetype(path, size), False
    return ImageFont.load_default(), False


def _glyph(font: Font, ch: str) -> bytes:
    img = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(img).text((8, 8), ch, fill=255, font=font)
    return img.tobytes()


def missing_glyphs(font: Font, text: str) -> set[str]:
    """The characters of ``text`` that ``font`` would draw as its missing-glyph box (tofu).
    Whitespace is never missing."""
    tofu = _glyph(font, _UNMAPPED)
    return {ch for ch in set(text) if not ch.isspace() and _glyph(font, ch) == tofu}
