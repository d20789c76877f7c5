"""网格: which community worker looks after which community's grid (admins). The grid is the
relation that lets a worker book for the households living there (services/onbehalf.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from models.codes import GridAssignment
from models.users import Role
from services import clock, onbehalf
from services.auth import Principal

bp = Blueprint("admin_grids", url_prefix="/api/v1/admin/grid-assignments")

_MAX_ID = 2**63 - 1


class GridAssignIn(BaseModel):
    user_id: int = Field(ge=1, le=_MAX_ID, description="社区工作者的用户ID")
    county: str = Field(min_length=1, max_length=32, description="区县，如 西峰区")
    community: str = Field(min_length=1, max_length=64, description="社区，如 长庆社区")
    contact_name: str = Field(min_length=1, max_length=32, description="门牌码上公开的联系人")
    contact_phone: str = Field(min_length=5, max_length=32, description="公开的值班电话")


class GridAssignmentOut(BaseModel):
    id: int
    user_id: int
    county: str
    community: str
    contact_name: str
    contact_phone: str
    is_active: bool = Field(description="false：已解除，不再构成代办关系")
    assigned_at: datetime


class GridListQuery(BaseModel):
    user_id: int | None = Field(default=None, ge=1, le=_MAX_ID)
    community: str | None = Field(default=None, min_length=1, max_length=64)
    cursor: int | None = Field(default=None, ge=0, le=_MAX_ID, description="上一页的 next_cursor")
    limit: int = Field(default=50, ge=1, le=200)


class GridListOut(BaseModel):
    assignments: list[GridAssignmentOut]
    next_cursor: int | None


def _out(g: GridAssignment) -> GridAssignmentOut:
    return GridAssignmentOut(id=g.id, user_id=g.user_id,  # type: ignore[attr-defined]
                             county=g.county, community=g.community,
                             contact_name=g.contact_name, contact_phone=g.contact_phone,
                             is_active=g.is_active, assigned_at=clock.local(g.assigned_at))


@bp.post("")
@endpoint(body=GridAssignIn, response=GridAssignmentOut, status=201, roles=[Role.admin],
          summary="为社区工作者分配网格（社区）", tag="admin")
async def assign(_request: Request, body: GridAssignIn, principal: Principal) -> GridAssignmentOut:
    grid = await onbehalf.assign_grid(actor=principal, user_id=body.user_id, county=body.county,
                                      community=body.community, contact_name=body.contact_name,
                                      contact_phone=body.contact_phone)
    return _out(grid)


@bp.get("")
@endpoint(query=GridListQuery, response=GridListOut, roles=[Role.admin], summary="网格分配列表",
          tag="admin")
async def list_assignments(_request: Request, query: GridListQuery,
                           principal: Principal) -> GridListOut:
    rows, nxt = await onbehalf.list_grids(actor=principal, user_id=query.user_id,
                                          community=query.community, cursor=query.cursor,
                                          limit=query.limit)
    return GridListOut(assignments=[_out(g) for g in rows], next_cursor=nxt)


@bp.delete("/<assignment_id:int>")
@endpoint(response=GridAssignmentOut, roles=[Role.admin], summary="解除网格分配", tag="admin")
async def end(_request: Request, assignment_id: int, principal: Principal) -> GridAssignmentOut:
    return _out(await onbehalf.end_grid(actor=principal, assignment_id=assignment_id))
