"""实名 + 实人: WeChat face verification for residents, in-person checks for window staff.

The mini program's flow:
1. ``POST /api/v1/me/identity/verifications {name, id_number}`` -> ``verify_id``;
2. ``wx.requestFacialVerify({verifyId})`` on the phone;
3. ``POST /api/v1/me/identity/verifications/{id}/finish`` -> bound (or a clear refusal).
The phone's own callback is never trusted: step 3 asks WeChat server to server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from api.cases import MAX_ID
from api.endpoint import endpoint
from api.observability import request_id
from models.users import Role
from models.verification import IdentityVerification
from services import clock, idempotency, verification
from services.auth import Principal

bp = Blueprint("identity", url_prefix="/api/v1/me/identity")
admin_bp = Blueprint("identity_admin", url_prefix="/api/v1/admin/identity")


class IdentityVerifyIn(BaseModel):
    name: str = Field(min_length=2, max_length=32, pattern=r"^[\u3400-\u9fff·•]+$",
                      description="与身份证一致的中文姓名")
    id_number: str = Field(min_length=15, max_length=18, description="18位居民身份证号")


class IdentityDeskIn(IdentityVerifyIn):
    user_id: int = Field(ge=1, le=MAX_ID, description="来办事群众的账号（小程序“我的”页显示）")


class IdentityVerificationOut(BaseModel):
    id: int
    method: str = Field(description="face 人脸核身 / desk 窗口核验")
    status: str = Field(description="pending 待核身 / passed 已通过 / failed 未通过")
    outcome: str = Field(description="未通过时的错误码，如 face_cancelled、face_mismatch")
    verify_id: str | None = Field(
        description="交给 wx.requestFacialVerify 的 verifyId（仅待核身时）")
    id_number: str = Field(description="脱敏身份证号")
    expires_at: datetime
    created_at: datetime
    finished_at: datetime | None


class IdentityNoticeOut(BaseModel):
    at: datetime
    id_number: str = Field(description="脱敏身份证号")
    message: str


class IdentityNoticesOut(BaseModel):
    notices: list[IdentityNoticeOut]


def verification_out(row: IdentityVerification) -> IdentityVerificationOut:
    pending = row.status == "pending"
    return IdentityVerificationOut(
        id=row.id, method=row.method, status=row.status, outcome=row.outcome,
        verify_id=row.verify_id if pending and row.verify_id else None,
        id_number=row.cert_no_masked, expires_at=clock.local(row.expires_at),
        created_at=clock.local(row.created_at),
        finished_at=clock.local(row.finished_at) if row.finished_at else None)


async def _once(request: Request, principal: Principal, body: BaseModel,
                action: Callable[[], Awaitable[IdentityVerification]]) -> HTTPResponse:
    """A flaky network may repeat a start: with an Idempotency-Key the repeat gets the first
    reply (and spends no second attempt of the rate limit) instead of a new session."""

    async def run() -> tuple[int, object]:
        return 201, verification_out(await action()).model_dump(mode="json")

    status, payload = await idempotency.run_once(
        user_id=principal.user_id, key=request.headers.get("idempotency-key"),
        fingerprint=idempotency.request_fingerprint("POST", request.path,
                                                    body.model_dump(mode="json")),
        action=run)
    return json(payload, status=status)


@bp.post("/verifications")
@endpoint(body=IdentityVerifyIn, response=IdentityVerificationOut, status=201, errors=(503,),
          summary="实名认证第1步：发起人脸核身，取得 verifyId（可带 Idempotency-Key 头安全重试）",
          tag="me")
async def start_verification(
    request: Request, body: IdentityVerifyIn, principal: Principal
) -> HTTPResponse:
    return await _once(request, principal, body, lambda: verification.start_face(
        actor=principal, name=body.name, id_number=body.id_number))


@bp.get("/verifications/<verification_id:int>")
@endpoint(response=IdentityVerificationOut, summary="查看一次实名核身的状态", tag="me")
async def get_verification(
    _request: Request, verification_id: int, principal: Principal
) -> IdentityVerificationOut:
    return verification_out(await verification.access_verification(principal, verification_id))


@bp.post("/verifications/<verification_id:int>/finish")
@endpoint(response=IdentityVerificationOut, errors=(503,),
          summary="实名认证第2步：wx.requestFacialVerify 之后，由服务端向微信查询结果并绑定",
          tag="me")
async def finish_verification(
    request: Request, verification_id: int, principal: Principal
) -> IdentityVerificationOut:
    row = await verification.finish_face(actor=principal, verification_id=verification_id,
                                         request_id=request_id(request))
    return verification_out(row)


@bp.get("/notices")
@endpoint(response=IdentityNoticesOut, summary="我的实名信息被本人通过人脸核身转走的通知",
          tag="me")
async def notices(_request: Request, principal: Principal) -> IdentityNoticesOut:
    rows = await verification.moved_away(actor=principal)
    return IdentityNoticesOut(notices=[
        IdentityNoticeOut(at=clock.local(r.finished_at or r.created_at), id_number=r.cert_no_masked,
                          message="该身份证号的本人已通过人脸核身绑定到其他账号，本账号的实名信息已解除")
        for r in rows])


@admin_bp.post("/desk-verifications")
@endpoint(body=IdentityDeskIn, response=IdentityVerificationOut, status=201,
          roles=[Role.staff], summary="窗口核验身份证后为来办事群众绑定实名（窗口核验级）",
          tag="admin")
async def desk_verification(
    request: Request, body: IdentityDeskIn, principal: Principal
) -> HTTPResponse:
    return await _once(request, principal, body, lambda: verification.desk_bind(
        actor=principal, user_id=body.user_id, name=body.name, id_number=body.id_number,
        request_id=request_id(request)))
