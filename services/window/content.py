"""The demo items' 综窗 content (seed/window_rules.json): legal basis, conditions, refusal
grounds, FAQ, and the 容缺 (``tolerable``) and 告知承诺 (``commitment``) marks on materials.

Merged after the catalogue: a field is only filled while empty, a material only added when the
item doesn't list it, a mark only set when the material has none, so a staff member's edit of
any of them survives every re-seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.catalogue import ServiceItem

RULES_FILE = Path(__file__).resolve().parents[2] / "seed" / "window_rules.json"
_MARKS = ("tolerable", "commitment")


def load_rules() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    return data


async def seed_window_rules(_data: dict[str, Any]) -> None:
    for spec in load_rules()["items"]:
        item = await ServiceItem.get_or_none(code=spec["code"])
        if item is None:
            continue
        changed: list[str] = []
        if not item.legal_basis.strip() and spec.get("legal_basis"):
            item.legal_basis = spec["legal_basis"]
            changed.append("legal_basis")
        for name in ("conditions", "refusal_cases", "faq"):
            if not getattr(item, name) and spec.get(name):
                setattr(item, name, list(spec[name]))
                changed.append(name)
        materials = [dict(m) for m in item.materials if isinstance(m, dict)]
        by_name = {m.get("name"): m for m in materials}
        touched = False
        for m in spec.get("materials", []):
            have = by_name.get(m["name"])
            if have is None:
                materials.append(dict(m))
                touched = True
                continue
            for mark in _MARKS:
                if mark in m and mark not in have:
                    have[mark] = m[mark]
                    touched = True
        if touched:
            item.materials = materials
            changed.append("materials")
        if changed:
            await item.save(update_fields=[*changed, "updated_at"])
