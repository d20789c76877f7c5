"""Login with WeChat, refresh, logout."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from api.schemas import Ok
from services import auth
from services.auth import Principal

bp = Blueprint("auth", url_prefix="/api/v1/auth")


class WechatLoginIn(BaseModel):
    code: str = Field(min_length=1, max_length=128, description="wx.login 返回的一次性 code")


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=256,
                                      description="省略时注销该用户的全部会话")


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 — the scheme name, not a secret
    expires_in: int
    user_id: int
    roles: list[str]
    is_new_user: bool


async def _out(pair: auth.TokenPair) -> TokenOut:
    return TokenOut(access_token=pair.access_token, refresh_token=pair.refresh_token,
                    expires_in=pair.expires_in, user_id=pair.user.id,
                    roles=await auth.roles_of(pair.user), is_new_user=pair.is_new_user)


@bp.post("/wechat-login")
@endpoint(body=WechatLoginIn, response=TokenOut, public=True, no_store=True,
          errors=(401, 403, 503),
          summary="微信登录（wx.login code 换取令牌）", tag="auth")
async def wechat_login(request: Request, body: WechatLoginIn) -> TokenOut:
    pair = await auth.login_with_wechat(code=body.code, client_ip=request.client_ip or "-")
    return await _out(pair)


@bp.post("/refresh")
@endpoint(body=RefreshIn, response=TokenOut, public=True, no_store=True, errors=(401, 403),
          summary="刷新令牌（轮换；旧令牌重放将吊销整个会话族）", tag="auth")
async def refresh(_request: Request, body: RefreshIn) -> TokenOut:
    return await _out(await auth.refresh(refresh_token=body.refresh_token))


@bp.post("/logout")
@endpoint(body=LogoutIn, response=Ok, summary="退出登录", tag="auth")
async def logout(_request: Request, body: LogoutIn, principal: Principal) -> Ok:
    await auth.logout(user_id=principal.user_id, refresh_token=body.refresh_token)
    return Ok()
