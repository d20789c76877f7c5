"""办事指南: browsing items and 一件事 bundles, staff edits, and 精准导办 search.

Search runs on ``services.search.SearchIndex``, built lazily once per worker and per catalogue
version. Every staff edit replaces the version token in the database, so every worker on every
machine notices on its next search and rebuilds; nobody has to broadcast anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.catalogue import Bundle, Hall, ServiceItem, ServicePoint, WindowKind
from models.guide import CatalogueVersion
from services import bookingref
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.search import SearchDoc, SearchHit, SearchIndex

WINDOW_LABELS: dict[WindowKind, str] = {
    WindowKind.comprehensive: "综合受理窗口",
    WindowKind.assisted: "帮办代办窗口",
    WindowKind.unresolved: "办不成事反映窗口",
    WindowKind.cross_province: "跨省通办窗口",
    WindowKind.enterprise: "企业开办专区",
    WindowKind.social_security: "社保医保专区",
    WindowKind.real_estate: "不动产登记综合窗口",
}

_VERSION_ID = 1
log = logging.getLogger(__name__)


# --- catalogue version ----------------------------------------------------------------------
async def catalogue_token() -> str:
    row = await CatalogueVersion.get_or_none(id=_VERSION_ID)
    if row is not None:
        return row.token
    try:
        row = await CatalogueVersion.create(id=_VERSION_ID, token=uuid.uuid4().hex)
    except IntegrityError:  # another worker created it first; its token is as good
        row = await CatalogueVersion.get(id=_VERSION_ID)
    return row.token


async def bump_catalogue_version() -> str:
    """Call after any change to halls, items or bundles (inside the same transaction when
    there is one, so a rolled-back edit doesn't invalidate caches for nothing)."""
    token = uuid.uuid4().hex
    if not await CatalogueVersion.filter(id=_VERSION_ID).update(token=token):
        try:
            await CatalogueVersion.create(id=_VERSION_ID, token=token)
        except IntegrityError:
            await CatalogueVersion.filter(id=_VERSION_ID).update(token=token)
    return token


# --- search ---------------------------------------------------------------------------------
@dataclass
class _IndexCache:
    token: str = ""
    index: SearchIndex | None = None
    names: dict[tuple[str, str], ServiceItem | Bundle] = field(default_factory=dict)


_cache = _IndexCache()
_build_lock = asyncio.Lock()


async def _catalogue_docs() -> tuple[list[SearchDoc], dict[tuple[str, str], ServiceItem | Bundle]]:
    items = await ServiceItem.filter(is_active=True).order_by("code")
    bundles = await Bundle.filter(is_active=True).order_by("code")
    names = {it.code: it.name for it in items}
    docs = [
        SearchDoc(type="item", code=it.code, name=it.name,
                  keywords=tuple(str(k) for k in it.keywords), theme=it.theme,
                  department=it.department)
        for it in items
    ]
    # A bundle is found through its members' names too ("水电气过户" -> 二手房一件事).
    docs += [
        SearchDoc(type="bundle", code=b.code, name=b.name,
                  extra=" ".join(names[c] for c in b.item_codes if c in names))
        for b in bundles
    ]
    rows: dict[tuple[str, str], ServiceItem | Bundle] = {("item", it.code): it for it in items}
    rows.update({("bundle", b.code): b for b in bundles})
    return docs, rows


async def search_index() -> tuple[SearchIndex, dict[tuple[str, str], ServiceItem | Bundle]]:
    """This worker's index for the current catalogue version, rebuilt when the version moved."""
    token = await catalogue_token()
    if _cache.index is not None and _cache.token == token:
        return _cache.index, _cache.names
    async with _build_lock:
        if _cache.index is not None and _cache.token == token:
            return _cache.index, _cache.names
        docs, rows = await _catalogue_docs()
        # Building tokenises every doc (and loads jieba's dictionary the first time, ~1 s):
        # off the event loop, so other requests keep flowing meanwhile.
        index = await asyncio.to_thread(SearchIndex.build, docs)
        _cache.token, _cache.index, _cache.names = token, index, rows
        return index, rows


async def warm_quietly() -> None:
    try:
        await search_index()
    except Exception:  # a cold index only costs the first search a second; never fail start
        log.warning("search index warm-up failed", exc_info=True)


def invalidate_local_index() -> None:
    _cache.token, _cache.index, _cache.names = "", None, {}


@dataclass(frozen=True)
class SearchResult:
    hit: SearchHit
    row: ServiceItem | Bundle


async def search(*, q: str, type: str | None = None, limit: int = 10) -> list[SearchResult]:
    index, rows = await search_index()
    out: list[SearchResult] = []
    for hit in index.search(q, limit=limit, type=type):
        row = rows.get((hit.type, hit.code))
        if row is not None:
            out.append(SearchResult(hit=hit, row=row))
    return out


# --- browsing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Facets:
    themes: list[tuple[str, int]]
    departments: list[tuple[str, int]]
    subjects: list[tuple[str, int]]


async def facets() -> Facets:
    rows = await ServiceItem.filter(is_active=True).values_list("theme", "department", "subject")
    def count(pos: int) -> list[tuple[str, int]]:
        c: dict[str, int] = {}
        for r in rows:
            c[r[pos]] = c.get(r[pos], 0) + 1
        return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
    return Facets(themes=count(0), departments=count(1), subjects=count(2))


async def list_items(
    *, theme: str | None = None, subject: str | None = None, department: str | None = None,
    hall: str | None = None, after: str | None = None, limit: int = 20,
) -> tuple[list[ServiceItem], str | None]:
    """Active items by code, keyset-paged (``after`` = last code of the previous page)."""
    qs = ServiceItem.filter(is_active=True).order_by("code")
    if theme:
        qs = qs.filter(theme=theme)
    if subject:
        qs = qs.filter(subject=subject)
    if department:
        qs = qs.filter(department=department)
    if after:
        qs = qs.filter(code__gt=after)
    if hall:
        # hall_codes is a JSON list; JSON containment differs between MySQL and SQLite, and a
        # city catalogue is a few thousand rows, so the hall filter runs here.
        rows = [it for it in await qs if hall in it.hall_codes]
    else:
        rows = list(await qs.limit(limit + 1))
    page = rows[:limit]
    return page, page[-1].code if len(rows) > limit else None


def storable(code: str) -> bool:
    """A path code longer than the column can't name anything; the ORM would refuse to even
    compare it, so it is answered as "not found" before reaching the database."""
    return 0 < len(code) <= 32


async def get_item(code: str) -> ServiceItem:
    item = await ServiceItem.get_or_none(code=code, is_active=True) if storable(code) else None
    if item is None:
        raise not_found("事项")
    return item


async def bundles_with(item_code: str) -> list[Bundle]:
    return [b for b in await Bundle.filter(is_active=True).order_by("code")
            if item_code in b.item_codes]


async def list_bundles(*, subject: str | None = None) -> list[Bundle]:
    qs = Bundle.filter(is_active=True).order_by("code")
    if subject:
        qs = qs.filter(subject=subject)
    return list(await qs)


async def halls_of(item: ServiceItem) -> list[Hall]:
    rows = await Hall.filter(code__in=list(item.hall_codes), is_active=True)
    order = {c: i for i, c in enumerate(item.hall_codes)}
    return sorted(rows, key=lambda h: order.get(h.code, 0))


# --- 一件事: one set of materials -------------------------------------------------------------
@dataclass
class MergedMaterial:
    name: str
    forms: list[str]
    copies: int
    required: bool
    electronic_ok: bool
    source: str
    notes: list[str]
    blank_form_url: str
    sample_url: str
    needed_by: list[tuple[str, str]]  # (item code, item name)


def material_key(name: str) -> str:
    """Same material under trivially different spellings (全角括号, spaces) merges."""
    return "".join(unicodedata.normalize("NFKC", name).split())


def electronic_ok(material: Mapping[str, Any]) -> bool:
    if "electronic_ok" in material:
        return bool(material["electronic_ok"])
    return material.get("form") == "电子证照" or "电子证照" in str(material.get("note", ""))


def merge_materials(items: Sequence[ServiceItem]) -> list[MergedMaterial]:
    """The bundle's 一套材料: each distinct material once, in first-asked order, with the
    items that ask for it. Stricter demand wins: required if any item requires it, the most
    copies any item asks, and an electronic licence only if every asking item accepts one
    (one item wanting the paper original means the resident brings the paper)."""
    merged: dict[str, MergedMaterial] = {}
    for item in items:
        for m in item.materials:
            name = str(m.get("name", "")).strip()
            if not name:
                continue
            key = material_key(name)
            form = str(m.get("form", "") or "")
            copies = int(m.get("copies", 1) or 1)
            note = str(m.get("note", "") or "")
            got = merged.get(key)
            if got is None:
                merged[key] = MergedMaterial(
                    name=name, forms=[form] if form else [], copies=copies,
                    required=bool(m.get("required", True)), electronic_ok=electronic_ok(m),
                    source=str(m.get("source", "") or ""), notes=[note] if note else [],
                    blank_form_url=str(m.get("blank_form_url", "") or ""),
                    sample_url=str(m.get("sample_url", "") or ""),
                    needed_by=[(item.code, item.name)],
                )
                continue
            if form and form not in got.forms:
                got.forms.append(form)
            if note and note not in got.notes:
                got.notes.append(note)
            got.copies = max(got.copies, copies)
            got.required = got.required or bool(m.get("required", True))
            got.electronic_ok = got.electronic_ok and electronic_ok(m)
            got.source = got.source or str(m.get("source", "") or "")
            got.blank_form_url = got.blank_form_url or str(m.get("blank_form_url", "") or "")
            got.sample_url = got.sample_url or str(m.get("sample_url", "") or "")
            if item.code not in (c for c, _ in got.needed_by):
                got.needed_by.append((item.code, item.name))
    return list(merged.values())


@dataclass(frozen=True)
class BundleDetail:
    bundle: Bundle
    items: list[ServiceItem]
    materials: list[MergedMaterial]
    asked_total: int  # materials as the items ask them separately


async def bundle_detail(code: str) -> BundleDetail:
    bundle = await Bundle.get_or_none(code=code, is_active=True) if storable(code) else None
    if bundle is None:
        raise not_found("一件事")
    rows = {it.code: it for it in await ServiceItem.filter(code__in=list(bundle.item_codes),
                                                               is_active=True)}
    items = [rows[c] for c in bundle.item_codes if c in rows]
    return BundleDetail(bundle=bundle, items=items, materials=merge_materials(items),
                        asked_total=sum(len(it.materials) for it in items))


# --- staff edits ----------------------------------------------------------------------------
def _require_staff(actor: Principal) -> None:
    if not actor.is_staff:
        raise forbidden()


CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def check_code(code: str) -> None:
    """Path codes are free text in the URL; refuse shapes no item or bundle can have."""
    if not CODE_RE.fullmatch(code):
        raise AppError(ErrorCode.validation_failed, "编码格式不正确",
                       fields={"code": "应为 1–32 位字母、数字、连字符或下划线"})


async def _check_halls(codes: Sequence[str]) -> None:
    known = {r["code"] for r in await Hall.filter(code__in=list(codes)).values("code")}
    missing = [c for c in codes if c not in known]
    if missing:
        raise AppError(ErrorCode.validation_failed, "办理大厅不存在",
                       fields={"hall_codes": f"不存在的大厅：{'、'.join(missing[:5])}"})


async def save_item(
    *, actor: Principal, code: str, values: Mapping[str, Any], create: bool
) -> ServiceItem:
    """Create (``create``) or fully replace an item's guide. ``values`` are the model's
    fields, already shape-checked by the API."""
    _require_staff(actor)
    if create:
        check_code(code)
    elif not storable(code):
        raise not_found("事项")
    await _check_halls(list(values.get("hall_codes", [])))
    async with in_transaction():
        existing = await ServiceItem.select_for_update().get_or_none(code=code)
        if create and existing is not None:
            raise AppError(ErrorCode.conflict, "事项编码已存在", fields={"code": "已存在"})
        if not create and existing is None:
            raise not_found("事项")
        if existing is None:
            try:
                item = await ServiceItem.create(code=code, **values)
            except IntegrityError as exc:  # created concurrently under the same code
                raise AppError(ErrorCode.conflict, "事项编码已存在",
                               fields={"code": "已存在"}) from exc
        else:
            existing.update_from_dict(dict(values))
            existing.is_active = True
            await existing.save()
            item = existing
        await bump_catalogue_version()
    await bookingref.changed()  # bookings read items through the per-worker copy
    return item


async def deactivate_item(*, actor: Principal, code: str) -> None:
    _require_staff(actor)
    async with in_transaction():
        if not storable(code) or not await ServiceItem.filter(code=code, is_active=True) \
                .update(is_active=False):
            raise not_found("事项")
        await bump_catalogue_version()
    await bookingref.changed()


async def save_bundle(
    *, actor: Principal, code: str, name: str, subject: str, item_codes: Sequence[str],
    description: str = "",
) -> Bundle:
    """Create or replace a bundle; every member must be an active item."""
    _require_staff(actor)
    check_code(code)
    codes = list(dict.fromkeys(item_codes))
    known = {r["code"] for r in await ServiceItem.filter(code__in=codes, is_active=True)
             .values("code")}
    missing = [c for c in codes if c not in known]
    if missing:
        raise AppError(ErrorCode.validation_failed, "一件事包含不存在的事项",
                       fields={"item_codes": f"不存在的事项：{'、'.join(missing[:5])}"})
    async with in_transaction():
        bundle, _ = await Bundle.update_or_create(
            code=code, defaults={"name": name, "subject": subject, "item_codes": codes,
                                 "description": description, "is_active": True})
        await bump_catalogue_version()
    return bundle


async def _content_token() -> str:
    """A token derived from the catalogue's content, so seeding an unchanged catalogue again
    leaves the version (and every worker's index) alone."""
    parts = [
        await Hall.all().order_by("code").values_list("code", "name", "lat", "lng", "hours",
                                                      "is_active"),
        await ServiceItem.all().order_by("code").values_list(
            "code", "name", "keywords", "theme", "department", "hall_codes", "is_active"),
        await Bundle.all().order_by("code").values_list("code", "name", "item_codes",
                                                        "is_active"),
        await ServicePoint.all().order_by("code").values_list("code", "name", "lat", "lng",
                                                              "is_active"),
    ]
    raw = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


async def seed_guide(_data: dict[str, Any]) -> None:
    """Runs after the catalogue seeder: if it changed anything, caches must rebuild."""
    token = await _content_token()
    if await catalogue_token() != token:
        await CatalogueVersion.filter(id=_VERSION_ID).update(token=token)
