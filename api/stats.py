"""Figures for staff (``GET /api/v1/admin/stats``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from api.schemas import Day
from models.users import Role
from services import clock
from services import stats as service
from services.auth import Principal

bp = Blueprint("admin_stats", url_prefix="/api/v1/admin/stats")


class StatsQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: Day | None = Field(default=None, alias="from",
                              description="开始日期 YYYY-MM-DD（含），默认结束日期前29天")
    end: Day | None = Field(default=None, alias="to",
                            description="结束日期 YYYY-MM-DD（含），默认今天")
    group_by: Literal["hall", "department"] = Field(default="hall", description="按大厅或部门分组")


class CaseFigures(BaseModel):
    total: int
    by_status: dict[str, int]
    overdue: int = Field(description="未办结且已超过办结时限")
    closed: int
    closed_on_time: int
    avg_handling_hours: float | None = Field(description="已办结件平均用时（受理到办结）")
    avg_promised_hours: float | None = Field(description="同一批办件的平均承诺时限（受理到应办结）")
    avg_promised_days: float | None = Field(description="平均承诺工作日")


class HelperFigures(BaseModel):
    active: int = Field(description="进行中的帮办指派")
    done: int
    helpers: int = Field(description="参与的帮办员人数")


class RatingFigures(BaseModel):
    total: int
    by_level: dict[str, int]
    satisfaction_rate: float | None = Field(description="基本满意及以上占比")
    bad: int
    rectification_tasks: int
    rectified: int
    rectification_rate: float | None = Field(description="已答复整改的差评占比")
    rectification_overdue: int
    rectification_escalated: int


class GroupFigures(BaseModel):
    key: str = Field(description="大厅编码或部门名称")
    name: str
    cases: CaseFigures
    helpers: HelperFigures
    ratings: RatingFigures


class HelperLoadOut(BaseModel):
    helper_id: int
    nickname: str
    active: int
    done: int


class StatsOut(BaseModel):
    from_date: date
    to_date: date
    group_by: Literal["hall", "department"]
    generated_at: datetime
    total: GroupFigures
    groups: list[GroupFigures]
    helper_load: list[HelperLoadOut] = Field(description="帮办员负载（进行中多者在前，最多50人）")


@bp.get("")
@endpoint(query=StatsQuery, response=StatsOut, roles=[Role.staff, Role.admin],
          summary="统计：办件状态、超期、办理用时、帮办负载、满意度与差评整改率", tag="admin")
async def stats(_request: Request, query: StatsQuery, principal: Principal) -> StatsOut:
    rep = await service.report(actor=principal, start=query.start, end=query.end,
                               group_by=query.group_by)
    return StatsOut(
        from_date=rep.start, to_date=rep.end, group_by=rep.group_by,
        generated_at=clock.local(rep.generated_at),
        total=GroupFigures.model_validate(service.as_dict(rep.total)),
        groups=[GroupFigures.model_validate(service.as_dict(g)) for g in rep.groups],
        helper_load=[HelperLoadOut(helper_id=h.helper_id, nickname=h.nickname, active=h.active,
                                   done=h.done) for h in rep.helper_load],
    )
