"""一码通: my person code, scanning, enterprise codes, door-plate codes and their print sheets."""

from __future__ import annotations

import asyncio
import base64
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext.extensions.openapi import openapi

from api.deadline import within_deadline
from api.endpoint import authorized, documented, endpoint, parse_body
from api.schemas import Ok
from models.codes import CodeKind
from models.users import Role
from services import codes, doorplates
from services.auth import Principal
from services.codes import IssuedQr
from services.settings import get_settings

bp = Blueprint("codes", url_prefix="/api/v1")

_PNG = {"image/png": {"type": "string", "format": "binary"}}
_SVG = {"image/svg+xml": {"type": "string"}}
PlateCodeStr = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,32}$")]


# --- models -------------------------------------------------------------------------------


class CodeFormatQuery(BaseModel):
    format: Literal["json", "png", "svg"] = Field(
        default="json",
        description="json：内容、有效期、PNG(base64) 与 SVG；png / svg：直接返回图片")


class CodeOut(BaseModel):
    content: str = Field(description="二维码内容：本服务域名下携带不透明令牌的链接")
    expires_at: datetime | None = Field(description="失效时间；企业码、门牌码长期有效为 null")
    refresh_after_seconds: int | None = Field(
        description="个人码：建议多少秒后刷新；长期码为 null")
    png_base64: str = Field(description="二维码 PNG 图片，base64")
    svg: str = Field(description="二维码 SVG 文本")


class ScanIn(BaseModel):
    # No hall here: where staff scan is their membership's hall (services/scope.py), never
    # what the client says. Older clients still sending hall_code are not refused; it is
    # ignored.
    content: str = Field(min_length=1, max_length=512, description="摄像头读到的二维码内容")


class IdentityView(BaseModel):
    name: str = Field(description="脱敏姓名")
    id_number: str = Field(description="脱敏身份证号")
    sex: str
    age: int


class LicenceView(BaseModel):
    kind: str = Field(description="identity_card / disability_cert / marriage_cert / ...")
    title: str
    number: str = Field(description="脱敏证照号")
    issuer: str
    issued_on: date | None
    valid_until: date | None
    shown_at: datetime | None = Field(default=None, description="亮证时间（仅扫码亮证）")
    watermark: str | None = Field(default=None, description="亮证水印（仅扫码亮证）")


class AppointmentView(BaseModel):
    id: int
    hall_code: str
    hall_name: str
    window_kind: str
    item_code: str
    status: str
    starts_at: datetime


class CaseView(BaseModel):
    id: int
    title: str
    item_code: str | None
    bundle_code: str | None
    status: str
    due_at: datetime | None


class PersonView(BaseModel):
    identity: IdentityView
    licences: list[LicenceView]
    appointments_today: list[AppointmentView] | None = Field(
        default=None, description="今日预约（可签到）；未启用预约模块时无此字段")
    open_cases: list[CaseView] | None = Field(
        default=None, description="在办件；未启用办件模块时无此字段")


class HallNearby(BaseModel):
    code: str
    name: str
    address: str
    phone: str
    distance_m: int


class GridWorker(BaseModel):
    name: str
    phone: str = Field(description="网格值班电话（公开）")


class HouseholdView(BaseModel):
    name: str = Field(description="脱敏姓名")
    id_number: str = Field(description="脱敏身份证号")
    sex: str
    age: int
    relation: str


class DoorPlateView(BaseModel):
    code: str
    county: str
    street: str
    community: str
    address: str
    lat: float = Field(description="GCJ-02")
    lng: float = Field(description="GCJ-02")
    grid_worker: GridWorker | None
    nearest_halls: list[HallNearby]
    households: list[HouseholdView] | None = Field(
        default=None, description="登记住户，仅该网格的社区工作者可见（其他人无此字段）")


class PolicyBrief(BaseModel):
    code: str
    title: str
    department: str
    url: str


class EnterpriseView(BaseModel):
    id: int
    name: str
    uscc: str = Field(description="统一社会信用代码（已按 GB 32100 校验）")
    industry: str
    county: str
    licences: list[LicenceView] = Field(description="公开的证照")
    policies: list[PolicyBrief] | None = Field(
        default=None, description="匹配的惠企政策，仅该企业经办人可见")
    cases: list[CaseView] | None = Field(default=None, description="企业办件，仅该企业经办人可见")


class ScanOut(BaseModel):
    scan_id: str
    kind: Literal["person", "enterprise", "doorplate"]
    scanned_at: datetime
    person: PersonView | None = Field(default=None, description="个人码：仅窗口工作人员")
    enterprise: EnterpriseView | None = None
    doorplate: DoorPlateView | None = None


