"""Cases and helper assignment under load: many assign calls racing per case, and a burst of
case transitions.

    python -m bench.cases_bench [--cases 200] [--racers 10] [--helpers 8] [--pool 30]

MySQL/MariaDB when reachable (``XQ_BENCH_MYSQL_URL``, default root@127.0.0.1:3306), in a
throwaway database; otherwise SQLite (serialised writers, a smoke run only). Prints figures and
checks the invariant (one live assignment per case); no speed assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time

os.environ.setdefault("XQ_ENV", "test")


from bench.database import bench_database
from models.cases import Case, HelperAssignment
from models.users import Person, Role, User, UserRole
from services import cases, clock, helpers, people, seed
from services.auth import Principal
from services.errors import AppError


async def _run(args: argparse.Namespace) -> None:
    data = seed.load_demo_data()
    await seed.seed_people(data)
    await seed.seed_catalogue(data)
    person = await Person.get(id_number_hash=people.id_lookup_hash("621002194103050316"))
    resident = await User.create(openid="bench-resident", person=person)
    me = Principal(resident.id, frozenset({"resident"}))
    staff_user = await User.create(openid="bench-staff")
    staff = Principal(staff_user.id, frozenset({"resident", "staff"}))
    for i in range(args.helpers):
        u = await User.create(openid=f"bench-helper-{i}")
        await UserRole.create(user=u, role=Role.helper)
        await helpers.ensure_profile(user_id=u.id, hall_code="H-XF-000",
                                     departments=["市民政局"], themes=[])
    ids = []
    for _ in range(args.cases):
        c = await cases.open_case(actor=me, hall_code="H-XF-000", item_code="MZ-004")
        ids.append(c.id)
    await Case.filter(id__in=ids).update(help_requested_at=clock.now())

    # 1. Every case gets `racers` simultaneous assign calls.
    calls = [helpers.assign(case_id=i) for i in ids for _ in range(args.racers)]
    t0 = time.perf_counter()
    await asyncio.gather(*calls)
    took = time.perf_counter() - t0
    per_case = [await HelperAssignment.filter(case_id=i).count() for i in ids]
    loads = await helpers._open_loads([u.id for u in await User.filter(
        openid__startswith="bench-helper-")])
    print(f"assign: {len(calls)} calls over {len(ids)} cases in {took:.2f}s "
          f"({len(calls) / took:.0f} calls/s); assignments per case: "
          f"min {min(per_case)} max {max(per_case)}; helper loads {sorted(loads.values())}")
    if max(per_case) != 1 or min(per_case) != 1:
        raise SystemExit("INCONSISTENT: a case has more or fewer than one assignment")

    # 2. A burst of staff transitions (accept) on every case at once, each twice.
    lat: list[float] = []

    async def accept(case_id: int) -> None:
        s = time.perf_counter()
        # The second call of each pair is an illegal transition: refused, as it should be.
        with contextlib.suppress(AppError):
            await cases.transition(actor=staff, case_id=case_id, action=cases.Action.accept)
        lat.append(time.perf_counter() - s)

    t0 = time.perf_counter()
    await asyncio.gather(*(accept(i) for i in ids for _ in range(2)))
    took = time.perf_counter() - t0
    lat.sort()
    print(f"transitions: {len(lat)} accept calls in {took:.2f}s ({len(lat) / took:.0f}/s); "
          f"p50 {statistics.median(lat) * 1000:.1f} ms, p99 "
          f"{lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms")
    if await Case.filter(id__in=ids, version=1).count() != len(ids):
        raise SystemExit("INCONSISTENT: a case moved twice")

    # 3. Reading the detail page (timeline, due time, missing materials).
    t0 = time.perf_counter()
    for i in ids[:100]:
        await cases.get_case(actor=me, case_id=i)
    took = time.perf_counter() - t0
    print(f"detail: {min(100, len(ids))} sequential reads, "
          f"{took / min(100, len(ids)) * 1000:.1f} ms each")


async def main(args: argparse.Namespace) -> None:
    async with bench_database(pool=args.pool, sqlite=args.sqlite) as backend:
        print(f"backend: {backend}")
        await _run(args)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--racers", type=int, default=10)
    parser.add_argument("--helpers", type=int, default=8)
    parser.add_argument("--pool", type=int, default=30)
    parser.add_argument("--sqlite", action="store_true")
    asyncio.run(main(parser.parse_args()))
