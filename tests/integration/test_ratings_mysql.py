"""一事一评 and reopen-once under real concurrency on MySQL: many connections rating the same
case at once end as exactly one rating and at most one rectification task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tortoise.exceptions import IntegrityError

from models.cases import Case, CaseStatus
from models.feedback import Feedback, FeedbackEvent, FeedbackKind, FeedbackStatus
from models.ratings import Rating, RectificationTask, TargetType
from models.users import Role, User
from services import feedback, ratings
from services.auth import Principal
from services.errors import AppError

pytestmark = [pytest.mark.mysql, pytest.mark.usefixtures("fake_wechat")]

N = 40


class Meter:
    """How many calls were inside the wrapped coroutine at once: proof the test overlapped."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def wrap(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                return await fn(*args, **kwargs)
            finally:
                self.now -= 1

        return wrapped


async def _resident(code: str) -> Principal:
    user = await User.create(openid=f"openid-{code}")
    return Principal(user.id, frozenset({"resident"}))


async def _case(owner: Principal) -> Case:
    return await Case.create(applicant_id=owner.user_id, submitted_by_id=owner.user_id,
                             department="市民政局", hall_code="H-XF-000",
                             status=CaseStatus.approved)


@pytest.mark.parametrize("level", [5, 1])
async def test_concurrent_ratings_of_one_case_end_as_one(level: int) -> None:
    me = await _resident("rater")
    case = await _case(me)
    meter = Meter()
    rate = meter.wrap(ratings.rate)
    results = await asyncio.gather(
        *(rate(actor=me, target_type=TargetType.case, target_id=case.id, level=level, tags=[])
          for _ in range(N)),
        return_exceptions=True)
    won = [r for r in results if isinstance(r, Rating)]
    lost = [r for r in results if isinstance(r, AppError)]
    assert len(won) == 1, results
    assert len(lost) == N - 1 and all(e.code.name == "already_rated" for e in lost)
    assert meter.peak == N
    # Some losers got past the friendly pre-check and were stopped by the unique index:
    # proof the database, not the Python check, decides.
    assert any(isinstance(e.__cause__, IntegrityError) for e in lost)
    assert await Rating.filter(target_type=TargetType.case, target_id=case.id).count() == 1
    assert await RectificationTask.all().count() == (1 if level == 1 else 0)


async def test_concurrent_reopens_reopen_once() -> None:
    me = await _resident("complainer")
    staff_user = await User.create(openid="openid-clerk")
    await staff_user.roles.create(role=Role.staff)
    clerk = Principal(staff_user.id, frozenset({"resident", "staff"}))
    fb = await feedback.submit(actor=me, kind=FeedbackKind.complaint, text="排队时间太长了",
                               photos=[])
    await feedback.reply(actor=clerk, feedback_id=fb.id, text="已增开窗口")
    meter = Meter()
    reopen = meter.wrap(feedback.reopen)
    results = await asyncio.gather(
        *(reopen(actor=me, feedback_id=fb.id, reason="还是排队") for _ in range(N)),
        return_exceptions=True)
    won = [r for r in results if isinstance(r, Feedback)]
    lost = [r for r in results if isinstance(r, AppError)]
    assert len(won) == 1, results
    assert len(lost) == N - 1 and {e.status for e in lost} == {409}
    assert meter.peak == N
    row = await Feedback.get(id=fb.id)
    assert row.status is FeedbackStatus.reopened and row.reopen_count == 1
    assert await FeedbackEvent.filter(feedback_id=fb.id, action="reopened").count() == 1



async def test_a_rating_and_a_clerk_serving_at_once_never_miss_each_other(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A self checked-in visit is rated while a clerk scans it. The rating is held, after it
    read who served (nobody yet) and before it commits, until the clerk's scan finishes or
    0.5 s pass: without the appointment-row lock the clerk commits in that gap, reads no
    rating, and the rating misses them; with it the clerk waits for the rating's commit."""
    import secrets
    from datetime import timedelta

    from models.appointments import Appointment, AppointmentStatus, Slot
    from models.catalogue import Hall
    from models.ratings import RatingStaff
    from services import appointments, clock, people
    from services.approval import served

    hall = await Hall.create(code="H-T-1", name="测试大厅", level="county", county="西峰区",
                             lat=35.7, lng=107.6, hours={"always": True})
    person = await people.upsert_person(name="王小明", id_number="621002200302170132")
    clerk_user = await User.create(openid="openid-window")
    await clerk_user.roles.create(role=Role.staff)
    clerk = Principal(clerk_user.id, frozenset({"resident", "staff"}))
    me = await _resident("visitor")
    starts = clock.now() - timedelta(minutes=5)
    slot = await Slot.create(hall=hall, window_kind="comprehensive", starts_at=starts,
                             ends_at=starts + timedelta(minutes=30), general_capacity=5)
    appt = await Appointment.create(
        resident_id=me.user_id, person=person, booked_by_id=me.user_id, slot=slot, hall=hall,
        window_kind="comprehensive", item_code="IT-1", status=AppointmentStatus.checked_in,
        checked_in_at=clock.now(), pool="general", starts_at=slot.starts_at,
        ends_at=slot.ends_at, check_in_token=secrets.token_hex(8))

    scanned = asyncio.Event()
    original = served.staff_who_served_appointment
    calls = 0

    async def held(*args: Any, **kwargs: Any) -> list[served.Served]:
        nonlocal calls
        calls += 1
        found = await original(*args, **kwargs)
        if calls == 1:  # the rating's own read: give the clerk the gap
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(scanned.wait(), 0.5)
        return found

    async def scan() -> Appointment:
        await asyncio.sleep(0.05)  # after the rating has read who served
        try:
            return await appointments.check_in_by_code(actor=clerk, code=appt.check_in_token)
        finally:
            scanned.set()

    monkeypatch.setattr(served, "staff_who_served_appointment", held)
    rated, _ = await asyncio.gather(
        ratings.rate(actor=me, target_type=TargetType.appointment, target_id=appt.id,
                     level=2, tags=[]),
        scan())
    assert (await Appointment.get(id=appt.id)).served_by_id == clerk.user_id
    assert await RatingStaff.filter(rating_id=rated.id).values_list(
        "user_id", flat=True) == [clerk.user_id]
