"""The item's window rules, read from the catalogue: which materials may come later (容缺),
which the applicant may promise instead of supplying (告知承诺制), the refusal grounds and the
legal basis. A bundle merges its items: a material is tolerable (or promisable) only if every
item asking for it says so, because one strict department is enough to need it on the spot."""

from __future__ import annotations

from dataclasses import dataclass

from models.cases import Case
from models.catalogue import Bundle, ServiceItem
from services import cases


@dataclass(frozen=True)
class WindowRules:
    items: list[ServiceItem]
    materials: list[str]
    tolerable: frozenset[str]
    promisable: frozenset[str]
    refusal_grounds: list[str]
    legal_basis: str


async def _items(case: Case) -> list[ServiceItem]:
    if case.item_code:
        item = await ServiceItem.get_or_none(code=case.item_code)
        return [item] if item else []
    bundle = await Bundle.get_or_none(code=case.bundle_code)
    return await cases._items_of_bundle(bundle) if bundle else []


def _flagged(items: list[ServiceItem], flag: str) -> frozenset[str]:
    verdict: dict[str, bool] = {}
    for it in items:
        for m in it.materials:
            name = m.get("name") if isinstance(m, dict) else None
            if isinstance(name, str) and name:
                verdict[name] = verdict.get(name, True) and bool(m.get(flag))
    return frozenset(n for n, ok in verdict.items() if ok)


async def rules_for(case: Case) -> WindowRules:
    items = await _items(case)
    grounds: dict[str, None] = {}
    for it in items:
        for g in it.refusal_cases:
            if isinstance(g, str) and g.strip():
                grounds.setdefault(g.strip(), None)
    basis = "\n".join(f"{it.name}：{it.legal_basis}" if len(items) > 1 else it.legal_basis
                      for it in items if it.legal_basis.strip())
    return WindowRules(items=items, materials=cases._material_names(items),
                       tolerable=_flagged(items, "tolerable"),
                       promisable=_flagged(items, "commitment"),
                       refusal_grounds=list(grounds), legal_basis=basis)
