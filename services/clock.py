"""Now, in Asia/Shanghai, aware. The one clock every rule reads, so tests can move it."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def now() -> datetime:
    return datetime.now(SHANGHAI)


def today() -> date:
    return now().date()


def local(dt: datetime) -> datetime:
    """Show a stored aware time in Shanghai time (the ORM may hand back UTC)."""
    return dt.astimezone(SHANGHAI)
