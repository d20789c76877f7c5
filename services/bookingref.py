"""What a booking reads that rarely changes — a hall's slot rule, a service item — kept per
worker, so the rush-hour path doesn't ask the database for it on every request.

Invalidation is by generation, as for staff scope (services/scope.py): every write to a rule or
an item calls ``changed()``, which stores a new generation in Redis and drops this worker's
copies; other workers look at the generation at most once a second, so a rule or item edit
reaches every worker within about a second. What can go wrong in that second is bounded: a
booking checked against a rule or an item a second old (the horizon, the window, the halls
offering the item). Capacity is never cached — it lives in the slot row and only the
conditional UPDATE takes a place.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from models.appointments import SlotRule
from models.catalogue import ServiceItem
from services import cache

_GEN_KEY = "booking:ref:generation"
_GENERATION_TTL = 1.0  # seconds another worker may serve a copy from before a change
_MAX_CACHED = 4096


@dataclass(frozen=True)
class ItemRef:
    code: str
    name: str
    window_kind: str
    hall_codes: tuple[str, ...]


@dataclass(frozen=True)
class RuleRef:
    book_ahead_days: int


_rules: dict[tuple[int, str], RuleRef | None] = {}
_items: dict[str, ItemRef] = {}
_generation: tuple[float, str] = (-1e9, "")


async def _current_generation() -> str:
    global _generation
    now = time.monotonic()
    if now - _generation[0] < _GENERATION_TTL and _generation[1]:
        return _generation[1]
    r = cache.redis()
    gen = await r.get(_GEN_KEY)
    if gen is None:
        # First use, or Redis lost it: a new generation, so nothing cached before survives.
        await r.set(_GEN_KEY, uuid.uuid4().hex, nx=True)
        gen = await r.get(_GEN_KEY) or ""
    gen = gen.decode() if isinstance(gen, bytes) else str(gen)
    if gen != _generation[1]:
        _rules.clear()
        _items.clear()
    _generation = (now, gen)
    return gen


async def changed() -> None:
    """Call after any change to a slot rule or a service item (after its commit)."""
    global _generation
    gen = uuid.uuid4().hex
    await cache.redis().set(_GEN_KEY, gen)
    _rules.clear()
    _items.clear()
    _generation = (time.monotonic(), gen)


def forget() -> None:
    """Drop this worker's copies (tests, between cases)."""
    global _generation
    _rules.clear()
    _items.clear()
    _generation = (-1e9, "")


def _value(kind: object) -> str:
    """An enum member's value, or the string itself (``str()`` of a str-Enum is its name)."""
    return str(getattr(kind, "value", kind))


async def rule(hall_id: int, window_kind: object) -> RuleRef | None:
    """The hall's active rule for the window kind, or None."""
    await _current_generation()
    key = (hall_id, _value(window_kind))
    if key in _rules:
        return _rules[key]
    row = await SlotRule.get_or_none(hall_id=hall_id, window_kind=window_kind, is_active=True)
    ref = RuleRef(book_ahead_days=row.book_ahead_days) if row else None
    if len(_rules) >= _MAX_CACHED:
        _rules.clear()
    _rules[key] = ref
    return ref


async def item(code: str) -> ItemRef | None:
    """The active service item with this code, or None."""
    await _current_generation()
    hit = _items.get(code)
    if hit is not None:
        return hit
    row = await ServiceItem.get_or_none(code=code, is_active=True)
    if row is None:
        # Not kept: seeding creates items without telling anyone, and an unknown code is
        # the rare case anyway.
        return None
    ref = ItemRef(code=row.code, name=row.name, window_kind=_value(row.window_kind),
                  hall_codes=tuple(row.hall_codes or ()))
    if len(_items) >= _MAX_CACHED:
        _items.clear()
    _items[code] = ref
    return ref


def cached_item(code: str) -> ItemRef | None:
    """This worker's copy of an item if it has one (no generation check: for display only,
    e.g. the item's name in an answer)."""
    return _items.get(code)
