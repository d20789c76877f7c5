"""Working-day calendar, 办结时限 and opening hours.

Expected dates were counted by hand against chinese_calendar 1.11.0's 2026 data:

* 元旦 2026: 1/1 (Thu)–1/3 off; 1/4 (Sun) worked.
* 春节 2026: 2/15 (Sun)–2/23 (Mon) off; 2/14 (Sat) and 2/28 (Sat) worked.
* 中秋 2026: 9/25 (Fri)–9/27 off; 国庆 2026: 10/1 (Thu)–10/7 (Wed) off;
  9/20 (Sun) and 10/10 (Sat) worked.
* 2027 from seed/holidays.json (provisional): 1/1 (Fri) 元旦, 5/1–5/2, 10/1–10/3.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from services.workcalendar import (
    END_OF_DAY,
    SEED_PATH,
    TZ,
    Calendar,
    OpeningHours,
    add_working_days,
    default_calendar,
    due_with_pauses,
    holiday_name,
    is_holiday,
    is_workday,
)

HALL = OpeningHours.from_seed(
    {"weekdays": [1, 2, 3, 4, 5], "periods": [["09:00", "12:00"], ["14:00", "17:30"]]}
)


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=TZ)


def due(y: int, m: int, d: int) -> datetime:
    return datetime.combine(date(y, m, d), END_OF_DAY, tzinfo=TZ)


# --- calendar facts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "workday", "name"),
    [
        # 国庆 + 中秋 2026
        (date(2026, 9, 20), True, None),  # Sunday, make-up
        (date(2026, 9, 25), False, "中秋节"),
        (date(2026, 9, 27), False, "中秋节"),
        (date(2026, 9, 30), True, None),
        (date(2026, 10, 1), False, "国庆节"),
        (date(2026, 10, 5), False, "国庆节"),  # Monday
        (date(2026, 10, 7), False, "国庆节"),  # Wednesday
        (date(2026, 10, 8), True, None),
        (date(2026, 10, 10), True, None),  # Saturday, make-up
        (date(2026, 10, 11), False, None),  # ordinary Sunday: rest, not a holiday
        # 春节 2026
        (date(2026, 2, 14), True, None),  # Saturday, make-up
        (date(2026, 2, 15), False, "春节"),
        (date(2026, 2, 23), False, "春节"),  # Monday
        (date(2026, 2, 24), True, None),
        (date(2026, 2, 28), True, None),  # Saturday, make-up
        # 元旦 2026
        (date(2026, 1, 1), False, "元旦"),
        (date(2026, 1, 4), True, None),  # Sunday, make-up
        # ordinary days
        (date(2026, 11, 21), False, None),
        (date(2026, 11, 23), True, None),
        # 2027, from the seed file
        (date(2027, 1, 1), False, "元旦"),
        (date(2027, 5, 2), False, "劳动节"),  # Sunday inside the holiday
        (date(2027, 10, 3), False, "国庆节"),
        (date(2027, 10, 4), True, None),  # provisional: no official schedule yet
        # beyond all data: weekends only
        (date(2028, 1, 1), False, None),
        (date(2028, 1, 3), True, None),
    ],
)
def test_calendar_facts(day: date, workday: bool, name: str | None) -> None:
    assert is_workday(day) is workday
    assert holiday_name(day) == name
    assert is_holiday(day) is (name is not None)


def test_makeup_workdays_are_weekend_workdays() -> None:
    cal = default_calendar()
    assert cal.is_makeup_workday(date(2026, 10, 10))
    assert cal.is_makeup_workday(date(2026, 9, 20))
    assert not cal.is_makeup_workday(date(2026, 10, 9))  # ordinary Friday
    assert not cal.is_makeup_workday(date(2026, 10, 11))


def test_library_only_calendar_does_not_know_2027_holidays() -> None:
    assert Calendar().is_workday(date(2027, 1, 1))
    assert default_calendar().is_holiday(date(2027, 1, 1))


def test_seed_file_is_marked_provisional() -> None:
    data = json.loads(Path(SEED_PATH).read_text(encoding="utf-8"))
    assert "2027" in data
    assert "PROVISIONAL" in data["2027"]["_note"]


def test_from_data_feeds_extra_years_and_overrides() -> None:
    cal = Calendar.from_data(
        {
            "_note": "ignored",
            "2027": {"holidays": {"2027-02-08": "春节"}, "workdays": ["2027-02-06"]},
            # overriding a year the library knows: staff correction
            "2026": {"holidays": {"2026-11-23": "应急停工"}, "workdays": ["2026-11-21"]},
        }
    )
    assert cal.holiday_name(date(2027, 2, 8)) == "春节"
    assert cal.is_makeup_workday(date(2027, 2, 6))
    assert not cal.is_workday(date(2026, 11, 23))
    assert cal.is_workday(date(2026, 11, 21))
    # the library still answers for dates not overridden
    assert cal.holiday_name(date(2026, 10, 1)) == "国庆节"
    assert not Calendar.from_data({}, use_library=False).is_holiday(date(2026, 10, 1))


def test_overlay_replaces_status_per_date() -> None:
    base = default_calendar()
    cal = base.overlay({"2027": {"holidays": {"2027-01-04": "元旦"}, "workdays": ["2027-01-01"]}})
    assert cal.is_workday(date(2027, 1, 1))
    assert cal.holiday_name(date(2027, 1, 1)) is None
    assert cal.holiday_name(date(2027, 1, 4)) == "元旦"
    assert cal.holiday_name(date(2027, 10, 1)) == "国庆节"  # seed entries survive
    assert base.holiday_name(date(2027, 1, 1)) == "元旦"  # base is untouched


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"2027": {"holidays": {"2028-01-01": "元旦"}}}, "another year"),
        ({"2027": {"holidays": {"2027-01-01": "元旦"}, "workdays": ["2027-01-01"]}}, "both"),
        ({"2027": {"holiday": {"2027-01-01": "元旦"}}}, "unknown keys"),
        ({"27": {}}, "years"),
        ({"2027": {"holidays": {"2027-1-1": "元旦"}}}, "YYYY-MM-DD"),
        ({"2027": {"holidays": {"2027-01-01": ""}}}, "needs a name"),
    ],
)
def test_bad_calendar_data_is_rejected(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Calendar.from_data(data)


def test_datetime_is_not_accepted_as_a_date() -> None:
    with pytest.raises(TypeError):
        is_workday(at(2026, 10, 1, 12))


# --- due dates --------------------------------------------------------------------------


def test_due_across_national_day_ends_on_makeup_saturday() -> None:
    # 9/29 (1), 9/30 (2), 10/1–7 off, 10/8 (3), 10/9 (4), 10/10 Sat make-up (5)
    assert add_working_days(at(2026, 9, 28, 10), 5) == due(2026, 10, 10)


def test_due_across_mid_autumn_and_national_day() -> None:
    # accepted Fri 9/18: 9/20 Sun make-up (1), 9/21–24 (2–5), 9/25–27 off,
    # 9/28–30 (6–8), 10/1–7 off, 10/8 (9), 10/9 (10)
    assert add_working_days(at(2026, 9, 18, 16), 10) == due(2026, 10, 9)


def test_acceptance_day_does_not_count() -> None:
    assert add_working_days(at(2026, 11, 23, 9), 1) == due(2026, 11, 24)
    # accepted on a Saturday: the next working day is Monday
    assert add_working_days(at(2026, 11, 21, 9), 1) == due(2026, 11, 23)
    # accepted late on Friday before 中秋: Mon 9/28
    assert add_working_days(at(2026, 9, 24, 23, 59), 1) == due(2026, 9, 28)


def test_due_across_spring_festival_2026() -> None:
    start = at(2026, 2, 13, 10)  # Friday before the holiday
    assert add_working_days(start, 1) == due(2026, 2, 14)  # Sat make-up
    assert add_working_days(start, 2) == due(2026, 2, 24)
    assert add_working_days(start, 5) == due(2026, 2, 27)
    assert add_working_days(start, 6) == due(2026, 2, 28)  # Sat make-up


def test_due_across_year_end_into_2027() -> None:
    # 12/31 (1), 2027-01-01 元旦, 1/2–1/3 weekend, 1/4 (2), 1/5 (3)
    assert add_working_days(at(2026, 12, 30, 10), 3) == due(2027, 1, 5)
    assert add_working_days(at(2026, 12, 31, 10), 1) == due(2027, 1, 4)
    # without the seed file 1/1/2027 would wrongly be a workday
    assert add_working_days(at(2026, 12, 30, 10), 3, cal=Calendar()) == due(2027, 1, 4)


def test_due_uses_shanghai_date_of_acceptance() -> None:
    # 2026-09-28 17:00 UTC is already 9/29 01:00 in Shanghai
    accepted = datetime(2026, 9, 28, 17, 0, tzinfo=UTC)
    assert add_working_days(accepted, 1) == due(2026, 9, 30)


def test_due_time_is_end_of_day_in_shanghai() -> None:
    result = add_working_days(at(2026, 11, 23, 9), 1)
    assert result.tzinfo == TZ
    assert result.time() == time(23, 59, 59, 999999)


def test_zero_day_limit_is_due_the_same_day() -> None:
    assert add_working_days(at(2026, 9, 28, 10), 0) == due(2026, 9, 28)


def test_due_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        add_working_days(datetime(2026, 9, 28, 10), 5)  # naive on purpose
    with pytest.raises(ValueError):
        add_working_days(at(2026, 9, 28, 10), -1)


# --- pauses -----------------------------------------------------------------------------

START = at(2026, 9, 28, 10)  # Monday; 5 days without pauses is due 10/10


def test_no_pauses_equals_add_working_days() -> None:
    assert due_with_pauses(START, 5, []) == due(2026, 10, 10)


def test_pause_skips_every_workday_it_touches() -> None:
    # paused 9/29 15:00 → 9/30 09:00: both days lost;
    # 10/8 (1), 10/9 (2), 10/10 (3), 10/12 (4), 10/13 (5)
    pauses = [(at(2026, 9, 29, 15), at(2026, 9, 30, 9))]
    assert due_with_pauses(START, 5, pauses) == due(2026, 10, 13)


def test_pause_spanning_national_day_only_costs_the_workdays_it_touches() -> None:
    # 9/30 and 10/8 lost, the holiday was not counted anyway;
    # 9/29 (1), 10/9 (2), 10/10 (3), 10/12 (4), 10/13 (5)
    pauses = [(at(2026, 9, 30, 10), at(2026, 10, 8, 10))]
    assert due_with_pauses(START, 5, pauses) == due(2026, 10, 13)


def test_pause_within_holiday_changes_nothing() -> None:
    pauses = [(at(2026, 10, 2, 9), at(2026, 10, 5, 18))]
    assert due_with_pauses(START, 5, pauses) == due(2026, 10, 10)


def test_pause_ending_at_midnight_does_not_touch_next_day() -> None:
    # only 9/29 lost: 9/30 (1), 10/8 (2), 10/9 (3), 10/10 (4), 10/12 (5)
    pauses = [(at(2026, 9, 29, 14), at(2026, 9, 30, 0))]
    assert due_with_pauses(START, 5, pauses) == due(2026, 10, 12)


def test_overlapping_pauses_count_a_day_once_in_any_order() -> None:
    pauses = [
        (at(2026, 9, 29, 11), at(2026, 9, 29, 16)),
        (at(2026, 9, 29, 10), at(2026, 9, 29, 12)),
    ]
    assert due_with_pauses(START, 5, pauses) == due(2026, 10, 12)
    assert due_with_pauses(START, 5, pauses[::-1]) == due(2026, 10, 12)


def test_pause_after_due_date_changes_nothing() -> None:
    pauses = [(at(2026, 10, 20, 9), at(2026, 10, 22, 9))]
    assert due_with_pauses(START, 5, pauses) == due(2026, 10, 10)


def test_pause_on_makeup_saturday_in_spring_festival() -> None:
    start = at(2026, 2, 12, 10)  # Thu: 2/13 (1), 2/14 Sat (2), 2/24 (3)
    assert due_with_pauses(start, 3, []) == due(2026, 2, 24)
    pauses = [(at(2026, 2, 14, 9), at(2026, 2, 14, 11))]
    assert due_with_pauses(start, 3, pauses) == due(2026, 2, 25)


def test_pause_on_acceptance_day_changes_nothing() -> None:
    pauses = [(at(2026, 9, 28, 10), at(2026, 9, 28, 16))]
    assert due_with_pauses(START, 5, pauses) == due(2026, 10, 10)


def test_open_pause_means_no_due_time() -> None:
    assert due_with_pauses(START, 5, [(at(2026, 9, 29, 15), None)]) is None
    closed_then_open = [(at(2026, 9, 29, 9), at(2026, 9, 29, 10)), (at(2026, 10, 9, 9), None)]
    assert due_with_pauses(START, 5, closed_then_open) is None


def test_zero_day_limit_resumes_on_pause_end_day() -> None:
    pauses = [(at(2026, 9, 28, 11), at(2026, 9, 30, 9))]
    assert due_with_pauses(START, 0, pauses) == due(2026, 9, 30)


def test_bad_pauses_rejected() -> None:
    with pytest.raises(ValueError, match="before the case was accepted"):
        due_with_pauses(START, 5, [(at(2026, 9, 28, 9), at(2026, 9, 29, 9))])
    with pytest.raises(ValueError, match="end before it begins"):
        due_with_pauses(START, 5, [(at(2026, 9, 30, 9), at(2026, 9, 29, 9))])
    with pytest.raises(ValueError, match="before the case was accepted"):
        due_with_pauses(START, 5, [(at(2026, 9, 27, 9), None)])


# --- opening hours ----------------------------------------------------------------------


def test_open_on_ordinary_weekday_within_periods() -> None:
    assert HALL.is_open(at(2026, 11, 23, 9))
    assert HALL.is_open(datetime(2026, 11, 23, 17, 29, 59, tzinfo=TZ))
    assert not HALL.is_open(at(2026, 11, 23, 8, 59))
    assert not HALL.is_open(at(2026, 11, 23, 12, 30))  # lunch
    assert not HALL.is_open(at(2026, 11, 23, 17, 30))  # closing time is exclusive
    assert not HALL.is_open(at(2026, 11, 21, 10))  # ordinary Saturday


def test_open_on_makeup_saturday_and_sunday() -> None:
    assert HALL.is_open(at(2026, 10, 10, 10))
    assert HALL.is_open(at(2026, 2, 14, 15))
    assert HALL.is_open(at(2026, 9, 20, 10))  # Sunday


def test_closed_on_holiday_monday() -> None:
    assert not HALL.is_open(at(2026, 10, 5, 10))
    assert not HALL.is_open(at(2026, 2, 23, 10))


def test_is_open_converts_to_shanghai_time() -> None:
    # 02:00 UTC is 10:00 in Shanghai
    assert HALL.is_open(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    assert not HALL.is_open(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))  # 18:00 local


def test_weekend_hall_opens_ordinary_weekends_but_not_holidays() -> None:
    every_day = OpeningHours.from_seed(
        {"weekdays": [1, 2, 3, 4, 5, 6, 7], "periods": [["09:00", "17:00"]]}
    )
    assert every_day.is_open(at(2026, 11, 21, 10))
    assert not every_day.is_open(at(2026, 10, 3, 10))  # Saturday inside 国庆


def test_24h_is_always_open() -> None:
    always = OpeningHours.from_seed("24h")
    assert always.is_open(at(2026, 10, 1, 3))
    assert always.is_open(at(2026, 11, 21, 23, 59))
    assert always.periods_on(date(2026, 10, 1)) == [(at(2026, 10, 1), at(2026, 10, 2))]
    assert always.next_open(at(2026, 10, 1, 3)) == at(2026, 10, 1, 3)


def test_periods_on() -> None:
    assert HALL.periods_on(date(2026, 11, 23)) == [
        (at(2026, 11, 23, 9), at(2026, 11, 23, 12)),
        (at(2026, 11, 23, 14), at(2026, 11, 23, 17, 30)),
    ]
    assert HALL.periods_on(date(2026, 10, 10))[0] == (at(2026, 10, 10, 9), at(2026, 10, 10, 12))
    assert HALL.periods_on(date(2026, 10, 1)) == []
    assert HALL.periods_on(date(2026, 11, 22)) == []
    start, _ = HALL.periods_on(date(2026, 11, 23))[0]
    assert start.tzinfo == TZ


def test_next_open() -> None:
    # already open: the moment itself, expressed in Shanghai time
    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    result = HALL.next_open(now)
    assert result == now
    assert result is not None and result.tzinfo == TZ
    assert HALL.next_open(at(2026, 11, 23, 12, 30)) == at(2026, 11, 23, 14)
    assert HALL.next_open(at(2026, 9, 30, 17, 45)) == at(2026, 10, 8, 9)
    assert HALL.next_open(at(2026, 10, 9, 18)) == at(2026, 10, 10, 9)  # make-up Saturday
    assert HALL.next_open(at(2026, 2, 13, 18)) == at(2026, 2, 14, 9)
    assert HALL.next_open(at(2026, 2, 14, 18)) == at(2026, 2, 24, 9)


def test_next_open_gives_up_after_window() -> None:
    # 10/8 09:00 is 7 days 15h15m after 9/30 17:45
    assert HALL.next_open(at(2026, 9, 30, 17, 45), within=timedelta(days=7)) is None
    assert HALL.next_open(at(2026, 9, 30, 17, 45), within=timedelta(days=8)) == at(2026, 10, 8, 9)
    # open only on make-up days, and there are none from 11/22 through 12/22
    makeup_only = OpeningHours(frozenset(), ((time(9), time(12)),))
    assert makeup_only.next_open(at(2026, 11, 22, 10)) is None
    assert makeup_only.next_open(at(2026, 10, 9, 18)) == at(2026, 10, 10, 9)


@pytest.mark.parametrize(
    "raw",
    [
        "25h",
        {"weekdays": [1, 8], "periods": [["09:00", "12:00"]]},
        {"weekdays": [1], "periods": [["12:00", "09:00"]]},
        {"weekdays": [1], "periods": [["09:00", "12:00"], ["11:00", "13:00"]]},
        {"weekdays": [1], "periods": []},
        {"weekdays": ["1"], "periods": [["09:00", "12:00"]]},
        {"weekdays": [1], "periods": [["09:00"]]},
    ],
)
def test_bad_opening_hours_rejected(raw: object) -> None:
    with pytest.raises(ValueError):
        OpeningHours.from_seed(raw)


def test_periods_are_sorted() -> None:
    hours = OpeningHours.from_seed(
        {"weekdays": [1], "periods": [["14:00", "17:30"], ["09:00", "12:00"]]}
    )
    assert hours.periods == ((time(9), time(12)), (time(14), time(17, 30)))


def test_every_seed_hall_and_service_point_parses() -> None:
    seed = json.loads((SEED_PATH.parent / "qingyang_demo.json").read_text(encoding="utf-8"))
    places = seed["halls"] + seed["service_points"]
    assert places
    for place in places:
        OpeningHours.from_seed(place["hours"])
