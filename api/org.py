"""组织机构: regions, departments and memberships (admins manage them), and one's own positions."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from api.schemas import Ok
from models.org import Department, Membership, Position, Region, RegionLevel
from models.users import Role
from services import clock, org, scope
from services.auth import Principal

bp = Blueprint("org", url_prefix="/api/v1/org")
admin_bp = Blueprint("admin_org", url_prefix="/api/v1/admin/org")
ADMIN = [Role.admin]
_CODE = r"^\d{6,12}$"
_HALL = r"^[A-Za-z0-9-]{1,32}$"


class OrgRegionIn(BaseModel):
    code: str = Field(pattern=_CODE, description="行政区划代码：市、县6位，乡镇街道9位，社区村12位")
    name: str = Field(min_length=1, max_length=64)
    level: RegionLevel
    parent_code: str | None = Field(default=None, pattern=_CODE, description="上级区划代码")


class OrgRenameIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class OrgRegionOut(BaseModel):
    code: str
    name: str
    level: RegionLevel
    parent_code: str | None


class OrgRegionListQuery(BaseModel):
    parent: str | None = Field(default=None, pattern=_CODE, description="只列此区划的直接下级")


class OrgRegionListOut(BaseModel):
    regions: list[OrgRegionOut]


class OrgHallRegionIn(BaseModel):
    region_code: str = Field(pattern=_CODE)


class OrgHallRegionOut(BaseModel):
    hall_code: str
    region_code: str


class OrgDepartmentIn(BaseModel):
    region_code: str = Field(pattern=_CODE)
    name: str = Field(min_length=1, max_length=64,
                      description="部门名称，与事项、办件、诉求上的承办部门一致（如 市人社局）")


class OrgDepartmentOut(BaseModel):
    id: int
    name: str
    region_code: str
    region_name: str


class OrgDepartmentListQuery(BaseModel):
    region: str | None = Field(default=None, pattern=_CODE)


class OrgDepartmentListOut(BaseModel):
    departments: list[OrgDepartmentOut]


class OrgMembershipIn(BaseModel):
    user_id: int = Field(ge=1)
    position: Position = Field(description=(
        "clerk 综窗受理员、hall_manager 大厅负责人、helper 帮办员（大厅）；"
        "approver 审批人员（部门）；supervisor 督查（区划及以下）"))
    hall_code: str | None = Field(default=None, pattern=_HALL)
    department_id: int | None = Field(default=None, ge=1)
    region_code: str | None = Field(default=None, pattern=_CODE)


class OrgMoveIn(BaseModel):
    hall_code: str | None = Field(default=None, pattern=_HALL)
    department_id: int | None = Field(default=None, ge=1)
    region_code: str | None = Field(default=None, pattern=_CODE)


class OrgMembershipOut(BaseModel):
    id: int
    user_id: int
    nickname: str
    position: Position
    hall_code: str | None
    hall_name: str | None
    department_id: int | None
    department_name: str | None
    region_code: str | None
    region_name: str | None
    created_at: datetime


class OrgMembershipListQuery(BaseModel):
    user_id: int | None = Field(default=None, ge=1)
    hall_code: str | None = Field(default=None, pattern=_HALL)
    department_id: int | None = Field(default=None, ge=1)
    region_code: str | None = Field(default=None, pattern=_CODE)
    position: Position | None = None
    cursor: int | None = Field(default=None, ge=1, description="上一页返回的 next_cursor")
    limit: int = Field(default=50, ge=1, le=200)


class OrgMembershipListOut(BaseModel):
    memberships: list[OrgMembershipOut]
    next_cursor: int | None


class OrgMyScopeOut(BaseModel):
    memberships: list[OrgMembershipOut]
    everything: bool = Field(description="管理员：全部数据")
    hall_codes: list[str] = Field(description="可见数据所属的大厅")
    departments: list[str] = Field(description="审批人员所在部门")
    scanning_hall: str | None = Field(description="扫码时记为所在大厅")


def _region_out(r: Region) -> OrgRegionOut:
    return OrgRegionOut(code=r.code, name=r.name, level=r.level,
                        parent_code=org.parent_code_of(r))


def _department_out(d: Department) -> OrgDepartmentOut:
    return OrgDepartmentOut(id=d.id, name=d.name, region_code=d.region.code,
                            region_name=d.region.name)


def _membership_out(m: Membership) -> OrgMembershipOut:
    return OrgMembershipOut(
        id=m.id, user_id=m.user.id, nickname=m.user.nickname, position=m.position,
        hall_code=m.hall.code if m.hall else None, hall_name=m.hall.name if m.hall else None,
        department_id=m.department.id if m.department else None,
        department_name=m.department.name if m.department else None,
        region_code=(m.region.code if m.region else
                     m.department.region.code if m.department else None),
        region_name=(m.region.name if m.region else
                     m.department.region.name if m.department else None),
        created_at=clock.local(m.created_at))


# --- regions -------------------------------------------------------------------------------


@admin_bp.get("/regions")
@endpoint(query=OrgRegionListQuery, response=OrgRegionListOut, roles=ADMIN, tag="org",
          summary="行政区划（全部，或某区划的直接下级）")
async def list_regions(_request: Request, query: OrgRegionListQuery,
                       principal: Principal) -> OrgRegionListOut:
    rows = await org.list_regions(actor=principal, parent_code=query.parent)
    return OrgRegionListOut(regions=[_region_out(r) for r in rows])


@admin_bp.post("/regions")
@endpoint(body=OrgRegionIn, response=OrgRegionOut, status=201, roles=ADMIN, tag="org",
          summary="新增行政区划")
async def create_region(_request: Request, body: OrgRegionIn,
                        principal: Principal) -> OrgRegionOut:
    region = await org.create_region(actor=principal, code=body.code, name=body.name,
                                     level=body.level, parent_code=body.parent_code)
    return _region_out(region)


@admin_bp.put("/regions/<code:str>")
@endpoint(body=OrgRenameIn, response=OrgRegionOut, roles=ADMIN, tag="org", summary="更名行政区划")
async def rename_region(_request: Request, code: str, body: OrgRenameIn,
                        principal: Principal) -> OrgRegionOut:
    return _region_out(await org.rename_region(actor=principal, code=code,
                                                     name=body.name))


@admin_bp.delete("/regions/<code:str>")
@endpoint(response=Ok, roles=ADMIN, tag="org",
          summary="删除行政区划（其下无区划、部门、大厅、人员时）")
async def delete_region(_request: Request, code: str, principal: Principal) -> Ok:
    await org.delete_region(actor=principal, code=code)
    return Ok()


@admin_bp.put("/halls/<hall_code:str>/region")
@endpoint(body=OrgHallRegionIn, response=OrgHallRegionOut, roles=ADMIN, tag="org",
          summary="设置大厅所属行政区划（决定督查、审批人员的数据范围）")
async def set_hall_region(_request: Request, hall_code: str, body: OrgHallRegionIn,
                          principal: Principal) -> OrgHallRegionOut:
    hall = await org.set_hall_region(actor=principal, hall_code=hall_code,
                                     region_code=body.region_code)
    return OrgHallRegionOut(hall_code=hall.code, region_code=body.region_code)


# --- departments ---------------------------------------------------------------------------


@admin_bp.get("/departments")
@endpoint(query=OrgDepartmentListQuery, response=OrgDepartmentListOut, roles=ADMIN, tag="org",
          summary="部门")
async def list_departments(_request: Request, query: OrgDepartmentListQuery,
                           principal: Principal) -> OrgDepartmentListOut:
    rows = await org.list_departments(actor=principal, region_code=query.region)
    return OrgDepartmentListOut(departments=[_department_out(d) for d in rows])


@admin_bp.post("/departments")
@endpoint(body=OrgDepartmentIn, response=OrgDepartmentOut, status=201, roles=ADMIN, tag="org",
          summary="新增部门")
async def create_department(_request: Request, body: OrgDepartmentIn,
                            principal: Principal) -> OrgDepartmentOut:
    return _department_out(await org.create_department(
        actor=principal, region_code=body.region_code, name=body.name))


@admin_bp.put("/departments/<department_id:int>")
@endpoint(body=OrgRenameIn, response=OrgDepartmentOut, roles=ADMIN, tag="org",
          summary="部门更名")
async def rename_department(_request: Request, department_id: int, body: OrgRenameIn,
                            principal: Principal) -> OrgDepartmentOut:
    return _department_out(await org.rename_department(
        actor=principal, department_id=department_id, name=body.name))


@admin_bp.delete("/departments/<department_id:int>")
@endpoint(response=Ok, roles=ADMIN, tag="org", summary="删除部门（无人员时）")
async def delete_department(_request: Request, department_id: int, principal: Principal) -> Ok:
    await org.delete_department(actor=principal, department_id=department_id)
    return Ok()


# --- memberships ---------------------------------------------------------------------------


@admin_bp.get("/memberships")
@endpoint(query=OrgMembershipListQuery, response=OrgMembershipListOut, roles=ADMIN, tag="org",
          summary="人员岗位")
async def list_memberships(_request: Request, query: OrgMembershipListQuery,
                           principal: Principal) -> OrgMembershipListOut:
    rows, nxt = await org.list_memberships(
        actor=principal, user_id=query.user_id, hall_code=query.hall_code,
        department_id=query.department_id, region_code=query.region_code,
        position=query.position, cursor=query.cursor, limit=query.limit)
    return OrgMembershipListOut(memberships=[_membership_out(m) for m in rows], next_cursor=nxt)


@admin_bp.post("/memberships")
@endpoint(body=OrgMembershipIn, response=OrgMembershipOut, status=201, roles=ADMIN, tag="org",
          summary="任命岗位（同时授予所需角色，下次刷新登录凭证生效）")
async def add_membership(_request: Request, body: OrgMembershipIn,
                         principal: Principal) -> OrgMembershipOut:
    row = await org.add_membership(actor=principal, user_id=body.user_id,
                                   position=body.position, hall_code=body.hall_code,
                                   department_id=body.department_id,
                                   region_code=body.region_code)
    return _membership_out(row)


@admin_bp.put("/memberships/<membership_id:int>")
@endpoint(body=OrgMoveIn, response=OrgMembershipOut, roles=ADMIN, tag="org",
          summary="调岗：同一岗位换到另一大厅、部门或区划")
async def move_membership(_request: Request, membership_id: int, body: OrgMoveIn,
                          principal: Principal) -> OrgMembershipOut:
    row = await org.move_membership(actor=principal, membership_id=membership_id,
                                    hall_code=body.hall_code, department_id=body.department_id,
                                    region_code=body.region_code)
    return _membership_out(row)


@admin_bp.delete("/memberships/<membership_id:int>")
@endpoint(response=Ok, roles=ADMIN, tag="org", summary="免去岗位")
async def remove_membership(_request: Request, membership_id: int, principal: Principal) -> Ok:
    await org.remove_membership(actor=principal, membership_id=membership_id)
    return Ok()


# --- one's own -----------------------------------------------------------------------------


@bp.get("/me")
@endpoint(response=OrgMyScopeOut, tag="org", summary="我的岗位与数据范围")
async def my_scope(_request: Request, principal: Principal) -> OrgMyScopeOut:
    rows = await org.memberships().filter(user_id=principal.user_id).order_by("id")
    sc = await scope.scope_of(principal)
    return OrgMyScopeOut(
        memberships=[_membership_out(m) for m in rows], everything=sc.everything,
        hall_codes=sorted(sc.hall_codes) if principal.is_staff else [],
        departments=sorted({g.name for g in sc.departments}),
        scanning_hall=sc.scanning_hall if principal.is_staff else None)
