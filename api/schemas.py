"""Bodies shared by every domain's API: the error envelope and small building blocks."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="稳定的机器可读错误码，如 slot_full")
    message: str = Field(description="面向居民的中文说明")
    fields: dict[str, str] = Field(default_factory=dict, description="逐字段的错误说明")
    retry_after: int | None = None

    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Ok(BaseModel):
    ok: bool = True


class Page(BaseModel):
    """Cursor pagination: pass ``next_cursor`` back as ``cursor`` to get the next page."""

    next_cursor: str | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


# Every date a client sends goes through this one type. Python's date reaches 9999-12-31, but a
# day past it (the end of a range is taken exclusive, +1 day) or a zone conversion near 0001
# overflows into a 500; and no service here has anything to say about such days anyway.
MIN_DAY, MAX_DAY = date(2000, 1, 1), date(2099, 12, 31)


def _within_bounds(value: date) -> date:
    if not MIN_DAY <= value <= MAX_DAY:
        raise ValueError(f"日期须在 {MIN_DAY.isoformat()} 至 {MAX_DAY.isoformat()} 之间")
    return value


Day = Annotated[date, AfterValidator(_within_bounds)]
