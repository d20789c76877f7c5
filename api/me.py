"""The signed-in user: profile, real-name binding, phone, subscriptions, who read my data."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from models.users import Person
from services import audit, clock, notifications, people, users
from services.auth import Principal, roles_of
from services.errors import AppError, ErrorCode
from services.settings import get_settings
from services.wechat import wechat

bp = Blueprint("me", url_prefix="/api/v1/me")


class IdentityOut(BaseModel):
    name: str = Field(description="脱敏姓名，如 *建国")
    id_number: str = Field(description="脱敏身份证号，如 6210**********0316")
    birth_date: date
    age: int
    sex: str
    tags: list[str]


class EnterpriseBrief(BaseModel):
    id: int
    name: str
    uscc: str


class MeOut(BaseModel):
    user_id: int
    roles: list[str]
    nickname: str
    phone: str | None = Field(description="脱敏手机号")
    identity: IdentityOut | None
    enterprises: list[EnterpriseBrief]
    identity_level: str = Field(description="none 未认证 / desk 窗口核验 / face 人脸核身")


class BindIdentityIn(BaseModel):
    name: str = Field(min_length=2, max_length=32, pattern=r"^[\u3400-\u9fff·•]+$",
                      description="与身份证一致的中文姓名")
    id_number: str = Field(min_length=15, max_length=18, description="18位居民身份证号")


class BindPhoneIn(BaseModel):
    code: str = Field(min_length=1, max_length=128,
                      description="getPhoneNumber 回调中的 code，由服务端向微信换取手机号")


class SubscriptionIn(BaseModel):
    template: str = Field(min_length=1, max_length=64,
                          description="模板名，如 policy_published、appointment_reminder")
    accepted: bool = Field(description="wx.requestSubscribeMessage 中用户是否同意")
    long_term: bool = False


class MuteIn(BaseModel):
    template: str = Field(min_length=1, max_length=64)
    muted: bool


class SubscriptionOut(BaseModel):
    template: str
    balance: int
    long_term: bool
    muted: bool


class AccessEntry(BaseModel):
    at: datetime
    action: str
    actor_roles: list[str]
    fields_read: list[str]
    reason: str


class AccessLogOut(BaseModel):
    entries: list[AccessEntry]


def identity_out(person: Person) -> IdentityOut:
    return IdentityOut(name=person.name_masked, id_number=person.id_number_masked,
                       birth_date=person.birth_date, age=people.age_of(person), sex=person.sex,
                       tags=list(person.tags))


async def _me(user_id: int) -> MeOut:
    user = await users.get_user(user_id)
    represented = await users.enterprises_represented(user_id)
    return MeOut(
        user_id=user.id,
        roles=await roles_of(user),
        nickname=user.nickname,
        phone=user.phone_masked,
        identity=identity_out(user.person) if user.person else None,
        enterprises=[EnterpriseBrief(id=e.id, name=e.name, uscc=e.uscc) for e in represented],
        identity_level=user.identity_level,
    )


@bp.get("")
@endpoint(response=MeOut, summary="我的资料（敏感信息脱敏）", tag="me")
async def me(_request: Request, principal: Principal) -> MeOut:
    return await _me(principal.user_id)


@bp.post("/identity")
@endpoint(body=BindIdentityIn, response=MeOut, status=201, errors=(410,),
          summary="已停用：实名认证须通过人脸核身（POST /api/v1/me/identity/verifications）",
          tag="me")
async def bind_identity(_request: Request, body: BindIdentityIn, principal: Principal) -> MeOut:
    # Typing a name and an ID number proved nothing: anyone could become anyone (issue 11).
    # Older clients get a clear answer naming the new flow instead of a binding.
    del body, principal
    raise AppError(ErrorCode.identity_face_required)


@bp.post("/phone")
@endpoint(body=BindPhoneIn, response=MeOut, errors=(503,), summary="绑定微信授权的手机号",
          tag="me")
async def bind_phone(_request: Request, body: BindPhoneIn, principal: Principal) -> MeOut:
    phone = await wechat().phone_number(body.code)
    await people.bind_phone(user_id=principal.user_id, phone=phone)
    return await _me(principal.user_id)


@bp.post("/subscriptions")
@endpoint(body=SubscriptionIn, response=SubscriptionOut, summary="记录订阅消息授权结果", tag="me")
async def record_subscription(
    _request: Request, body: SubscriptionIn, principal: Principal
) -> SubscriptionOut:
    # Long-term is what WeChat grants this 政务 mini program for some templates, not something a
    # client can claim for any template (POST /me/notifications/consent decides it alone).
    long_term = body.long_term and body.template in get_settings().wechat_long_term_templates
    row = await notifications.record_subscription(
        user_id=principal.user_id, template=body.template, accepted=body.accepted,
        long_term=long_term)
    return SubscriptionOut(template=row.template, balance=row.balance, long_term=row.long_term,
                           muted=row.muted)


@bp.put("/subscriptions")
@endpoint(body=MuteIn, response=SubscriptionOut, summary="开启或关闭某类消息提醒", tag="me")
async def mute_subscription(
    _request: Request, body: MuteIn, principal: Principal
) -> SubscriptionOut:
    row = await notifications.set_muted(user_id=principal.user_id, template=body.template,
                                        muted=body.muted)
    return SubscriptionOut(template=row.template, balance=row.balance, long_term=row.long_term,
                           muted=row.muted)


@bp.get("/access-log")
@endpoint(response=AccessLogOut, summary="谁查看过我的完整个人信息", tag="me")
async def access_log(_request: Request, principal: Principal) -> AccessLogOut:
    person = await people.person_of(principal.user_id)
    if person is None:
        return AccessLogOut(entries=[])
    rows = await audit.entries_for_person(person.id)
    return AccessLogOut(entries=[
        AccessEntry(at=clock.local(r.at), action=r.action, actor_roles=list(r.actor_roles),
                    fields_read=list(r.fields_read), reason=r.reason) for r in rows])
