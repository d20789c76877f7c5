"""What a hall window sees of a person today: their appointments today (to check them in) and
their open cases. Shown on every staff scan of a person code, so it is cached per person.

The cache: ``desk:<yyyymmdd>:<person id>`` holds ``<generation>|<members>``, the view as the
members of a JSON object without its braces. Every change to what the view shows bumps the
person's generation (``desk:gen:<person id>``) *after* its transaction commits, and a cached
view of another generation is not used. A reader that misses takes the
generation first, reads the database, and stores what it read tagged with that generation, so a
fill racing a write carries the old generation and is never served — no locks, no window where
a stale view outlives the write. A process that dies between commit and bump leaves a stale
view for at most ``DESK_TTL``; the day in the key retires yesterday's "today" at midnight.

The scan itself reads both keys inside its Lua script (services/codes/scan.py); this module owns
the keys, the database read and the bump the writers call.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from redis.exceptions import RedisError
from tortoise.models import Model

from services import cache, clock, db

log = logging.getLogger(__name__)

DESK_TTL = 300
# Longer than any cached view can live, so a generation never restarts under a live entry.
GEN_TTL = 2 * 24 * 3600
MAX_CASES = 20
# Cases in these states need nothing more from the window.
CLOSED_CASE_STATES = ("closed", "withdrawn", "rejected")


def gen_key(person_id: int) -> str:
    return f"desk:gen:{person_id}"


@lru_cache(maxsize=4)
def day_prefix(day: date) -> str:
    """The view key is this prefix + the person id (the scan script appends the id it finds)."""
    return f"desk:{day:%Y%m%d}:"


def sections() -> list[str]:
    """The parts of the view this deployment has (a deployment without appointments or cases
    shows the rest)."""
    return [name for name, model in (("appointments_today", "Appointment"),
                                     ("open_cases", "Case")) if db.has_model(model)]


async def changed(*person_ids: int | None) -> None:
    """Call after the transaction that changed a person's appointments or cases commits.
    Never raises: the change is already committed, and a missed bump only costs staleness
    bounded by the TTL."""
    ids = {pid for pid in person_ids if pid is not None}
    if not ids:
        return
    try:
        async with cache.redis().pipeline(transaction=False) as pipe:
            for pid in ids:
                pipe.incr(gen_key(pid))
                pipe.expire(gen_key(pid), GEN_TTL)
            await pipe.execute()
    except (RedisError, OSError):
        log.warning("desk view bump failed", extra={"person_ids": sorted(ids)})


async def appointment_changed(person_id: int, *days: date) -> None:
    """An appointment of this person on these (local) days changed. Only today's view shows
    appointments, and a later day's view is first built on that day from the database, so
    a booking for another day needs no bump — the rush books days ahead, and this saves
    each of its bookings a Redis round trip."""
    if clock.today() in days:
        await changed(person_id)


def members(view: dict[str, Any]) -> str:
    """The view as the members of a JSON object without its braces, as it is cached: the scan
    splices it into its answer as text."""
    return json.dumps(view, ensure_ascii=False)[1:-1]


async def store(*, person_id: int, day: date, generation: str, members: str) -> None:
    await cache.redis().set(f"{day_prefix(day)}{person_id}", f"{generation}|{members}",
                            ex=DESK_TTL)


async def load(*, person_id: int, now: datetime) -> dict[str, Any]:
    """The view from the database, JSON-ready (times as ISO 8601 with +08:00)."""
    view: dict[str, Any] = {}
    if db.has_model("Appointment"):
        view["appointments_today"] = await _appointments_today(person_id, now)
    if db.has_model("Case"):
        view["open_cases"] = await _open_cases(person_id)
    return view


# Plain SQL: Tortoise spends about a millisecond of CPU *building* a query (pypika), more than
# either database takes to answer these two. Values go through the model fields' own
# converters, so SQLite and MySQL read and write alike.


def _raw(model: type[Model]) -> tuple[Any, str]:
    conn = model._meta.db
    return conn, db.placeholder(conn)


def _iso(model: type[Model], field: str, value: Any) -> str | None:
    if value is None:
        return None
    dt: datetime = model._meta.fields_map[field].to_python_value(value)
    return clock.local(dt).isoformat()


async def _appointments_today(person_id: int, now: datetime) -> list[dict[str, Any]]:
    from models.appointments import Appointment
    from models.catalogue import Hall

    start = datetime.combine(clock.local(now).date(), time.min, tzinfo=clock.SHANGHAI)
    starts = Appointment._meta.fields_map["starts_at"]
    conn, ph = _raw(Appointment)
    rows = await conn.execute_query_dict(
        f"SELECT a.id, h.code AS hall_code, h.name AS hall_name, a.window_kind, a.item_code, "  # noqa: S608 - table names from model meta, values bound
        f"a.status, a.starts_at FROM {Appointment._meta.db_table} a "
        f"JOIN {Hall._meta.db_table} h ON h.id = a.hall_id "
        f"WHERE a.person_id = {ph} AND a.starts_at >= {ph} AND a.starts_at < {ph} "
        f"ORDER BY a.starts_at",
        [person_id, starts.to_db_value(start, Appointment),
         starts.to_db_value(start + timedelta(days=1), Appointment)])
    return [{"id": a["id"], "hall_code": a["hall_code"], "hall_name": a["hall_name"],
             "window_kind": str(a["window_kind"]), "item_code": a["item_code"],
             "status": str(a["status"]),
             "starts_at": _iso(Appointment, "starts_at", a["starts_at"])}
            for a in rows]


async def _open_cases(person_id: int) -> list[dict[str, Any]]:
    from models.cases import Case

    conn, ph = _raw(Case)
    closed = ", ".join([ph] * len(CLOSED_CASE_STATES))
    rows = await conn.execute_query_dict(
        f"SELECT id, title, item_code, bundle_code, status, due_at FROM {Case._meta.db_table} "  # noqa: S608 - table name from model meta, values bound
        f"WHERE person_id = {ph} AND status NOT IN ({closed}) ORDER BY id DESC LIMIT {MAX_CASES}",
        [person_id, *CLOSED_CASE_STATES])
    return [{"id": c["id"], "title": c["title"], "item_code": c["item_code"],
             "bundle_code": c["bundle_code"], "status": str(c["status"]),
             "due_at": _iso(Case, "due_at", c["due_at"])}
            for c in rows]