class ScansQuery(BaseModel):
    cursor: int | None = Field(default=None, ge=0, le=2**63 - 1,
                               description="上一页返回的 next_cursor")
    limit: int = Field(default=20, ge=1, le=100)


class ScanEntry(BaseModel):
    id: int
    at: datetime
    scanner_role: str = Field(description="扫码人角色，如 窗口工作人员")
    scanner_org: str = Field(description="扫码人所在大厅或社区，未知时为空")
    outcome: Literal["ok", "forbidden", "expired", "revoked", "invalid"]
    shown: list[str] = Field(description="展示了哪些内容")


class ScansOut(BaseModel):
    scans: list[ScanEntry]
    next_cursor: int | None


class BatchIn(BaseModel):
    plate_codes: list[PlateCodeStr] = Field(min_length=1, max_length=200,
                                   description="门牌编码，如 D-XF-0001")
    reissue: bool = Field(default=False, description="重新生成（原已印制的门牌码作废）")


class PlateCode(BaseModel):
    plate_code: str
    address: str
    content: str
    newly_issued: bool


class BatchOut(BaseModel):
    codes: list[PlateCode]


class SheetQuery(BaseModel):
    plate_codes: list[PlateCodeStr] = Field(min_length=1, max_length=60,
                                   description="门牌编码（可重复传参），最多 60 个")


def _code_out(qr: IssuedQr, *, person: bool) -> CodeOut:
    ttl = get_settings().person_code_ttl_seconds
    return CodeOut(content=qr.content, expires_at=qr.expires_at,
                   refresh_after_seconds=max(5, ttl - 10) if person else None,
                   png_base64=base64.b64encode(qr.png()).decode(), svg=qr.svg())


def _image(qr: IssuedQr, fmt: str, *, no_store: bool) -> HTTPResponse | None:
    headers = {"Cache-Control": "no-store"} if no_store else {}
    if fmt == "png":
        return raw(qr.png(), content_type="image/png", headers=headers)
    if fmt == "svg":
        return raw(qr.svg().encode(), content_type="image/svg+xml", headers=headers)
    return None


# --- person code --------------------------------------------------------------------------


@bp.get("/me/code")
@openapi.response(200, {**_PNG, **_SVG}, "二维码图片（format=png / svg）")
@endpoint(query=CodeFormatQuery, response=CodeOut, summary="我的个人码（约1分钟有效，需定时刷新）",
          tag="codes")
