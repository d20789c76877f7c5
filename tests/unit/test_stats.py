"""Staff figures on a small dataset whose every number is worked out by hand below."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from models.cases import Case, HelperAssignment
from models.catalogue import Hall
from models.ratings import LEVEL_LABELS, Rating, RectificationStatus, RectificationTask
from models.users import User
from services import clock, stats
from services.auth import Principal
from services.errors import AppError

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=clock.SHANGHAI)
STAFF = Principal(1, frozenset({"staff"}))


def at(day: int, hour: int = 9, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=clock.SHANGHAI)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)


async def case(user: User, hall: str, dept: str, status: str, created: datetime,
               **kw: Any) -> Case:
    c = await Case.create(applicant=user, submitted_by=user, hall_code=hall, department=dept,
                          status=status, **kw)
    await Case.filter(id=c.id).update(created_at=created)  # auto_now_add can't be set at create
    return c


async def rating(user: User, target: int, level: int, hall: str, dept: str,
                 created: datetime) -> Rating:
    r = await Rating.create(target_type="case", target_id=target, rater=user, level=level,
                            label=LEVEL_LABELS[level], tags={"tags": []}, department=dept,
                            hall_code=hall)
    await Rating.filter(id=r.id).update(created_at=created)
    return r


async def task(r: Rating, status: RectificationStatus, due: datetime, created: datetime,
               escalated: bool = False) -> None:
    t = await RectificationTask.create(rating=r, department=r.department, hall_code=r.hall_code,
                                       status=status, due_at=due, escalated=escalated,
                                       escalation_level=1 if escalated else 0)
    await RectificationTask.filter(id=t.id).update(created_at=created)


@pytest.fixture
async def dataset(frozen: None) -> dict[str, int]:
    await Hall.create(code="H-A", name="甲大厅", level="county", county="西峰区", lat=35.7,
                      lng=107.6, hours={"always": True})
    await Hall.create(code="H-B", name="乙大厅", level="county", county="庆城县", lat=36.0,
                      lng=107.8, hours={"always": True})
    u = await User.create(openid="stats-resident")
    h1 = await User.create(openid="stats-helper-1", nickname="帮办员一")
    h2 = await User.create(openid="stats-helper-2", nickname="帮办员二")
    a, b = ("H-A", "市公安局"), ("H-B", "市人社局")
    # Hall A: two closed (48 h on time against a 96 h promise; 144 h late against 96 h),
    # one overdue, one in time, one withdrawn past its due time (finished: not overdue).
    c1 = await case(u, *a, "closed", at(2), accepted_at=at(2), closed_at=at(4), due_at=at(6),
                    promised_days=5)
    await case(u, *a, "closed", at(2), accepted_at=at(2), closed_at=at(8), due_at=at(6),
               promised_days=3)
    c3 = await case(u, *a, "accepted", at(3), accepted_at=at(3), due_at=at(10))
    c4 = await case(u, *a, "under_review", at(5), accepted_at=at(5), due_at=at(10, month=12))
    await case(u, *a, "withdrawn", at(6), accepted_at=at(6), due_at=at(9), closed_at=at(7))
    # Hall B: approved past due (finished, not overdue) and a fresh submission.
    c6 = await case(u, *b, "approved", at(7), accepted_at=at(7), due_at=at(8))
    await case(u, *b, "submitted", at(19))
    # Outside the range: must count nowhere.
    c8 = await case(u, *a, "accepted", at(15, month=10), accepted_at=at(15, month=10),
                    due_at=at(20, month=10))

    for c, helper, status in ((c3, h1, "accepted"), (c1, h1, "done"), (c4, h2, "offered"),
                              (c6, h2, "done"), (c8, h1, "accepted")):
        await HelperAssignment.create(case=c, helper=helper, status=status, offered_at=at(3),
                                      active_case_id=c.id if status != "done" else None)

    await rating(u, 101, 5, *a, at(10))
    await rating(u, 102, 4, *a, at(10))
    bad_a = await rating(u, 103, 1, *a, at(11))
    await task(bad_a, RectificationStatus.replied, at(30), at(11))
    bad_b = await rating(u, 104, 2, *b, at(1))
    await task(bad_b, RectificationStatus.open, at(19), at(1), escalated=True)
    await rating(u, 105, 3, *b, at(12))
    await rating(u, 106, 5, *a, at(15, month=10))  # outside the range
    return {"h1": h1.id, "h2": h2.id}


async def test_figures_by_hall(dataset: dict[str, int]) -> None:
    rep = await stats.report(actor=STAFF, start=date(2026, 11, 1), end=date(2026, 11, 30),
                             group_by="hall")
    by_key = {g.key: stats.as_dict(g) for g in rep.groups}
    assert list(by_key) == ["H-A", "H-B"]
    a, b, total = by_key["H-A"], by_key["H-B"], stats.as_dict(rep.total)
    assert a["name"] == "甲大厅" and b["name"] == "乙大厅"

    assert a["cases"]["total"] == 5
    assert {k: v for k, v in a["cases"]["by_status"].items() if v} == {
        "closed": 2, "accepted": 1, "under_review": 1, "withdrawn": 1}
    assert a["cases"]["overdue"] == 1
    assert a["cases"]["closed"] == 2 and a["cases"]["closed_on_time"] == 1
    assert a["cases"]["avg_handling_hours"] == pytest.approx(96.0, abs=0.01)
    assert a["cases"]["avg_promised_hours"] == pytest.approx(96.0, abs=0.01)
    assert a["cases"]["avg_promised_days"] == 4.0
    assert b["cases"]["total"] == 2 and b["cases"]["overdue"] == 0
    assert b["cases"]["avg_handling_hours"] is None

    assert a["helpers"] == {"active": 2, "done": 1, "helpers": 2}
    assert b["helpers"] == {"active": 0, "done": 1, "helpers": 1}
    assert total["helpers"] == {"active": 2, "done": 2, "helpers": 2}
    assert [(h.helper_id, h.nickname, h.active, h.done) for h in rep.helper_load] == [
        (dataset["h1"], "帮办员一", 1, 1), (dataset["h2"], "帮办员二", 1, 1)]

    assert a["ratings"]["total"] == 3 and a["ratings"]["bad"] == 1
    assert a["ratings"]["by_level"] == {"非常满意": 1, "满意": 1, "基本满意": 0, "不满意": 0,
                                        "非常不满意": 1}
    assert a["ratings"]["satisfaction_rate"] == pytest.approx(0.6667)
    assert a["ratings"]["rectification_rate"] == 1.0
    assert b["ratings"]["satisfaction_rate"] == 0.5
    assert b["ratings"]["rectification_rate"] == 0.0
    assert b["ratings"]["rectification_overdue"] == 1
    assert b["ratings"]["rectification_escalated"] == 1

    assert total["cases"]["total"] == 7 and total["cases"]["overdue"] == 1
    assert total["cases"]["avg_handling_hours"] == pytest.approx(96.0, abs=0.01)
    assert total["ratings"]["total"] == 5
    assert total["ratings"]["satisfaction_rate"] == 0.6
    assert total["ratings"]["rectification_rate"] == 0.5


async def test_figures_by_department_partition_the_same_totals(dataset: dict[str, int]) -> None:
    by_hall = await stats.report(actor=STAFF, start=date(2026, 11, 1), end=date(2026, 11, 30),
                                 group_by="hall")
    by_dept = await stats.report(actor=STAFF, start=date(2026, 11, 1), end=date(2026, 11, 30),
                                 group_by="department")
    assert [g.key for g in by_dept.groups] == ["市人社局", "市公安局"]
    assert stats.as_dict(by_dept.total) == stats.as_dict(by_hall.total)


async def test_range_is_inclusive_local_dates(dataset: dict[str, int]) -> None:
    # Only 2 November: c1 and c2.
    rep = await stats.report(actor=STAFF, start=date(2026, 11, 2), end=date(2026, 11, 2))
    assert rep.total.cases_total == 2
    assert rep.total.ratings_total == 0


async def test_default_range_is_the_last_thirty_days(dataset: dict[str, int]) -> None:
    rep = await stats.report(actor=STAFF)
    assert (rep.start, rep.end) == (date(2026, 10, 22), date(2026, 11, 20))
    assert rep.total.cases_total == 7


async def test_bad_ranges_and_non_staff_are_refused(frozen: None) -> None:
    with pytest.raises(AppError) as err:
        await stats.report(actor=STAFF, start=date(2026, 11, 2), end=date(2026, 11, 1))
    assert err.value.status == 422
    with pytest.raises(AppError) as err:
        await stats.report(actor=STAFF, start=date(2025, 1, 1), end=date(2026, 11, 1))
    assert err.value.status == 422
    with pytest.raises(AppError) as err:
        await stats.report(actor=Principal(2, frozenset({"resident", "helper"})))
    assert err.value.status == 403


async def test_empty_range_gives_zeros_not_errors(frozen: None) -> None:
    rep = await stats.report(actor=STAFF, start=date(2026, 1, 1), end=date(2026, 1, 31))
    assert rep.groups == [] and rep.total.cases_total == 0
    assert rep.total.satisfaction_rate is None and rep.total.rectification_rate is None


async def test_every_case_state_is_counted(dataset: dict[str, int]) -> None:
    """States the 综窗 rules added (待补齐材料, 不予受理, 退回窗口) are counted like the rest: the
    figures take their state list from the case state table, not a copy of it (a copy missed
    not_accepted and answered 500)."""
    from models.cases import CaseStatus

    walk_in = await User.create(openid="stats-walk-in")
    await case(walk_in, "H-A", "市民政局", CaseStatus.not_accepted.value, at(5))
    rep = await stats.report(actor=STAFF, start=date(2026, 11, 1), end=date(2026, 11, 30),
                             group_by="hall")
    a = {g.key: stats.as_dict(g) for g in rep.groups}["H-A"]
    assert set(a["cases"]["by_status"]) == {s.value for s in CaseStatus}
    assert a["cases"]["by_status"]["not_accepted"] == 1 and a["cases"]["total"] == 6
