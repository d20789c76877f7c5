"""Every date a client sends is bounded by one type (``api.schemas.Day``): the extremes Python
accepts (0001-01-01, 9999-12-31) answer a 422 in Chinese, never a 500."""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil
from typing import Any, get_args

import pytest
from pydantic import BaseModel

import api
from api.schemas import Day
from models.users import Role
from services import seed

EXTREMES = ("0001-01-01", "9999-12-31", "1999-12-31", "2100-01-01")


async def test_stats_extreme_dates_are_422(api: Any) -> None:
    staff = await api.login("clerk-dates", Role.staff)
    for day in EXTREMES:
        for params in ({"to": day}, {"from": day}, {"from": day, "to": day}):
            resp = await staff.get("/api/v1/admin/stats", params=params)
            assert resp.status == 422, (params, resp.text)
            fields = resp.json["error"]["fields"]
            assert any("日期须在" in m for m in fields.values()), fields


async def test_booking_day_queries_extreme_dates_are_422(api: Any) -> None:
    await seed.run()
    me = await api.login("resident-dates")
    staff = await api.login("clerk-dates2", Role.staff)
    for day in EXTREMES:
        slots = await me.get("/api/v1/halls/H-QY-000/slots",
                             params={"date": day, "window_kind": "comprehensive"})
        assert slots.status == 422, slots.text
        assert "日期须在" in slots.json["error"]["fields"]["date"]
        desk = await staff.get("/api/v1/halls/H-QY-000/appointments", params={"date": day})
        assert desk.status == 422, desk.text


def _input_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for info in pkgutil.iter_modules(api.__path__):
        module = importlib.import_module(f"api.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, BaseModel) and cls.__module__ == module.__name__
                    and cls.__name__.endswith(("In", "Query"))):
                found.append(cls)
    return found


def _mentions_date(annotation: Any) -> bool:
    if annotation in (dt.date, dt.datetime):
        return True
    return any(_mentions_date(a) for a in get_args(annotation))


@pytest.mark.parametrize("model", _input_models(), ids=lambda m: f"{m.__module__}.{m.__name__}")
def test_every_date_input_uses_the_bounded_type(model: type[BaseModel]) -> None:
    bounded = get_args(Day)[1]
    for name, field in model.model_fields.items():
        if _mentions_date(field.annotation):
            assert bounded in field.metadata or _uses_day(model, name), (
                f"{model.__name__}.{name} takes a date without api.schemas.Day")


def _uses_day(model: type[BaseModel], name: str) -> bool:
    # Optional fields (Day | None) keep the validator inside the union's member.
    bounded = get_args(Day)[1]
    annotation = model.model_fields[name].annotation
    return any(bounded in getattr(a, "__metadata__", ()) for a in get_args(annotation))
