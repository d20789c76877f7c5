"""Figures for staff: cases by status, overdue, handling time against the promise, helper load,
satisfaction and bad-rating rectification, per hall or per department, over a date range.

Every figure is a GROUP BY in the database (conditional COUNT/SUM), one query per table, so the
cost grows with the number of groups, not of rows. Totals are sums of the groups' counts and
sums, and averages are computed from those sums, so totals and groups always agree.

Definitions (also in docs/feedback.md):
- the range selects cases, ratings and rectification tasks by their creation date (local);
- overdue: a case not yet finished (not approved/rejected/result_delivered/closed/withdrawn)
  whose due time has passed now;
- handling time: closed_at - accepted_at of closed cases; promised time: due_at - accepted_at
  of the same cases (补正 pauses included, as the due time already holds them);
- satisfaction rate: ratings at 基本满意 or better / all ratings;
- rectification rate: bad ratings whose task was answered (replied or closed) / bad ratings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from tortoise import connections
from tortoise.expressions import F, Q, RawSQL
from tortoise.functions import Count, Sum

from models.cases import CaseStatus
from models.catalogue import Hall
from models.ratings import BAD_LEVELS, LEVEL_LABELS, Rating, RectificationStatus, RectificationTask
from models.users import User
from services import cases, clock
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden
from services.scope import scope_of

GroupBy = Literal["hall", "department"]
MAX_RANGE_DAYS = 366
HELPER_LOAD_LIMIT = 50

# From the case state table's own sets (services/cases.py): a state a new rule adds is counted.
CASE_STATUSES = tuple(s.value for s in CaseStatus)
UNFINISHED = tuple(s.value for s in cases.UNFINISHED)
ACTIVE_ASSIGNMENT = ("offered", "accepted")
GOOD_LEVELS = tuple(level for level in LEVEL_LABELS if level not in BAD_LEVELS)


@dataclass
class Figures:
    key: str
    name: str
    cases_by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CASE_STATUSES, 0))
    overdue: int = 0
    closed: int = 0
    closed_on_time: int = 0
    handled_seconds: float = 0.0
    promised_seconds: float = 0.0
    promised_days: int = 0
    helper_active: int = 0
    helper_done: int = 0
    helpers: int = 0
    ratings_by_level: dict[int, int] = field(default_factory=lambda: dict.fromkeys(LEVEL_LABELS, 0))
    rectification_tasks: int = 0
    rectified: int = 0
    rectification_overdue: int = 0
    rectification_escalated: int = 0

    @property
    def cases_total(self) -> int:
        return sum(self.cases_by_status.values())

    @property
    def ratings_total(self) -> int:
        return sum(self.ratings_by_level.values())

    @property
    def bad_ratings(self) -> int:
        return sum(self.ratings_by_level[level] for level in BAD_LEVELS)

    @property
    def satisfaction_rate(self) -> float | None:
        total = self.ratings_total
        good = sum(self.ratings_by_level[level] for level in GOOD_LEVELS)
        return round(good / total, 4) if total else None

    @property
    def rectification_rate(self) -> float | None:
        return (round(self.rectified / self.rectification_tasks, 4)
                if self.rectification_tasks else None)

    @property
    def avg_handling_hours(self) -> float | None:
        return round(self.handled_seconds / self.closed / 3600, 2) if self.closed else None

    @property
    def avg_promised_hours(self) -> float | None:
        return round(self.promised_seconds / self.closed / 3600, 2) if self.closed else None

    @property
    def avg_promised_days(self) -> float | None:
        return round(self.promised_days / self.closed, 2) if self.closed else None

    def absorb(self, other: Figures) -> None:
        for status, n in other.cases_by_status.items():
            self.cases_by_status[status] += n
        for level, n in other.ratings_by_level.items():
            self.ratings_by_level[level] += n
        for name in ("overdue", "closed", "closed_on_time", "handled_seconds",
                     "promised_seconds", "promised_days", "helper_active", "helper_done",
                     "rectification_tasks", "rectified", "rectification_overdue",
                     "rectification_escalated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class HelperLoad:
    helper_id: int
    nickname: str
    active: int
    done: int


@dataclass
class Report:
    start: date
    end: date
    group_by: GroupBy
    generated_at: datetime
    total: Figures
    groups: list[Figures]
    helper_load: list[HelperLoad]
    distinct_helpers: int


def _seconds_between(a: str, b: str) -> str:
    """SQL for ``b - a`` in seconds, per dialect (MySQL in production, SQLite embedded)."""
    if connections.get("default").capabilities.dialect == "mysql":
        return f"TIMESTAMPDIFF(MICROSECOND, `{a}`, `{b}`) / 1000000.0"
    return f'(julianday("{b}") - julianday("{a}")) * 86400.0'


def _closed_sum(expr: str) -> RawSQL:
    return RawSQL(f"CASE WHEN status = 'closed' AND accepted_at IS NOT NULL "
                  f"AND closed_at IS NOT NULL AND due_at IS NOT NULL THEN {expr} ELSE 0 END")


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    lo = datetime.combine(start, time.min, tzinfo=clock.SHANGHAI)
    hi = datetime.combine(end + timedelta(days=1), time.min, tzinfo=clock.SHANGHAI)
    return lo, hi


async def report(
    *,
    actor: Principal,
    start: date | None = None,
    end: date | None = None,
    group_by: GroupBy = "hall",
) -> Report:
    if not actor.is_staff:
        raise forbidden()
    end = end or clock.today()
    start = start or end - timedelta(days=29)
    if start > end:
        raise AppError(ErrorCode.validation_failed, fields={"from": "开始日期不能晚于结束日期"})
    if (end - start).days >= MAX_RANGE_DAYS:
        raise AppError(ErrorCode.validation_failed, fields={"from": "统计区间最长一年"})
    from models.cases import Case, HelperAssignment  # stats read the cases domain

    lo, hi = _bounds(start, end)
    now = clock.now()
    col = "hall_code" if group_by == "hall" else "department"
    groups: dict[str, Figures] = {}

    def fig(key: str | None) -> Figures:
        k = key or ""
        if k not in groups:
            groups[k] = Figures(key=k, name=k)
        return groups[k]

    in_range = {"created_at__gte": lo, "created_at__lt": hi}
    # Figures count only what the caller's scope covers (services/scope.py): a clerk's hall,
    # an approver's department, a supervisor's region; an admin the whole city.
    sc = await scope_of(actor)
    mine = sc.q(hall_code="hall_code", department="department")
    mine_via_case = sc.q(hall_code="case__hall_code", department="case__department")

    for row in await Case.filter(mine, **in_range).annotate(n=Count("id")).group_by(
            col, "status").values(k=col, status="status", n="n"):
        fig(row["k"]).cases_by_status[str(row["status"])] += int(row["n"])

    closed_q = Q(status="closed", accepted_at__not_isnull=True, closed_at__not_isnull=True,
                 due_at__not_isnull=True)
    for row in await Case.filter(mine, **in_range).annotate(
        x_overdue=Count("id", _filter=Q(status__in=UNFINISHED, due_at__lt=now)),
        x_closed=Count("id", _filter=closed_q),
        x_on_time=Count("id", _filter=closed_q & Q(closed_at__lte=F("due_at"))),
        # Tortoise's stubs omit RawSQL, which Sum renders fine (proven by the stats tests).
        x_handled=Sum(_closed_sum(_seconds_between("accepted_at", "closed_at"))),  # type: ignore[arg-type]
        x_promised=Sum(_closed_sum(_seconds_between("accepted_at", "due_at"))),  # type: ignore[arg-type]
        x_days=Sum(_closed_sum("promised_days")),  # type: ignore[arg-type]
    ).group_by(col).values(k=col, overdue="x_overdue", closed="x_closed", on_time="x_on_time",
                           handled="x_handled", promised="x_promised",
                           promised_days="x_days"):
        f = fig(row["k"])
        f.overdue += int(row["overdue"] or 0)
        f.closed += int(row["closed"] or 0)
        f.closed_on_time += int(row["on_time"] or 0)
        f.handled_seconds += float(row["handled"] or 0)
        f.promised_seconds += float(row["promised"] or 0)
        f.promised_days += int(row["promised_days"] or 0)

    case_range = {"case__created_at__gte": lo, "case__created_at__lt": hi}
    for row in await HelperAssignment.filter(mine_via_case, **case_range).annotate(
        active=Count("id", _filter=Q(status__in=ACTIVE_ASSIGNMENT)),
        done=Count("id", _filter=Q(status="done")),
        helpers=Count("helper_id", distinct=True),
    ).group_by(f"case__{col}").values(k=f"case__{col}", active="active", done="done",
                                      helpers="helpers"):
        f = fig(row["k"])
        f.helper_active += int(row["active"] or 0)
        f.helper_done += int(row["done"] or 0)
        f.helpers += int(row["helpers"] or 0)

    load_rows = await HelperAssignment.filter(mine_via_case, **case_range).annotate(
        active=Count("id", _filter=Q(status__in=ACTIVE_ASSIGNMENT)),
        done=Count("id", _filter=Q(status="done")),
    ).group_by("helper_id").order_by("-active", "-done", "helper_id").limit(
        HELPER_LOAD_LIMIT).values(helper_id="helper_id", active="active", done="done")
    # One row per helper (a few hundred at most), not per assignment: Tortoise can't express
    # an ungrouped COUNT(DISTINCT) next to a join.
    distinct_helpers = len(await HelperAssignment.filter(
        mine_via_case, **case_range).distinct().values_list("helper_id", flat=True))
    nicknames = dict(await User.filter(
        id__in=[r["helper_id"] for r in load_rows]).values_list("id", "nickname"))

    for row in await Rating.filter(mine, **in_range).annotate(n=Count("id")).group_by(
            col, "level").values(k=col, level="level", n="n"):
        fig(row["k"]).ratings_by_level[int(row["level"])] += int(row["n"])

    for row in await RectificationTask.filter(mine, **in_range).annotate(
        # Annotation names must not shadow a field: Tortoise would resolve the filter
        # escalated=True against the annotation itself and recurse forever.
        x_n=Count("id"),
        x_rectified=Count("id", _filter=Q(status__in=(RectificationStatus.replied,
                                                      RectificationStatus.closed))),
        x_overdue=Count("id", _filter=Q(status=RectificationStatus.open, due_at__lt=now)),
        x_escalated=Count("id", _filter=Q(escalated=True)),
    ).group_by(col).values(k=col, n="x_n", rectified="x_rectified", overdue="x_overdue",
                           escalated="x_escalated"):
        f = fig(row["k"])
        f.rectification_tasks += int(row["n"] or 0)
        f.rectified += int(row["rectified"] or 0)
        f.rectification_overdue += int(row["overdue"] or 0)
        f.rectification_escalated += int(row["escalated"] or 0)

    if group_by == "hall" and groups:
        names = dict(await Hall.filter(code__in=list(groups)).values_list("code", "name"))
        for f in groups.values():
            f.name = str(names.get(f.key, f.key))
    total = Figures(key="", name="合计")
    ordered = sorted(groups.values(), key=lambda g: g.key)
    for f in ordered:
        total.absorb(f)
    # Distinct helpers don't add up across groups; count them once for the total.
    total.helpers = distinct_helpers
    return Report(
        start=start, end=end, group_by=group_by, generated_at=now, total=total, groups=ordered,
        helper_load=[HelperLoad(helper_id=int(r["helper_id"]),
                                nickname=str(nicknames.get(r["helper_id"], "")),
                                active=int(r["active"] or 0), done=int(r["done"] or 0))
                     for r in load_rows],
        distinct_helpers=distinct_helpers,
    )


def as_dict(fig: Figures) -> dict[str, Any]:
    return {
        "key": fig.key, "name": fig.name,
        "cases": {
            "total": fig.cases_total, "by_status": dict(fig.cases_by_status),
            "overdue": fig.overdue, "closed": fig.closed, "closed_on_time": fig.closed_on_time,
            "avg_handling_hours": fig.avg_handling_hours,
            "avg_promised_hours": fig.avg_promised_hours,
            "avg_promised_days": fig.avg_promised_days,
        },
        "helpers": {"active": fig.helper_active, "done": fig.helper_done,
                    "helpers": fig.helpers},
        "ratings": {
            "total": fig.ratings_total,
            "by_level": {LEVEL_LABELS[lv]: n for lv, n in sorted(fig.ratings_by_level.items(),
                                                                  reverse=True)},
            "satisfaction_rate": fig.satisfaction_rate,
            "bad": fig.bad_ratings,
            "rectification_tasks": fig.rectification_tasks,
            "rectified": fig.rectified,
            "rectification_rate": fig.rectification_rate,
            "rectification_overdue": fig.rectification_overdue,
            "rectification_escalated": fig.rectification_escalated,
        },
    }
