"""政务地图: halls, their windows and opening hours ("open now" on the holiday calendar), 24 h
self-service points, and "near me" from a Redis GEO index with a database fallback.

Coordinates are GCJ-02 everywhere (what the mini program's ``<map>`` and ``wx.getLocation
({type: 'gcj02'})`` use). Redis GEO does its distance maths on a sphere as if the pairs were
WGS-84; GCJ-02's offset from WGS-84 is a smooth shift of a few hundred metres that is almost the
same for two points in one city, so it cancels in the distance. Distances are right to metres
within a city; absolute positions are never converted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from tortoise.transactions import in_transaction

from models.catalogue import Hall, HallLevel, ServiceItem, ServicePoint, Window
from services import cache, clock, geo, guide
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.scope import hall_in_scope
from services.workcalendar import OpeningHours

log = logging.getLogger(__name__)

GEO_KEY = "map:geo"
GEO_TOKEN_KEY = "map:geo:token"  # noqa: S105 - a Redis key, not a secret


class PlaceKind(StrEnum):
    """``hall`` / ``self_service``, or a window kind (halls having that window)."""

    hall = "hall"
    self_service = "self_service"
    comprehensive = "comprehensive"
    assisted = "assisted"
    unresolved = "unresolved"
    cross_province = "cross_province"
    enterprise = "enterprise"
    social_security = "social_security"
    real_estate = "real_estate"


_WEEKDAY_NAMES = "一二三四五六日"


@dataclass
class Place:
    type: Literal["hall", "self_service_point"]
    id: int
    code: str
    name: str
    lat: float
    lng: float
    county: str
    level: str | None
    address: str
    phone: str
    hours: str
    open_now: bool | None
    next_open: datetime | None
    self_service_24h: bool
    windows: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    distance_m: float | None = None

    @property
    def marker_id(self) -> int:
        # <map> markers need one numeric id space; halls and points come from two tables.
        return self.id * 2 + (0 if self.type == "hall" else 1)


def describe_hours(raw: Any) -> str:
    try:
        hours = OpeningHours.from_seed(raw)
    except (ValueError, TypeError):
        return ""
    if hours.always_open:
        return "24小时"
    days = sorted(hours.weekdays)
    if days and days == list(range(days[0], days[-1] + 1)) and len(days) > 1:
        day_text = f"周{_WEEKDAY_NAMES[days[0] - 1]}至周{_WEEKDAY_NAMES[days[-1] - 1]}"
    else:
        day_text = "、".join(f"周{_WEEKDAY_NAMES[d - 1]}" for d in days)
    periods = " ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in hours.periods)
    return f"{day_text} {periods}（法定节假日除外，调休上班日照常）"


def open_state(raw: Any, at: datetime) -> tuple[bool | None, datetime | None]:
    """(open now, next opening); (None, None) when the stored hours can't be read."""
    try:
        hours = OpeningHours.from_seed(raw)
    except (ValueError, TypeError):
        log.warning("unreadable opening hours", extra={"hours": str(raw)[:100]})
        return None, None
    is_open = hours.is_open(at)
    return is_open, None if is_open else hours.next_open(at)


def _hall_place(h: Hall, windows: Sequence[Window], at: datetime) -> Place:
    is_open, nxt = open_state(h.hours, at)
    return Place(type="hall", id=h.id, code=h.code, name=h.name, lat=h.lat, lng=h.lng,
                 county=h.county, level=str(h.level), address=h.address, phone=h.phone,
                 hours=describe_hours(h.hours), open_now=is_open, next_open=nxt,
                 self_service_24h=h.self_service_24h,
                 windows=[(str(w.kind), w.name) for w in windows])


def _point_place(p: ServicePoint, at: datetime) -> Place:
    is_open, nxt = open_state(p.hours, at)
    return Place(type="self_service_point", id=p.id, code=p.code, name=p.name, lat=p.lat,
                 lng=p.lng, county=p.county, level=None, address="", phone="",
                 hours=describe_hours(p.hours), open_now=is_open, next_open=nxt,
                 self_service_24h=True)