async def my_code(_request: Request, query: CodeFormatQuery,
                  principal: Principal) -> CodeOut | HTTPResponse:
    qr = await codes.issue_person_code(user_id=principal.user_id)
    image = _image(qr, query.format, no_store=True)
    if image is not None:
        return image
    out = _code_out(qr, person=True)
    return json(out.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


@bp.get("/me/code/scans")
@endpoint(query=ScansQuery, response=ScansOut, summary="谁扫过我的个人码（扫码人仅显示角色与单位）",
          tag="codes")
async def my_code_scans(_request: Request, query: ScansQuery, principal: Principal) -> ScansOut:
    rows, nxt = await codes.scans_of_my_code(user_id=principal.user_id, cursor=query.cursor,
                                             limit=query.limit)
    return ScansOut(scans=[ScanEntry(id=r.id, at=r.at, scanner_role=r.scanner_role,
                                     scanner_org=r.scanner_org,
                                     outcome=r.outcome,
                                     shown=r.shown) for r in rows], next_cursor=nxt)


# --- scan ---------------------------------------------------------------------------------


_NO_STORE = {"Cache-Control": "no-store"}


@bp.post("/codes/scan")
@documented(body=ScanIn, response=ScanOut, errors=(410,),
            summary="扫码：按扫码人身份返回其可见内容（过期或作废返回 410，请刷新二维码）",
            tag="codes")
async def scan(request: Request) -> HTTPResponse:
    # The busiest route, so it does for itself, in this one function, what @endpoint's generic
    # layers would do around it — with the same functions, so the same guard, the same body
    # rules and the same error envelope; ``documented`` writes the same OpenAPI operation.
    # No outbox bracket: a scan commits no transaction, so it promises no after-commit effect.
    principal = await authorized(request)
    body = parse_body(request, ScanIn)
    result = await within_deadline(codes.scan(actor=principal, content=body.content))
    # Sent as the service assembled it: ScanOut documents it, and the tests hold every kind of
    # answer to ScanOut. A section the scanner may not see is absent, not null.
    return HTTPResponse(result.document, content_type="application/json", headers=_NO_STORE)


# --- enterprise codes ---------------------------------------------------------------------


@bp.post("/codes/enterprises/<enterprise_id:int>")
@endpoint(response=CodeOut, status=201, summary="生成或重新生成企业码（旧码作废）", tag="codes")
async def issue_enterprise(_request: Request, enterprise_id: int,
                           principal: Principal) -> CodeOut:
    qr = await codes.issue_enterprise_code(actor=principal, enterprise_id=enterprise_id)
    return _code_out(qr, person=False)


@bp.get("/codes/enterprises/<enterprise_id:int>")
@openapi.response(200, {**_PNG, **_SVG}, "二维码图片（format=png / svg）")
@endpoint(query=CodeFormatQuery, response=CodeOut, summary="企业码（企业经办人或工作人员）",
          tag="codes")
async def get_enterprise(_request: Request, enterprise_id: int, query: CodeFormatQuery,
                         principal: Principal) -> CodeOut | HTTPResponse:
    qr = await codes.current_enterprise_code(actor=principal, enterprise_id=enterprise_id)
    return _image(qr, query.format, no_store=False) or _code_out(qr, person=False)


@bp.delete("/codes/enterprises/<enterprise_id:int>")
@endpoint(response=Ok, summary="作废企业码", tag="codes")
async def revoke_enterprise(_request: Request, enterprise_id: int, principal: Principal) -> Ok:
    await codes.revoke_enterprise_code(actor=principal, enterprise_id=enterprise_id)
    return Ok()


@bp.get("/codes/enterprises/<enterprise_id:int>/wxacode")
@openapi.response(200, _PNG, "小程序码 PNG")
@endpoint(errors=(503,), summary="企业码的小程序码（getwxacodeunlimit，scene 为令牌）", tag="codes")
async def enterprise_wxacode(_request: Request, enterprise_id: int,
                             principal: Principal) -> HTTPResponse:
    image = await codes.wxacode(actor=principal, kind=CodeKind.enterprise,
                                subject=str(enterprise_id))
    return raw(image, content_type="image/png")


# --- door plates --------------------------------------------------------------------------


@bp.post("/codes/doorplates/batch")
@endpoint(body=BatchIn, response=BatchOut, roles=[Role.staff, Role.admin],
          summary="批量生成门楼牌码（已有码的门牌保持原码，除非 reissue）", tag="codes")
async def doorplate_batch(_request: Request, body: BatchIn, principal: Principal) -> BatchOut:
    made = await codes.issue_doorplate_codes(actor=principal,
                                             plate_codes=body.plate_codes,
                                             reissue=body.reissue)
    return BatchOut(codes=[PlateCode(plate_code=p.code, address=p.address, content=q.content,
                                     newly_issued=new) for p, q, new in made])


@bp.get("/codes/doorplates/sheet")
@openapi.response(200, _PNG, "打印用门牌码图版 PNG；响应头 X-Label-Font 为 cjk 或 ascii-fallback")
@endpoint(query=SheetQuery, roles=[Role.staff, Role.admin],
          summary="下载门楼牌码打印图版（每个码下方标注门牌编码与地址）", tag="codes")
async def doorplate_sheet(_request: Request, query: SheetQuery,
                          principal: Principal) -> HTTPResponse:
    entries = await codes.doorplate_codes(actor=principal,
                                          plate_codes=query.plate_codes)
    # Rasterising a sheet of QR codes is CPU work in Pillow: off the event loop, so a print
    # job doesn't stall every other request on this worker.
    sheet = await asyncio.to_thread(doorplates.render_sheet, entries)
    headers: dict[str, Any] = {
        "X-Label-Font": "cjk" if sheet.cjk_labels else "ascii-fallback",
        "Content-Disposition": 'attachment; filename="doorplates.png"',
    }
    return raw(sheet.png, content_type="image/png", headers=headers)


@bp.delete("/codes/doorplates/<plate_code:str>")
@endpoint(response=Ok, roles=[Role.staff, Role.admin], summary="作废门楼牌码", tag="codes")
async def revoke_doorplate(_request: Request, plate_code: str, principal: Principal) -> Ok:
    await codes.revoke_doorplate_code(actor=principal, plate_code=plate_code)
    return Ok()


@bp.get("/codes/doorplates/<plate_code:str>/wxacode")
@openapi.response(200, _PNG, "小程序码 PNG")
@endpoint(errors=(503,), roles=[Role.staff, Role.admin],
          summary="门楼牌码的小程序码（getwxacodeunlimit）", tag="codes")
async def doorplate_wxacode(_request: Request, plate_code: str,
                            principal: Principal) -> HTTPResponse:
    image = await codes.wxacode(actor=principal, kind=CodeKind.doorplate, subject=plate_code)
    return raw(image, content_type="image/png")
