"""Rebuild ``services/fonts/NotoSansSC-GB2312.otf``: the Simplified Chinese face of Noto Sans
CJK (SIL Open Font License 1.1), cut down to what we print.

Kept: printable ASCII, every character of GB2312 (6 763 hanzi plus its punctuation, full-width
forms and symbols) and every hanzi of GBK's CJK Unified Ideographs block, so uncommon
characters in names and addresses (喆, 堃, 玥 …) still print. The whole TTC is ~19 MB; the cut
is small enough to keep in the repository, and the service then needs no system font.

Source: Debian's ``fonts-noto-cjk`` package (``NotoSansCJK-Regular.ttc``). Needs ``fonttools``
(a tool for this script only, not a dependency of the service)::

    apt-get download fonts-noto-cjk && dpkg-deb -x fonts-noto-cjk_*.deb x
    python -m venv /tmp/ft && /tmp/ft/bin/pip install fonttools
    /tmp/ft/bin/python scripts/make_cjk_font.py \\
        x/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection

OUT = Path(__file__).resolve().parent.parent / "services" / "fonts" / "NotoSansSC-GB2312.otf"


def gb2312_chars() -> set[str]:
    chars: set[str] = set()
    for hi in range(0xA1, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.add(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return chars


def gbk_hanzi() -> set[str]:
    out: set[str] = set()
    for cp in range(0x4E00, 0x9FA6):
        ch = chr(cp)
        try:
            ch.encode("gbk")
        except UnicodeEncodeError:
            continue
        out.add(ch)
    return out


def main(ttc_path: str) -> None:
    collection = TTCollection(ttc_path)
    sc = next(f for f in collection.fonts
              if "Noto Sans CJK SC" in str(f["name"].getDebugName(1)))
    chars = {chr(c) for c in range(0x20, 0x7F)} | gb2312_chars() | gbk_hanzi() | set("·—…“”‘’")
    options = subset.Options()
    options.layout_features = []  # Pillow lays text out without shaping: GSUB/GPOS unused
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[ord(c) for c in chars])
    subsetter.subset(sc)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sc.save(OUT)
    print(f"{OUT}: {len(chars)} characters, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
