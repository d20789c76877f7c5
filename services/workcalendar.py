"""Chinese working-day calendar: statutory holidays, 调休 make-up workdays, 办结时限, opening hours.

Sources, per date, first match wins:

1. Overrides fed through :meth:`Calendar.from_data` / :meth:`Calendar.overlay` — the project
   file ``seed/holidays.json`` for the default calendar, later also a staff-maintained table.
2. The ``chinese_calendar`` package for the years it knows (2004–2026 in 1.11.0).
3. Otherwise Monday–Friday are workdays and weekends are rest days.

2027 is PROVISIONAL: on 2026-11-22 the State Council had not published the 2027 schedule, so
``seed/holidays.json`` holds only the fixed-date statutory days (元旦 1/1, 劳动节 5/1–5/2,
国庆 10/1–10/3). 春节, 清明, 端午, 中秋, bridging days and make-up workdays are missing, so
2027 due dates come out too early until staff add the official schedule when it is published.

Terms used below:

* workday — a day the offices work: Mon–Fri that is not a holiday, or a make-up weekend day.
* holiday — a day inside a statutory holiday period (it has a :func:`holiday_name`). An
  ordinary weekend is a rest day but *not* a holiday, so ``is_holiday`` is not
  ``not is_workday``.

Due-time rule (办结时限): counting starts on the first workday after the local date of
acceptance (受理次日起算) and the case is due at the end of the N-th workday,
23:59:59.999999 Asia/Shanghai. End of day rather than the hall's closing time because limits
are legally counted in whole days and closing times differ between halls; a case is overdue
when ``now > due``.

Pause rule (补正期间不计时): a pause is the half-open interval ``[start, end)``; every workday
whose local date the interval touches, even for a minute, is not counted, and counting goes
on with the next untouched workday. Overlapping pauses are merged; a pause with ``end=None``
is still running, so there is no due time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache, lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar

__all__ = [
    "END_OF_DAY",
    "SEED_PATH",
    "TZ",
    "Calendar",
    "OpeningHours",
    "add_working_days",
    "default_calendar",
    "due_with_pauses",
    "holiday_name",
    "is_holiday",
    "is_workday",
]

TZ = ZoneInfo("Asia/Shanghai")
END_OF_DAY = time(23, 59, 59, 999999)
SEED_PATH = Path(__file__).resolve().parent.parent / "seed" / "holidays.json"

_ONE_DAY = timedelta(days=1)

# chinese_calendar names holidays in English; the mini program shows Chinese.
_LIBRARY_NAMES = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "National Day": "国庆节",
    "Mid-autumn Festival": "中秋节",
    "Anti-Fascist 70th Day": "抗战胜利70周年纪念日",
}


def _require_date(d: date) -> None:
    # datetime is a subclass of date, but its calendar day depends on its zone and a
    # datetime never equals a date key, so silently accepting one would give wrong answers.
    if isinstance(d, datetime):
        raise TypeError("expected a date; convert the datetime to Asia/Shanghai and take .date()")


def _local(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return dt.astimezone(TZ)


@lru_cache(maxsize=8192)
def _library_day(d: date) -> tuple[bool, str | None] | None:
    """``(is_workday, holiday name)`` per chinese_calendar, or None for a year it lacks."""
    try:
        on_holiday, name = chinese_calendar.get_holiday_detail(d)
    except NotImplementedError:
        return None
    if not on_holiday:
        # Make-up workdays also come with a name (the holiday they pay for); drop it so a
        # name always means "day off".
        return True, None
    if name is None:
        return False, None
    return False, _LIBRARY_NAMES.get(str(name), str(name))


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_YEAR_KEY = re.compile(r"\d{4}")


def _parse_day(raw: object, year: int) -> date:
    if not isinstance(raw, str) or not _ISO_DATE.fullmatch(raw):
        raise ValueError(f"{year}: expected a YYYY-MM-DD date, got {raw!r}")
    d = date.fromisoformat(raw)
    if d.year != year:
        # Catches copy-paste slips such as a 2028 date filed under 2027.
        raise ValueError(f"{year}: date {raw} belongs to another year")
    return d


def _parse_data(data: Mapping[str, Any]) -> tuple[dict[date, str], frozenset[date]]:
    holidays: dict[date, str] = {}
    workdays: set[date] = set()
    for key, entry in data.items():
        if key.startswith("_"):
            continue
        if not _YEAR_KEY.fullmatch(key):
            raise ValueError(f"calendar data keys must be years like '2027', got {key!r}")
        year = int(key)
        if not isinstance(entry, Mapping):
            raise ValueError(f"{year}: expected an object with 'holidays' and 'workdays'")
        unknown = {k for k in entry if not k.startswith("_")} - {"holidays", "workdays"}
        if unknown:
            # A misspelt key would otherwise drop a whole year's schedule without a sound.
            raise ValueError(f"{year}: unknown keys {sorted(unknown)}")
        raw_holidays = entry.get("holidays", {})
        raw_workdays = entry.get("workdays", [])
        if not isinstance(raw_holidays, Mapping):
            raise ValueError(f"{year}: 'holidays' must map dates to names")
        if not isinstance(raw_workdays, list):
            raise ValueError(f"{year}: 'workdays' must be a list of dates")
        for raw, name in raw_holidays.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{year}: holiday {raw!r} needs a name")
            holidays[_parse_day(raw, year)] = name.strip()
        workdays.update(_parse_day(raw, year) for raw in raw_workdays)
    clash = workdays & holidays.keys()
    if clash:
        raise ValueError(f"dates listed both as holiday and workday: {sorted(clash)}")
    return holidays, frozenset(workdays)


class Calendar:
    """Workday calendar: per-date overrides on top of chinese_calendar on top of weekends."""

    __slots__ = ("_holidays", "_use_library", "_workdays")

    def __init__(
        self,
        holidays: Mapping[date, str] | None = None,
        workdays: Iterable[date] = (),
        *,
        use_library: bool = True,
    ) -> None:
        self._holidays = dict(holidays or {})
        self._workdays = frozenset(workdays)
        for d in (*self._holidays, *self._workdays):
            _require_date(d)
        clash = self._workdays & self._holidays.keys()
        if clash:
            raise ValueError(f"dates listed both as holiday and workday: {sorted(clash)}")
        self._use_library = use_library

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, use_library: bool = True) -> Calendar:
        """Build from ``{"2027": {"holidays": {"2027-01-01": "元旦"}, "workdays": [...]}}``.

        Keys starting with ``_`` (notes) are ignored at both levels.
        """
        holidays, workdays = _parse_data(data)
        return cls(holidays, workdays, use_library=use_library)

    def overlay(self, data: Mapping[str, Any]) -> Calendar:
        """A new calendar where the dates in ``data`` replace this calendar's verdict.

        Meant for staff corrections on top of :func:`default_calendar`; a date moved from
        holiday to workday (or back) loses its previous status.
        """
        holidays, workdays = _parse_data(data)
        merged_holidays = {d: n for d, n in self._holidays.items() if d not in workdays}
        merged_holidays.update(holidays)
        merged_workdays = (self._workdays - holidays.keys()) | workdays
        return Calendar(merged_holidays, merged_workdays, use_library=self._use_library)

    def _day(self, d: date) -> tuple[bool, str | None]:
        _require_date(d)
        if d in self._workdays:
            return True, None
        name = self._holidays.get(d)
        if name is not None:
            return False, name
        if self._use_library:
            known = _library_day(d)
            if known is not None:
                return known
        return d.isoweekday() <= 5, None

    def is_workday(self, d: date) -> bool:
        return self._day(d)[0]

    def is_holiday(self, d: date) -> bool:
        """True inside a statutory holiday period; False on an ordinary weekend."""
        return self._day(d)[1] is not None

    def holiday_name(self, d: date) -> str | None:
        return self._day(d)[1]

    def is_makeup_workday(self, d: date) -> bool:
        """A Saturday or Sunday that is worked because of 调休."""
        return d.isoweekday() >= 6 and self.is_workday(d)

    def next_workday(self, d: date) -> date:
        """The first workday strictly after ``d``."""
        d += _ONE_DAY
        while not self.is_workday(d):
            d += _ONE_DAY
        return d


@cache
def default_calendar() -> Calendar:
    """chinese_calendar plus ``seed/holidays.json``; loaded once per process."""
    with SEED_PATH.open(encoding="utf-8") as f:
        return Calendar.from_data(json.load(f))


def _cal(cal: Calendar | None) -> Calendar:
    return cal if cal is not None else default_calendar()


def is_workday(d: date, *, cal: Calendar | None = None) -> bool:
    return _cal(cal).is_workday(d)


def is_holiday(d: date, *, cal: Calendar | None = None) -> bool:
    return _cal(cal).is_holiday(d)


def holiday_name(d: date, *, cal: Calendar | None = None) -> str | None:
    return _cal(cal).holiday_name(d)


# --- 办结时限 ---------------------------------------------------------------------------


def _end_of_day(d: date) -> datetime:
    return datetime.combine(d, END_OF_DAY, tzinfo=TZ)


def add_working_days(start: datetime, days: int, *, cal: Calendar | None = None) -> datetime:
    """Due time of a case accepted at ``start`` with a limit of ``days`` working days.

    End of the ``days``-th workday after the acceptance date (see the module docstring).
    ``days == 0`` (即办件) is due at the end of the acceptance date itself.
    """
    due = due_with_pauses(start, days, (), cal=cal)
    if due is None:  # pragma: no cover - only open pauses produce None
        raise AssertionError("no pauses given, a due time must exist")
    return due


def due_with_pauses(
    start: datetime,
    days: int,
    pauses: Sequence[tuple[datetime, datetime | None]],
    *,
    cal: Calendar | None = None,
) -> datetime | None:
    """Due time with the clock stopped during 补正 pauses; None while a pause is open.

    Every workday whose local date a pause ``[begin, end)`` touches is skipped (see the
    module docstring). Workdays already outside the counting window, such as the
    acceptance day or days after the due date, are unaffected. For ``days == 0`` the case
    is due at the end of the later of the acceptance date and the day the last pause ended.

    Raises ValueError for naive datetimes, a negative limit, a pause beginning before
    acceptance or ending before it begins.
    """
    if days < 0:
        raise ValueError("days must be >= 0")
    calendar = _cal(cal)
    accepted = _local(start, "start")

    paused_days: set[date] = set()
    last_resume = accepted.date()
    still_paused = False
    for begin_raw, end_raw in pauses:
        begin = _local(begin_raw, "pause start")
        if begin < accepted:
            raise ValueError("a pause cannot begin before the case was accepted")
        if end_raw is None:
            # Keep validating the rest so bad data surfaces even while a pause is open.
            still_paused = True
            continue
        end = _local(end_raw, "pause end")
        if end < begin:
            raise ValueError("a pause cannot end before it begins")
        if end == begin:
            continue
        # Half-open: a pause ending exactly at 00:00 does not touch that day.
        last_touched = (end - timedelta(microseconds=1)).date()
        d = begin.date()
        while d <= last_touched:
            paused_days.add(d)
            d += _ONE_DAY
        last_resume = max(last_resume, end.date())
    if still_paused:
        return None

    if days == 0:
        return _end_of_day(last_resume)
    d = accepted.date()
    counted = 0
    while counted < days:
        d = calendar.next_workday(d)
        if d not in paused_days:
            counted += 1
    return _end_of_day(d)


# --- opening hours ----------------------------------------------------------------------

_ALL_WEEKDAYS = frozenset(range(1, 8))
_MIDNIGHT = time(0, 0)


@dataclass(frozen=True)
class OpeningHours:
    """Weekly opening hours of a hall, corrected by the holiday calendar.

    ``weekdays`` uses ISO numbering (1 = Monday … 7 = Sunday); ``periods`` are local
    ``[open, close)`` times, sorted on construction. Which days are open:

    * a statutory holiday closes the hall, even on a weekday it normally opens;
    * a 调休 make-up weekend day opens it, even if that weekday is not in ``weekdays``;
    * otherwise the day is open iff its weekday is in ``weekdays`` — so a hall configured for
      Mon–Sun (周末不打烊) stays open on ordinary weekends but not on holidays.

    ``always_open`` (seed value ``"24h"``, self-service terminals) ignores the calendar.
    """

    weekdays: frozenset[int]
    periods: tuple[tuple[time, time], ...]
    always_open: bool = False

    def __post_init__(self) -> None:
        if not self.weekdays <= _ALL_WEEKDAYS:
            raise ValueError(f"weekdays must be within 1..7, got {sorted(self.weekdays)}")
        periods = tuple(sorted(self.periods))
        for opens, closes in periods:
            if opens.tzinfo is not None or closes.tzinfo is not None:
                raise ValueError("periods are local wall-clock times and must be naive")
            if not opens < closes:
                # Overnight periods would need the next day's calendar; none are in use.
                raise ValueError(f"period {opens}–{closes} must open before it closes")
        for (_, prev_close), (next_open, _) in pairwise(periods):
            if next_open < prev_close:
                raise ValueError(f"overlapping periods around {next_open}")
        if not periods and not self.always_open:
            raise ValueError("periods must not be empty unless always_open")
        object.__setattr__(self, "periods", periods)

    @classmethod
    def always(cls) -> OpeningHours:
        return cls(_ALL_WEEKDAYS, (), always_open=True)

    @classmethod
    def from_seed(cls, raw: object) -> OpeningHours:
        """Parse ``{"weekdays": [1, …], "periods": [["09:00", "12:00"], …]}``, or ``"24h"`` /
        ``{"always": true}`` (how the database stores "24h": a JSON column can't hold a bare
        string through the ORM)."""
        if raw == "24h" or (isinstance(raw, Mapping) and raw.get("always") is True):
            return cls.always()
        if not isinstance(raw, Mapping):
            raise ValueError(f"opening hours must be an object or '24h', got {raw!r}")
        raw_weekdays = raw.get("weekdays")
        raw_periods = raw.get("periods")
        if not isinstance(raw_weekdays, list) or not all(type(w) is int for w in raw_weekdays):
            raise ValueError("'weekdays' must be a list of integers 1..7")
        if not isinstance(raw_periods, list):
            raise ValueError("'periods' must be a list of [open, close] pairs")
        periods: list[tuple[time, time]] = []
        for pair in raw_periods:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(t, str) for t in pair)
            ):
                raise ValueError(f"period must be ['HH:MM', 'HH:MM'], got {pair!r}")
            periods.append((time.fromisoformat(pair[0]), time.fromisoformat(pair[1])))
        return cls(frozenset(raw_weekdays), tuple(periods))

    def is_open_day(self, d: date, *, cal: Calendar | None = None) -> bool:
        _require_date(d)
        if self.always_open:
            return True
        calendar = _cal(cal)
        weekday = d.isoweekday()
        if calendar.is_workday(d):
            return weekday in self.weekdays or weekday >= 6
        # A rest day on Mon–Fri can only come from a holiday period, so weekday >= 6 here
        # means an ordinary weekend.
        return weekday >= 6 and not calendar.is_holiday(d) and weekday in self.weekdays

    def periods_on(
        self, d: date, *, cal: Calendar | None = None
    ) -> list[tuple[datetime, datetime]]:
        """Aware ``[open, close)`` datetimes for local date ``d``; empty when closed."""
        _require_date(d)
        if self.always_open:
            return [
                (
                    datetime.combine(d, _MIDNIGHT, tzinfo=TZ),
                    datetime.combine(d + _ONE_DAY, _MIDNIGHT, tzinfo=TZ),
                )
            ]
        if not self.is_open_day(d, cal=cal):
            return []
        return [
            (datetime.combine(d, opens, tzinfo=TZ), datetime.combine(d, closes, tzinfo=TZ))
            for opens, closes in self.periods
        ]

    def is_open(self, at: datetime, *, cal: Calendar | None = None) -> bool:
        local = _local(at, "at")
        return any(
            opens <= local < closes for opens, closes in self.periods_on(local.date(), cal=cal)
        )

    def next_open(
        self,
        at: datetime,
        *,
        cal: Calendar | None = None,
        within: timedelta = timedelta(days=30),
    ) -> datetime | None:
        """``at`` itself (in Asia/Shanghai) if open, else the next opening, or None.

        None when nothing opens within ``within`` (default 30 days) of ``at``.
        """
        local = _local(at, "at")
        horizon = local + within
        d = local.date()
        while d <= horizon.date():
            for opens, closes in self.periods_on(d, cal=cal):
                if closes <= local:
                    continue
                candidate = max(opens, local)
                return candidate if candidate <= horizon else None
            d += _ONE_DAY
        return None