async def _windows_by_hall(hall_ids: Sequence[int]) -> dict[int, list[Window]]:
    out: dict[int, list[Window]] = {}
    for w in await Window.filter(hall_id__in=list(hall_ids)).order_by("id"):
        out.setdefault(w.hall_id, []).append(w)  # type: ignore[attr-defined]
    return out


async def _item_halls(item_code: str) -> set[str]:
    item = (await ServiceItem.get_or_none(code=item_code, is_active=True)
            if guide.storable(item_code) else None)
    if item is None:
        raise not_found("事项")
    return {str(c) for c in item.hall_codes}


def _hall_matches(place: Place, kind: PlaceKind | None) -> bool:
    if kind is None or kind is PlaceKind.hall:
        return True
    if kind is PlaceKind.self_service:
        return place.self_service_24h
    return any(k == kind.value for k, _ in place.windows)


async def list_places(
    *, level: HallLevel | None = None, county: str | None = None,
    kind: PlaceKind | None = None, item_code: str | None = None,
) -> list[Place]:
    """Halls (and, unless filtered to halls or an item, self-service points), city first."""
    at = clock.now()
    allowed = await _item_halls(item_code) if item_code else None
    qs = Hall.filter(is_active=True)
    if level:
        qs = qs.filter(level=level)
    if county:
        qs = qs.filter(county=county)
    halls = list(await qs)
    windows = await _windows_by_hall([h.id for h in halls])
    order = {HallLevel.city: 0, HallLevel.county: 1, HallLevel.township: 2}
    halls.sort(key=lambda h: (order.get(h.level, 3), h.code))
    places = [_hall_place(h, windows.get(h.id, []), at) for h in halls]
    places = [p for p in places if _hall_matches(p, kind)
              and (allowed is None or p.code in allowed)]
    if allowed is None and level is None and kind in (None, PlaceKind.self_service):
        pq = ServicePoint.filter(is_active=True).order_by("code")
        if county:
            pq = pq.filter(county=county)
        places += [_point_place(p, at) for p in await pq]
    return places


async def get_hall(code: str) -> Place:
    hall = await Hall.get_or_none(code=code, is_active=True) if guide.storable(code) else None
    if hall is None:
        raise not_found("大厅")
    windows = await Window.filter(hall=hall).order_by("id")
    return _hall_place(hall, windows, clock.now())


async def halls_for_item(item: ServiceItem) -> list[Place]:
    halls = await guide.halls_of(item)
    windows = await _windows_by_hall([h.id for h in halls])
    at = clock.now()
    return [_hall_place(h, windows.get(h.id, []), at) for h in halls]


# --- GEO index ------------------------------------------------------------------------------
async def rebuild_geo() -> int:
    """Write every active hall and point into a fresh GEO set, then swap it in (RENAME is
    atomic, so a concurrent search sees the old set or the new one, never half of one)."""
    token = await guide.catalogue_token()
    members: list[Any] = []
    for h in await Hall.filter(is_active=True).values("code", "lat", "lng"):
        members += [h["lng"], h["lat"], f"h:{h['code']}"]
    for p in await ServicePoint.filter(is_active=True).values("code", "lat", "lng"):
        members += [p["lng"], p["lat"], f"p:{p['code']}"]
    r = cache.redis()
    if not members:
        async with r.pipeline(transaction=True) as pipe:
            pipe.delete(GEO_KEY)
            pipe.set(GEO_TOKEN_KEY, token)
            await pipe.execute()
        return 0
    tmp = f"{GEO_KEY}:build:{token}"
    await r.delete(tmp)
    await r.geoadd(tmp, members)
    async with r.pipeline(transaction=True) as pipe:
        pipe.rename(tmp, GEO_KEY)
        pipe.set(GEO_TOKEN_KEY, token)
        await pipe.execute()
    return len(members) // 3


async def _geo_current() -> None:
    """Rebuild when Redis lost the set (restart, flush) or the catalogue moved on."""
    r = cache.redis()
    token = await guide.catalogue_token()
    if await r.get(GEO_TOKEN_KEY) != token:
        await rebuild_geo()


