"""Administration of accounts: role grants, staff reads of personal data (audited)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from api.me import IdentityOut, identity_out
from api.observability import request_id
from models.users import Role
from services import audit, clock, people, users
from services.auth import Principal, role_names

bp = Blueprint("admin_users", url_prefix="/api/v1/admin")


class RoleGrantIn(BaseModel):
    role: str = Field(description="helper / community_worker / enterprise_agent / staff / admin")


class RolesOut(BaseModel):
    user_id: int
    roles: list[str]


class UserSummary(BaseModel):
    user_id: int
    roles: list[str]
    phone: str | None
    identity: IdentityOut | None
    person_id: int | None


class UserListQuery(BaseModel):
    cursor: int | None = Field(default=None, ge=0, description="上一页返回的 next_cursor")
    limit: int = Field(default=20, ge=1, le=100)
    role: Role | None = None


class UserListOut(BaseModel):
    users: list[UserSummary]
    next_cursor: int | None


class PersonRevealIn(BaseModel):
    reason: str = Field(min_length=4, max_length=255, description="查看事由，写入审计日志")


class PersonRevealOut(BaseModel):
    person_id: int
    name: str
    id_number: str
    phone: str | None
    birth_date: date


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor_id: int | None
    actor_roles: list[str]
    person_id: int | None
    action: str
    fields_read: list[str]
    reason: str
    request_id: str


class AuditQuery(BaseModel):
    person_id: int | None = Field(default=None, ge=1)
    actor_id: int | None = Field(default=None, ge=1)
    cursor: int | None = Field(default=None, ge=0)
    limit: int = Field(default=50, ge=1, le=200)


class AuditOut(BaseModel):
    entries: list[AuditEntry]
    next_cursor: int | None


@bp.get("/users")
@endpoint(query=UserListQuery, response=UserListOut, roles=[Role.staff, Role.admin],
          summary="用户列表（脱敏）", tag="admin")
async def list_users(_request: Request, query: UserListQuery,
                     principal: Principal) -> UserListOut:
    rows = await users.list_users(actor=principal, role=query.role, cursor=query.cursor,
                                  limit=query.limit)
    page = rows[: query.limit]
    return UserListOut(
        users=[UserSummary(user_id=u.id, roles=role_names(u.roles), phone=u.phone_masked,
                           identity=identity_out(u.person) if u.person else None,
                           person_id=u.person.id if u.person else None) for u in page],
        next_cursor=page[-1].id if len(rows) > query.limit else None,
    )


@bp.post("/users/<user_id:int>/roles")
@endpoint(body=RoleGrantIn, response=RolesOut, roles=[Role.admin], summary="授予角色", tag="admin",
          errors=(503,))
async def grant(_request: Request, user_id: int, body: RoleGrantIn,
                principal: Principal) -> RolesOut:
    roles = await users.grant_role(actor=principal, user_id=user_id, role=body.role)
    return RolesOut(user_id=user_id, roles=roles)


@bp.delete("/users/<user_id:int>/roles/<role:str>")
@endpoint(response=RolesOut, roles=[Role.admin], summary="撤销角色（该角色带来的权限一并终止）",
          tag="admin", errors=(503,))
async def revoke(_request: Request, user_id: int, role: str, principal: Principal) -> RolesOut:
    roles = await users.revoke_role(actor=principal, user_id=user_id, role=role)
    return RolesOut(user_id=user_id, roles=roles)


@bp.post("/persons/<person_id:int>/reveal")
@endpoint(body=PersonRevealIn, response=PersonRevealOut, roles=[Role.staff, Role.admin],
          summary="查看完整个人信息（须填事由，写审计日志）", tag="admin")
async def reveal(request: Request, person_id: int, body: PersonRevealIn,
                 principal: Principal) -> PersonRevealOut:
    shown = await people.reveal(actor=principal, person_id=person_id, reason=body.reason,
                                request_id=request_id(request))
    return PersonRevealOut(person_id=shown.person_id, name=shown.name, id_number=shown.id_number,
                     phone=shown.phone, birth_date=shown.birth_date)


@bp.get("/audit")
@endpoint(query=AuditQuery, response=AuditOut, roles=[Role.admin], summary="审计日志",
          tag="admin")
async def audit_log(_request: Request, query: AuditQuery, principal: Principal) -> AuditOut:
    rows = await audit.search(actor=principal, person_id=query.person_id,
                              actor_id=query.actor_id, cursor=query.cursor, limit=query.limit)
    page = rows[: query.limit]
    return AuditOut(
        entries=[AuditEntry(id=r.id, at=clock.local(r.at), actor_id=r.actor_id,  # type: ignore[attr-defined]
                            actor_roles=list(r.actor_roles),
                            person_id=r.subject_person_id,  # type: ignore[attr-defined]
                            action=r.action, fields_read=list(r.fields_read), reason=r.reason,
                            request_id=r.request_id) for r in page],
        next_cursor=page[-1].id if len(rows) > query.limit else None,
    )
