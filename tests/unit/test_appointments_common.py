"""Shared set-up for the appointment tests (no tests here): a movable clock, the demo catalogue,
residents with real-name persons, and hand-made slots."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest

from models.appointments import Slot
from models.catalogue import Hall
from models.users import IdentityLevel, Role, User, UserRole
from services import clock, people, seed, slots
from services.auth import Principal
from services.identity import _id_check_char

# Friday 18 Sep 2026, 10:00 in Qingyang. Sun 20 Sep is a 调休 workday, 1–7 Oct are holidays.
T0 = datetime(2026, 9, 18, 10, 0, tzinfo=clock.SHANGHAI)
HALL = "H-QY-000"
ITEM = "GA-001"  # 居民身份证换领, comprehensive window, offered at H-QY-000
_seq = itertools.count(1)


@dataclass
class Clock:
    at: datetime

    def set(self, at: datetime) -> None:
        self.at = at

    def advance(self, **kw: float) -> None:
        self.at = self.at + timedelta(**kw)


@pytest.fixture
def clk(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(T0)
    monkeypatch.setattr(clock, "now", lambda: c.at)
    return c


async def catalogue() -> None:
    data = seed.load_demo_data()
    await seed.seed_people(data)
    await seed.seed_catalogue(data)
    await slots.seed_slot_rules(data)


def id_number(birth: str = "19900101", region: str = "621002") -> str:
    first17 = f"{region}{birth}{next(_seq) % 1000:03d}"
    return first17 + _id_check_char(first17)


async def resident(birth: str = "19900101", *, tags: list[str] | None = None,
                   roles: tuple[Role, ...] = (), name: str = "测试居民") -> Principal:
    person = await people.upsert_person(name=name, id_number=id_number(birth), tags=tags)
    # Bound as if face-verified (the verification flow itself: tests/api/test_identity_api.py).
    user = await User.create(openid=f"appt-test-{person.id}", person=person,
                             identity_level=IdentityLevel.face)
    for r in roles:
        await UserRole.create(user=user, role=r)
    return Principal(user.id, frozenset({"resident", *(str(r) for r in roles)}))


async def account(*roles: Role) -> Principal:
    """A user without a real-name identity (workers, staff)."""
    user = await User.create(openid=f"appt-acct-{next(_seq)}")
    for r in roles:
        await UserRole.create(user=user, role=r)
    return Principal(user.id, frozenset({"resident", *(str(r) for r in roles)}))


async def make_slot(starts: datetime, *, capacity: int = 5, green_hold: int = 0,
                    minutes: int = 30, hall_code: str = HALL,
                    kind: str = "comprehensive") -> Slot:
    hall = await Hall.get(code=hall_code)
    return await Slot.create(hall=hall, window_kind=kind, starts_at=starts,
                             ends_at=starts + timedelta(minutes=minutes),
                             general_capacity=capacity - green_hold, green_hold=green_hold)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=clock.SHANGHAI)
