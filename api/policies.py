"""政策推送: policies that fit me or my enterprises; staff publishing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from models.policies import Audience, Policy, PolicyStatus
from models.users import Role
from services import clock, policies
from services.auth import Principal
from services.policies import EnterpriseCriteria, PersonCriteria

bp = Blueprint("policies", url_prefix="/api/v1/policies")
admin_bp = Blueprint("admin_policies", url_prefix="/api/v1/admin/policies")

STAFF = [Role.staff, Role.admin]


class PolicyOut(BaseModel):
    id: int
    code: str
    title: str
    department: str
    theme: str
    audience: Audience
    criteria: dict[str, Any]
    summary: str
    url: str
    published_at: datetime | None


class EnterpriseRef(BaseModel):
    id: int
    name: str


class MatchOut(PolicyOut):
    for_me: bool = Field(description="与本人条件相符")
    enterprises: list[EnterpriseRef] = Field(description="与我代办的哪些企业相符")


class ForMeOut(BaseModel):
    policies: list[MatchOut]


class AdminPolicyOut(PolicyOut):
    status: PolicyStatus
    created_at: datetime
    updated_at: datetime


class AdminListQuery(BaseModel):
    status: PolicyStatus | None = None
    cursor: int | None = Field(default=None, ge=1, description="上一页返回的 next_cursor")
    limit: int = Field(default=50, ge=1, le=100)


class AdminListOut(BaseModel):
    policies: list[AdminPolicyOut]
    next_cursor: int | None


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=2, max_length=128)
    department: str = Field(default="", max_length=64)
    theme: str = Field(default="", max_length=32, description="主题，如 养老服务、就业创业")
    audience: Audience
    criteria: PersonCriteria | EnterpriseCriteria = Field(
        default_factory=PersonCriteria,
        description='个人：{"min_age", "max_age", "tags"}；企业：{"size", "industry", "tags", '
                    '"county", "max_layoff_rate"}；须与 audience 一致')
    summary: str = Field(default="", max_length=4000)
    url: str = Field(default="", max_length=255)

    def criteria_dict(self) -> dict[str, Any]:
        return self.criteria.model_dump(exclude_defaults=True)


class PolicyCreateIn(PolicyIn):
    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def policy_fields(p: Policy) -> dict[str, Any]:
    return {"id": p.id, "code": p.code, "title": p.title, "department": p.department,
            "theme": p.theme, "audience": p.audience, "criteria": dict(p.criteria),
            "summary": p.summary, "url": p.url,
            "published_at": clock.local(p.published_at) if p.published_at else None}


def admin_out(p: Policy) -> AdminPolicyOut:
    return AdminPolicyOut(**policy_fields(p), status=p.status, created_at=clock.local(p.created_at),
                          updated_at=clock.local(p.updated_at))


@bp.get("/for-me")
@endpoint(response=ForMeOut, tag="policies", summary="与我（或我代办的企业）条件相符的政策")
async def for_me(_request: Request, principal: Principal) -> ForMeOut:
    matches = await policies.for_me(user_id=principal.user_id)
    return ForMeOut(policies=[
        MatchOut(**policy_fields(m.policy), for_me=m.for_person,
                 enterprises=[EnterpriseRef(id=e.id, name=e.name) for e in m.enterprises])
        for m in matches])


class ThemeMuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str = Field(min_length=1, max_length=32, description="政策主题，如 养老服务")
    muted: bool = Field(strict=True, description="true 不再接收该主题的政策推送")


class MutedThemesOut(BaseModel):
    themes: list[str] = Field(description="已关闭推送的政策主题")


@bp.get("/muted-themes")
@endpoint(response=MutedThemesOut, tag="policies", summary="我关闭推送的政策主题")
async def get_muted_themes(_request: Request, principal: Principal) -> MutedThemesOut:
    return MutedThemesOut(themes=await policies.muted_themes(user_id=principal.user_id))


@bp.put("/muted-themes")
@endpoint(body=ThemeMuteIn, response=MutedThemesOut, tag="policies",
          summary="按主题开启或关闭政策推送（整体关闭请用 PUT /api/v1/me/subscriptions）")
async def put_muted_theme(_request: Request, body: ThemeMuteIn,
                          principal: Principal) -> MutedThemesOut:
    themes = await policies.set_theme_muted(user_id=principal.user_id, theme=body.theme,
                                            muted=body.muted)
    return MutedThemesOut(themes=themes)


@bp.get("/<policy_id:int>")
@endpoint(response=PolicyOut, public=True, errors=(404,), tag="policies",
          summary="已发布政策详情")
async def detail(_request: Request, policy_id: int) -> PolicyOut:
    return PolicyOut(**policy_fields(await policies.get_published(policy_id)))


@admin_bp.get("")
@endpoint(query=AdminListQuery, response=AdminListOut, roles=STAFF, tag="admin",
          summary="政策列表（含草稿）")
async def admin_list(_request: Request, query: AdminListQuery) -> AdminListOut:
    rows, nxt = await policies.list_all(status=query.status, after=query.cursor,
                                        limit=query.limit)
    return AdminListOut(policies=[admin_out(p) for p in rows], next_cursor=nxt)


@admin_bp.post("")
@endpoint(body=PolicyCreateIn, response=AdminPolicyOut, status=201, roles=STAFF, tag="admin",
          summary="新建政策草稿")
async def create(_request: Request, body: PolicyCreateIn, principal: Principal) -> AdminPolicyOut:
    p = await policies.create_policy(
        actor=principal, code=body.code, title=body.title, department=body.department,
        theme=body.theme, audience=body.audience, criteria=body.criteria_dict(),
        summary=body.summary,
        url=body.url)
    return admin_out(p)


@admin_bp.get("/<policy_id:int>")
@endpoint(response=AdminPolicyOut, roles=STAFF, tag="admin", summary="政策详情（含草稿）")
async def admin_detail(_request: Request, policy_id: int, principal: Principal) -> AdminPolicyOut:
    return admin_out(await policies.get_for_staff(actor=principal, policy_id=policy_id))


@admin_bp.put("/<policy_id:int>")
@endpoint(body=PolicyIn, response=AdminPolicyOut, roles=STAFF, tag="admin",
          summary="修改政策（已发布的不能改适用对象）")
async def update(_request: Request, policy_id: int, body: PolicyIn,
                 principal: Principal) -> AdminPolicyOut:
    p = await policies.update_policy(
        actor=principal, policy_id=policy_id, title=body.title, department=body.department,
        theme=body.theme, audience=body.audience, criteria=body.criteria_dict(),
        summary=body.summary,
        url=body.url)
    return admin_out(p)


@admin_bp.post("/<policy_id:int>/publish")
@endpoint(response=AdminPolicyOut, roles=STAFF, tag="admin", errors=(503,),
          summary="发布政策并在后台向相符且已订阅的用户推送（每人每政策一次）")
async def publish(_request: Request, policy_id: int, principal: Principal) -> AdminPolicyOut:
    return admin_out(await policies.publish(actor=principal, policy_id=policy_id))


@admin_bp.post("/<policy_id:int>/withdraw")
@endpoint(response=AdminPolicyOut, roles=STAFF, tag="admin", summary="撤回政策")
async def withdraw(_request: Request, policy_id: int, principal: Principal) -> AdminPolicyOut:
    return admin_out(await policies.withdraw(actor=principal, policy_id=policy_id))
