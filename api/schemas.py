"""Bodies shared by every domain's API: the error envelope and small building blocks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
