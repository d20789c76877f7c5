"""Staff figures over a city-sized table, and 一事一评 under a burst of ratings.

    python -m bench.stats_bench [--cases 50000] [--ratings 20000] [--pool 30] [--sqlite]

MySQL/MariaDB when reachable (``XQ_BENCH_MYSQL_URL``, default root@127.0.0.1:3306), in a
throwaway database; otherwise SQLite. Prints figures and checks invariants; no speed
assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from datetime import timedelta

os.environ.setdefault("XQ_ENV", "test")


from bench.database import bench_database
from models.cases import Case, CaseStatus, HelperAssignment
from models.ratings import LEVEL_LABELS, Rating, RectificationTask, TargetType
from models.users import User
from services import clock, ratings, stats
from services.auth import Principal

HALLS = [f"H-B-{i:02d}" for i in range(15)]
DEPTS = [f"部门{i:02d}" for i in range(20)]
STATUSES = list(CaseStatus)


async def _fill(args: argparse.Namespace) -> tuple[Principal, list[int]]:
    rng = random.Random(7)
    now = clock.now()
    applicant = await User.create(openid="bench-applicant")
    helper_users = [await User.create(openid=f"bench-helper-{i}") for i in range(40)]
    rows = []
    for _ in range(args.cases):
        accepted = now - timedelta(days=rng.randint(1, 80), hours=rng.randint(0, 23))
        status = rng.choice(STATUSES)
        rows.append(Case(
            applicant=applicant, submitted_by=applicant, hall_code=rng.choice(HALLS),
            department=rng.choice(DEPTS), status=status, accepted_at=accepted,
            due_at=accepted + timedelta(days=rng.randint(1, 20)), promised_days=5,
            closed_at=accepted + timedelta(days=rng.randint(0, 25))
            if status is CaseStatus.closed else None))
    t0 = time.perf_counter()
    await Case.bulk_create(rows, batch_size=2000)
    ids = [int(r["id"]) for r in await Case.all().values("id")]
    # created_at is auto_now_add: spread it over the last 90 days in one statement per day.
    for day in range(90):
        chunk = ids[day::90]
        await Case.filter(id__in=chunk).update(created_at=now - timedelta(days=day))
    await HelperAssignment.bulk_create([
        HelperAssignment(case_id=cid, helper=rng.choice(helper_users),
                         status=rng.choice(["accepted", "done", "declined"]), offered_at=now)
        for cid in rng.sample(ids, min(len(ids), args.cases // 5))], batch_size=2000)
    rated = rng.sample(ids, min(len(ids), args.ratings))
    await Rating.bulk_create([
        Rating(target_type=TargetType.case, target_id=cid, rater=applicant,
               level=(lv := rng.choices([5, 4, 3, 2, 1], [50, 25, 12, 8, 5])[0]),
               label=LEVEL_LABELS[lv], tags={"tags": []}, department=rng.choice(DEPTS),
               hall_code=rng.choice(HALLS)) for cid in rated], batch_size=2000)
    bad = await Rating.filter(level__lte=2).values_list("id", "department", "hall_code")
    await RectificationTask.bulk_create([
        RectificationTask(rating_id=rid, department=d, hall_code=h,
                          due_at=now + timedelta(days=rng.randint(-10, 20)),
                          status=rng.choice(["open", "replied", "closed"]))
        for rid, d, h in bad], batch_size=2000)
    print(f"filled {args.cases} cases, {len(rated)} ratings, {len(bad)} tasks in "
          f"{time.perf_counter() - t0:.1f}s")
    rated_set = set(rated)
    unrated = [i for i in ids if i not in rated_set][: args.burst]
    await Case.filter(id__in=unrated).update(status=CaseStatus.approved)
    return Principal(applicant.id, frozenset({"resident"})), unrated


async def _run(args: argparse.Namespace) -> None:
    applicant, unrated = await _fill(args)
    staff = Principal(0, frozenset({"staff"}))
    end = clock.today()
    for group_by in ("hall", "department"):
        for days in (30, 90):
            took = []
            for _ in range(5):
                t0 = time.perf_counter()
                rep = await stats.report(actor=staff, start=end - timedelta(days=days - 1),
                                         end=end, group_by=group_by)
                took.append(time.perf_counter() - t0)
            print(f"stats group_by={group_by:<10} {days:>2} days: {len(rep.groups)} groups, "
                  f"{rep.total.cases_total} cases, {rep.total.ratings_total} ratings; "
                  f"median {statistics.median(took) * 1000:.0f} ms (5 runs)")

    # A burst: each unrated case rated by 5 simultaneous requests (double taps, retries).
    t1 = time.perf_counter()
    results = await asyncio.gather(*(
        ratings.rate(actor=applicant, target_type=TargetType.case, target_id=cid,
                     level=random.choice([1, 5]), tags=[])
        for cid in unrated for _ in range(5)), return_exceptions=True)
    burst = time.perf_counter() - t1
    won = sum(isinstance(r, Rating) for r in results)
    print(f"rate burst: {len(results)} calls over {len(unrated)} cases in {burst:.2f}s "
          f"({len(results) / burst:.0f} calls/s); ratings created {won}")
    per_case = await Rating.filter(target_id__in=unrated).count()
    if won != len(unrated) or per_case != len(unrated):
        raise SystemExit("INCONSISTENT: a case has more or fewer than one rating")


async def main(args: argparse.Namespace) -> None:
    async with bench_database(pool=args.pool, sqlite=args.sqlite) as backend:
        print(f"backend: {backend}")
        await _run(args)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=50000)
    parser.add_argument("--ratings", type=int, default=20000)
    parser.add_argument("--burst", type=int, default=200, help="unrated cases in the burst")
    parser.add_argument("--pool", type=int, default=30)
    parser.add_argument("--sqlite", action="store_true")
    asyncio.run(main(parser.parse_args()))