async def _nearby_redis(lat: float, lng: float, radius_km: float) -> list[tuple[str, float]]:
    await _geo_current()
    rows = await cache.redis().geosearch(GEO_KEY, longitude=lng, latitude=lat, radius=radius_km,
                                         unit="km", sort="ASC", withdist=True)
    # WITHDIST replies [member, distance] pairs; the client's type hints don't say so.
    return [(str(row[0]), float(str(row[1])) * 1000) for row in rows]


async def _nearby_db(lat: float, lng: float, radius_km: float) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for h in await Hall.filter(is_active=True).values("code", "lat", "lng"):
        out.append((f"h:{h['code']}", geo.distance_m(lat, lng, h["lat"], h["lng"])))
    for p in await ServicePoint.filter(is_active=True).values("code", "lat", "lng"):
        out.append((f"p:{p['code']}", geo.distance_m(lat, lng, p["lat"], p["lng"])))
    return sorted((m for m in out if m[1] <= radius_km * 1000), key=lambda m: (m[1], m[0]))


@dataclass(frozen=True)
class Nearby:
    places: list[Place]
    source: Literal["redis", "database"]


async def nearby(
    *, lat: float, lng: float, radius_km: float = 10, kind: PlaceKind | None = None,
    item_code: str | None = None, limit: int = 20,
) -> Nearby:
    """Places within ``radius_km`` nearest first. ``item_code``: only halls that handle it."""
    allowed = await _item_halls(item_code) if item_code else None
    source: Literal["redis", "database"] = "redis"
    try:
        found = await _nearby_redis(lat, lng, radius_km)
    except Exception:
        # Redis down or unreachable must not take the map down: the table is small enough
        # to measure every place.
        log.warning("GEO index unavailable, answering from the database", exc_info=True)
        found, source = await _nearby_db(lat, lng, radius_km), "database"
    hall_codes = [m[2:] for m, _ in found if m.startswith("h:")]
    point_codes = [m[2:] for m, _ in found if m.startswith("p:")]
    want_points = allowed is None and kind in (None, PlaceKind.self_service)
    halls = {h.code: h for h in await Hall.filter(code__in=hall_codes, is_active=True)}
    points = ({p.code: p for p in await ServicePoint.filter(code__in=point_codes,
                                                            is_active=True)}
              if want_points else {})
    windows = await _windows_by_hall([h.id for h in halls.values()])
    at = clock.now()
    places: list[Place] = []
    for member, dist in found:
        code = member[2:]
        place: Place | None = None
        if member.startswith("h:") and code in halls:
            place = _hall_place(halls[code], windows.get(halls[code].id, []), at)
            if not _hall_matches(place, kind) or (allowed is not None and code not in allowed):
                continue
        elif member.startswith("p:") and code in points:
            place = _point_place(points[code], at)
        if place is None:
            continue
        place.distance_m = round(dist, 1)
        places.append(place)
        if len(places) >= limit:
            break
    return Nearby(places=places, source=source)


async def rebuild_quietly() -> None:
    try:
        await rebuild_geo()
    except Exception:
        log.warning("GEO index rebuild failed; nearby falls back to the database",
                    exc_info=True)


# --- staff edits ----------------------------------------------------------------------------
async def update_hall(*, actor: Principal, code: str, values: dict[str, Any]) -> Place:
    """Replace a hall's map facts (location, hours, phone, …) and refresh the GEO index."""
    if not actor.is_staff:
        raise forbidden()
    if guide.storable(code):
        # Its manager or a supervisor above it; another hall's staff don't see it to edit.
        await hall_in_scope(actor, code, for_change=True)
    if "hours" in values:
        try:
            OpeningHours.from_seed(values["hours"])
        except (ValueError, TypeError) as exc:
            raise AppError(ErrorCode.validation_failed, "开放时间格式不正确",
                           fields={"hours": str(exc)[:120]}) from exc
    async with in_transaction():
        hall = (await Hall.select_for_update().get_or_none(code=code)
                if guide.storable(code) else None)
        if hall is None:
            raise not_found("大厅")
        hall.update_from_dict(values)
        await hall.save()
        await guide.bump_catalogue_version()
    await rebuild_quietly()
    return await get_hall(code) if hall.is_active else _hall_place(hall, [], clock.now())
