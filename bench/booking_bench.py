"""Contention benchmark for booking: many residents hitting few slots at once.

    python -m bench.booking_bench [--residents 1000] [--slots 10] [--capacity 20] [--pool 50]

Against MySQL/MariaDB when reachable (``XQ_BENCH_MYSQL_URL``, default root@127.0.0.1:3306): a
throwaway database is created and dropped, as the tests do. Otherwise SQLite in a temp folder,
which serialises writers and is only a smoke run. Prints bookings/s and the outcome counts, and
checks that no slot's counter disagrees with its rows or exceeds capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

os.environ.setdefault("XQ_ENV", "test")

from tortoise import Tortoise

from models.appointments import Appointment, AppointmentStatus, Slot
from models.catalogue import Hall
from models.users import User
from services import appointments, cache, clock, db, people, seed, slots
from services.auth import Principal
from services.errors import AppError
from services.identity import _id_check_char

MYSQL_URL = os.environ.get("XQ_BENCH_MYSQL_URL", "mysql://root:@127.0.0.1:3306")
# A fixed Friday so slots, holidays and the booking horizon are the same on every run.
NOW = datetime(2026, 9, 18, 10, 0, tzinfo=clock.SHANGHAI)


async def _residents(n: int) -> list[Principal]:
    out = []
    for i in range(n):
        first17 = f"621002199001{(i // 1000) % 28 + 1:02d}{i % 1000:03d}"
        person = await people.upsert_person(name="压测居民", id_number=first17 +
                                            _id_check_char(first17))
        user = await User.create(openid=f"bench-{i}", person=person)
        out.append(Principal(user.id, frozenset({"resident"})))
    return out


async def _slots(k: int, capacity: int, day: int) -> list[Slot]:
    hall = await Hall.get(code="H-QY-000")
    start = datetime(2026, 9, day, 9, 0, tzinfo=clock.SHANGHAI)
    return [await Slot.create(hall=hall, window_kind="comprehensive",
                              starts_at=start + timedelta(minutes=5 * i),
                              ends_at=start + timedelta(minutes=5 * i + 30),
                              general_capacity=capacity, green_hold=0) for i in range(k)]


async def _round(residents: list[Principal],
                 targets: list[Slot]) -> tuple[Counter[str], float, list[float]]:
    latencies: list[float] = []

    async def one(p: Principal, s: Slot) -> str:
        t = time.perf_counter()
        try:
            await appointments.book(actor=p, slot_id=s.id, item_code="GA-001")
            return "booked"
        except AppError as exc:
            return exc.code.name
        finally:
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    got = await asyncio.gather(*[one(p, targets[i % len(targets)])
                                 for i, p in enumerate(residents)])
    return Counter(got), time.perf_counter() - t0, sorted(latencies)


async def _check(all_slots: list[Slot]) -> None:
    for s in all_slots:
        await s.refresh_from_db()
        rows = await Appointment.filter(slot_id=s.id).exclude(
            status=AppointmentStatus.cancelled).count()
        if not s.booked == rows <= s.capacity:
            raise SystemExit(f"INCONSISTENT slot {s.id}: counter {s.booked}, rows {rows}, "
                             f"capacity {s.capacity}")


async def main(args: argparse.Namespace) -> None:
    clock.now = lambda: NOW
    use_mysql = db.server_reachable(MYSQL_URL, 3306) and not args.sqlite
    name = f"xq_bench_{uuid.uuid4().hex[:8]}"
    if use_mysql:
        await db.create_database(MYSQL_URL, name)
        url = f"{MYSQL_URL.rstrip('/')}/{name}?maxsize={args.pool}"
    else:
        url = f"sqlite://{tempfile.mkdtemp()}/bench.sqlite3"
    cache.use(cache.connect("memory://"))
    try:
        await Tortoise.init(config=db.tortoise_config(url))
        await Tortoise.generate_schemas()
        data = seed.load_demo_data()
        await seed.seed_people(data)
        await seed.seed_catalogue(data)
        await slots.seed_slot_rules(data)
        residents = await _residents(args.residents)
        backend = "MySQL/MariaDB" if use_mysql else "SQLite (smoke only)"
        print(f"backend: {backend}; pool {args.pool if use_mysql else 1}; "
              f"{args.residents} residents")

        rounds = [("one hot slot", 1), (f"{args.slots} slots", args.slots),
                  ("a place for everyone", -(-args.residents // args.capacity))]
        for day, (label, k) in enumerate(rounds, start=21):
            # Each round starts from empty slots and residents without bookings.
            await Appointment.all().delete()
            targets = await _slots(k, args.capacity, day)
            outcomes, secs, lat = await _round(residents, targets)
            _report(label, args.residents, outcomes, secs, k, args.capacity, lat)
            await _check(targets)
        print("consistency: every slot's counter equals its rows and is within capacity")
    finally:
        await Tortoise.close_connections()
        if use_mysql:
            await db.drop_database(MYSQL_URL, name)


def _report(label: str, n: int, outcomes: Counter[str], secs: float, k: int,
            capacity: int, lat: list[float]) -> None:
    booked = outcomes.get("booked", 0)
    p50, p95 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.95)] * 1000
    print(f"{label}: {n} concurrent requests for {k}x{capacity} places in {secs:.2f}s -> "
          f"{n / secs:.0f} requests/s, {booked / secs:.0f} bookings/s, latency p50 {p50:.0f} ms "
          f"p95 {p95:.0f} ms; outcomes {dict(outcomes)}")
    expected: dict[str, Any] = {"booked": min(n, k * capacity)}
    if booked != expected["booked"]:
        raise SystemExit(f"WRONG: expected {expected['booked']} bookings, got {booked}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--capacity", type=int, default=20)
    parser.add_argument("--pool", type=int, default=50)
    parser.add_argument("--sqlite", action="store_true", help="force the SQLite smoke run")
    asyncio.run(main(parser.parse_args()))
