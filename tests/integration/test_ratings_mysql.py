"""一事一评 and reopen-once under real concurrency on MySQL: many connections rating the same
case at once end as exactly one rating and at most one rectification task."""

from __future__ import annotations

import asyncio
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
