"""帮办代办: the helper's worklist and offers, residents' proxy authorisations, and helper
profiles for admins."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field
from sanic import Blueprint, Request

from api.cases import MAX_ID, HelperBrief, helper_brief, path_id
from api.endpoint import endpoint
from api.observability import request_id
from models.cases import CaseStatus, HelperAssignment, HelperProfile, ProxyAuthorization, ProxyScope
from models.users import Role
from services import cases, clock, helpers
from services.auth import Principal

bp = Blueprint("helper", url_prefix="/api/v1/helper")
proxy_bp = Blueprint("proxy_authorizations", url_prefix="/api/v1/proxy-authorizations")
admin_bp = Blueprint("helpers_admin", url_prefix="/api/v1/admin/helpers")

_HELPERS = [Role.helper, Role.community_worker]
Label = Annotated[str, Field(min_length=1, max_length=64)]


class WorkItem(BaseModel):
    assignment_id: int
    assignment_status: str
    offer_expires_at: datetime | None = Field(description="未接单的派单在此时间后自动转派")
    case_id: int
    title: str
    hall_code: str
    department: str
    status: CaseStatus
    status_label: str
    due_at: datetime | None
    applicant_name: str | None = Field(description="脱敏姓名")
    help_note: str


class WorklistOut(BaseModel):
    items: list[WorkItem]


class DeclineIn(BaseModel):
    reason: str = Field(min_length=2, max_length=500)


class TransferIn(BaseModel):
    note: str = Field(min_length=2, max_length=500, description="转交说明")
    to_helper_user_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                          description="指定接手人；不填则自动派单")


class AssignmentOut(BaseModel):
    assignment_id: int
    case_id: int
    status: str
    offered_at: datetime
    responded_at: datetime | None


class TransferOut(BaseModel):
    transferred: AssignmentOut
    next_helper: HelperBrief | None


class DutyIn(BaseModel):
    on_duty: bool


class ProfileIn(BaseModel):
    hall_code: str = Field(min_length=1, max_length=32)
    departments: list[Label] = Field(default_factory=list, max_length=50)
    themes: list[Label] = Field(default_factory=list, max_length=50)
    on_duty: bool = True


class ProfileOut(BaseModel):
    user_id: int
    hall_code: str
    departments: list[str]
    themes: list[str]
    on_duty: bool
    open_cases: int


class ProfileListQuery(BaseModel):
    hall_code: str | None = Field(default=None, min_length=1, max_length=32)


class ProfileListOut(BaseModel):
    helpers: list[ProfileOut]


class HelperRevealIn(BaseModel):
    reason: str = Field(min_length=4, max_length=200, description="查看事由，写入审计日志")


class HelperRevealOut(BaseModel):
    person_id: int
    name: str
    id_number: str
    phone: str | None
    birth_date: date


class ProxyGrantIn(BaseModel):
    helper_user_id: int = Field(ge=1, le=MAX_ID, description="被授权的帮办人员")
    scopes: list[ProxyScope] = Field(min_length=1, max_length=5,
                                     description="apply 代为申请 / supplement 代为补正 / "
                                                 "withdraw 代为撤回 / view_personal 查看个人信息 / "
                                                 "book 代为预约")
    case_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="仅限某一办件")
    days: int = Field(default=30, ge=1, le=90, description="有效天数")


class GrantOut(BaseModel):
    id: int
    helper_user_id: int
    scopes: list[str]
    case_id: int | None
    expires_at: datetime
    revoked_at: datetime | None
    created_at: datetime


class GrantListOut(BaseModel):
    authorizations: list[GrantOut]


def _assignment(a: HelperAssignment) -> AssignmentOut:
    return AssignmentOut(assignment_id=a.id, case_id=a.case_id,  # type: ignore[attr-defined]
                         status=a.status, offered_at=clock.local(a.offered_at),
                         responded_at=clock.local(a.responded_at) if a.responded_at else None)


def _profile(p: HelperProfile, load: int) -> ProfileOut:
    return ProfileOut(user_id=p.user_id, hall_code=p.hall_code,  # type: ignore[attr-defined]
                      departments=list(p.scope.get("departments", [])),
                      themes=list(p.scope.get("themes", [])), on_duty=p.on_duty,
                      open_cases=load)


def _grant(g: ProxyAuthorization) -> GrantOut:
    return GrantOut(id=g.id, helper_user_id=g.helper_id,  # type: ignore[attr-defined]
                    scopes=list(g.scope.get("scopes", [])),
                    case_id=g.case_id,  # type: ignore[attr-defined]
                    expires_at=clock.local(g.expires_at),
                    revoked_at=clock.local(g.revoked_at) if g.revoked_at else None,
                    created_at=clock.local(g.created_at))


# ---------------------------------------------------------------------------------------------
# Helper


@bp.get("/cases")
@endpoint(response=WorklistOut, roles=_HELPERS, summary="帮办工作台：我的帮办件（按时限排序）",
          tag="helpers")
async def worklist(_request: Request, principal: Principal) -> WorklistOut:
    rows = await helpers.worklist(actor=principal)
    return WorklistOut(items=[
        WorkItem(
            assignment_id=a.id, assignment_status=a.status,
            offer_expires_at=(clock.local(exp) if (exp := helpers.offer_expires_at(a)) else None),
            case_id=a.case.id, title=a.case.title, hall_code=a.case.hall_code,
            department=a.case.department, status=a.case.status,
            status_label=cases.STATUS_LABELS[a.case.status],
            due_at=clock.local(a.case.due_at) if a.case.due_at else None,
            applicant_name=a.case.person.name_masked if a.case.person else None,
            help_note=helpers.masked_help_note(a),
        )
        for a in rows
    ])


@bp.post("/assignments/<assignment_id:int>/accept")
@endpoint(response=AssignmentOut, roles=_HELPERS, summary="接单", tag="helpers")
async def accept(_request: Request, assignment_id: int, principal: Principal) -> AssignmentOut:
    a = await helpers.accept(actor=principal,
                             assignment_id=path_id(assignment_id, "帮办任务"))
    return _assignment(a)


@bp.post("/assignments/<assignment_id:int>/decline")
@endpoint(body=DeclineIn, response=AssignmentOut, roles=_HELPERS,
          summary="婉拒（自动派给下一位）", tag="helpers")
async def decline(_request: Request, assignment_id: int, body: DeclineIn,
                  principal: Principal) -> AssignmentOut:
    a = await helpers.decline(actor=principal, assignment_id=path_id(assignment_id, "帮办任务"),
                              reason=body.reason)
    return _assignment(a)


@bp.post("/assignments/<assignment_id:int>/transfer")
@endpoint(body=TransferIn, response=TransferOut, roles=_HELPERS, summary="转交",
          tag="helpers")
async def transfer(_request: Request, assignment_id: int, body: TransferIn,
                   principal: Principal) -> TransferOut:
    aid = path_id(assignment_id, "帮办任务")
    moved = await helpers.transfer(actor=principal, assignment_id=aid, note=body.note,
                                   to_helper_user_id=body.to_helper_user_id)
    return TransferOut(transferred=_assignment(moved.transferred),
                       next_helper=helper_brief(moved.next))


@bp.put("/duty")
@endpoint(body=DutyIn, response=ProfileOut, roles=_HELPERS, summary="上岗/离岗",
          tag="helpers")
async def duty(_request: Request, body: DutyIn, principal: Principal) -> ProfileOut:
    p = await helpers.set_on_duty(actor=principal, on_duty=body.on_duty)
    return _profile(p, 0)


@bp.post("/cases/<case_id:int>/reveal")
@endpoint(body=HelperRevealIn, response=HelperRevealOut, roles=_HELPERS,
          summary="查看申请人完整信息（须授权与事由，写审计日志）", tag="helpers")
async def reveal(request: Request, case_id: int, body: HelperRevealIn,
                 principal: Principal) -> HelperRevealOut:
    shown = await helpers.reveal_applicant(actor=principal, case_id=path_id(case_id, "办件"),
                                           reason=body.reason,
                                           request_id=request_id(request))
    return HelperRevealOut(person_id=shown.person_id, name=shown.name, id_number=shown.id_number,
                     phone=shown.phone, birth_date=shown.birth_date)


# ---------------------------------------------------------------------------------------------
# Resident: proxy authorisations


@proxy_bp.post("")
@endpoint(body=ProxyGrantIn, response=GrantOut, status=201, summary="授权帮办人员代办",
          tag="helpers")
async def grant(_request: Request, body: ProxyGrantIn, principal: Principal) -> GrantOut:
    g = await helpers.grant_proxy(actor=principal, helper_user_id=body.helper_user_id,
                                  scopes=body.scopes, days=body.days, case_id=body.case_id)
    return _grant(g)


@proxy_bp.get("")
@endpoint(response=GrantListOut, summary="我给出的代办授权", tag="helpers")
async def my_grants(_request: Request, principal: Principal) -> GrantListOut:
    return GrantListOut(authorizations=[_grant(g) for g in
                                        await helpers.my_grants(actor=principal)])


@proxy_bp.delete("/<authorization_id:int>")
@endpoint(response=GrantOut, summary="撤销代办授权", tag="helpers")
async def revoke(_request: Request, authorization_id: int, principal: Principal) -> GrantOut:
    g = await helpers.revoke_proxy(actor=principal,
                                   authorization_id=path_id(authorization_id, "授权"))
    return _grant(g)


# ---------------------------------------------------------------------------------------------
# Admin: helper profiles


@admin_bp.put("/<user_id:int>")
@endpoint(body=ProfileIn, response=ProfileOut, roles=[Role.admin], summary="设置帮办人员档案",
          tag="helpers")
async def put_profile(_request: Request, user_id: int, body: ProfileIn,
                      principal: Principal) -> ProfileOut:
    p = await helpers.upsert_profile(actor=principal, user_id=path_id(user_id, "用户"),
                                     hall_code=body.hall_code, departments=body.departments,
                                     themes=body.themes, on_duty=body.on_duty)
    return _profile(p, 0)


@admin_bp.get("")
@endpoint(query=ProfileListQuery, response=ProfileListOut, roles=[Role.admin, Role.staff],
          summary="帮办人员档案与在办数", tag="helpers")
async def list_profiles(_request: Request, query: ProfileListQuery,
                        principal: Principal) -> ProfileListOut:
    rows = await helpers.list_profiles(actor=principal, hall_code=query.hall_code)
    return ProfileListOut(helpers=[_profile(p, n) for p, n in rows])
