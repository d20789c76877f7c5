"""全程网办: forms, drafts, streamed uploads, a case's application and materials, supplements,
reviews, and the signed file links. Rules live in ``services/online.py``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import RequestBody

from api.cases import path_id
from api.endpoint import _RawSchema, endpoint
from api.observability import request_id
from api.schemas import Ok
from models.codes import ElectronicLicence
from models.online import ApplicationDraft, CaseMaterial, FormDefinition, Upload
from models.users import Role
from services import clock, idempotency, online, uploads
from services.auth import Principal
from services.errors import AppError, ErrorCode

bp = Blueprint("online", url_prefix="/api/v1/online")
admin_bp = Blueprint("online_admin", url_prefix="/api/v1/admin/online")

MAX_ID = 2**63 - 1
FILES_PATH = "/api/v1/online/files"


# ---------------------------------------------------------------------------------------------
# Models


class OnlineFormField(BaseModel):
    key: str
    label: str
    type: str
    required: bool = False
    choices: list[str] | None = None
    prefill: str | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    hint: str | None = None
    locked: bool = Field(default=False, description="来自实名认证等可信来源，不可修改")


class OnlineFormOut(BaseModel):
    target_code: str
    title: str
    versions: dict[str, int] = Field(description="所用表单版本（一件事为各事项表单版本）")
    fields: list[OnlineFormField]


class OnlineFormIn(BaseModel):
    title: str = Field(min_length=1, max_length=128)
    fields: list[dict[str, Any]] = Field(min_length=1, max_length=60)


class OnlineFormVersionOut(BaseModel):
    version: int
    title: str
    fields: list[OnlineFormField]
    created_by: int | None
    created_at: datetime


class OnlineFormVersionsOut(BaseModel):
    target_code: str
    versions: list[OnlineFormVersionOut]


class OnlineLinks(BaseModel):
    original: str | None = None
    thumb: str | None = None
    staff: str | None = Field(default=None, description="工作人员查看：带水印，每次查看留痕")
    expires_at: datetime | None = None


class OnlineUploadOut(BaseModel):
    id: int
    content_type: str
    size: int
    original_name: str
    created_at: datetime
    links: OnlineLinks


class OnlineLicenceOut(BaseModel):
    id: int
    title: str
    number_masked: str
    issuer: str
    valid_until: date | None


class OnlineMaterialOut(BaseModel):
    id: int
    name: str
    source: Literal["upload", "reuse", "licence"]
    status: Literal["pending", "accepted", "rejected"]
    reason: str
    reused_from_id: int | None
    supplement_id: int | None
    content_type: str | None
    licence: OnlineLicenceOut | None
    valid_until: date | None
    links: OnlineLinks


class OnlineReusableOut(BaseModel):
    material_id: int
    case_id: int | None
    accepted_at: datetime | None
    valid_until: date | None


class OnlineChecklistOut(BaseModel):
    name: str
    required: bool
    provided: int
    reusable: list[OnlineReusableOut]
    licences: list[OnlineLicenceOut]


class OnlineDraftOut(BaseModel):
    id: int
    applicant_user_id: int
    item_code: str | None
    bundle_code: str | None
    hall_code: str
    enterprise_id: int | None
    title: str
    form: OnlineFormOut
    values: dict[str, Any]
    materials: list[OnlineMaterialOut]
    checklist: list[OnlineChecklistOut]
    case_id: int | None
    updated_at: datetime


class OnlineDraftSummary(BaseModel):
    id: int
    title: str
    item_code: str | None
    bundle_code: str | None
    updated_at: datetime


class OnlineDraftListOut(BaseModel):
    drafts: list[OnlineDraftSummary]
    next_cursor: int | None = None


class OnlineDraftIn(BaseModel):
    item_code: str | None = Field(default=None, min_length=1, max_length=32)
    bundle_code: str | None = Field(default=None, min_length=1, max_length=32)
    hall_code: str = Field(min_length=1, max_length=32)
    applicant_user_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                          description="代为申请：申请人（须有 apply 授权）")
    enterprise_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class OnlineValuesIn(BaseModel):
    values: dict[str, Any] = Field(description="按字段标识填写；未列出的字段保持不变")


class OnlineSupplyIn(BaseModel):
    material: str = Field(min_length=1, max_length=64, description="材料名称（材料清单中的）")
    upload_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    reuse_material_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                          description="免提交：复用已审核通过的材料")
    licence_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                   description="以电子证照代替上传")

    def supplied(self) -> online.Supplied:
        return online.Supplied(self.material.strip(), self.upload_id, self.reuse_material_id,
                               self.licence_id)


class OnlineSubmitIn(BaseModel):
    note: str = Field(default="", max_length=500)


class OnlineSupplementIn(BaseModel):
    materials: list[OnlineSupplyIn] = Field(min_length=1, max_length=30)
    note: str = Field(default="", max_length=500)


class OnlineReviewIn(BaseModel):
    decision: Literal["accepted", "rejected"]
    reason: str = Field(default="", max_length=255)


class OnlineApplicationOut(BaseModel):
    case_id: int
    title: str
    status: str
    form_versions: dict[str, int]
    fields: list[OnlineFormField]
    values: dict[str, Any]
    materials: list[OnlineMaterialOut]
    reused: list[str] = Field(description="复用或以电子证照提供的材料（免提交）")


class OnlineFileQuery(BaseModel):
    t: str = Field(min_length=10, max_length=2000, description="签名链接令牌")


class OnlinePageQuery(BaseModel):
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID)
    limit: int = Field(default=20, ge=1, le=100)


# ---------------------------------------------------------------------------------------------
# Shaping


def _fields(raw: list[dict[str, Any]], locked: set[str] | None = None) -> list[OnlineFormField]:
    return [OnlineFormField(**f, locked=f["key"] in (locked or set())) for f in raw]


def _licence(lic: ElectronicLicence | None) -> OnlineLicenceOut | None:
    if lic is None:
        return None
    return OnlineLicenceOut(id=lic.id, title=lic.title, number_masked=lic.number_masked,
                            issuer=lic.issuer, valid_until=lic.valid_until)


def _links(kind: str, object_id: int, variants: list[str], principal: Principal) -> OnlineLinks:
    out: dict[str, Any] = {}
    for v in variants:
        token, exp = online.sign_link(kind=kind, object_id=object_id, variant=v, actor=principal)
        out[v] = f"{FILES_PATH}?t={token}"
        out["expires_at"] = datetime.fromtimestamp(exp, clock.SHANGHAI)
    return OnlineLinks(**out)


def _material(m: CaseMaterial, principal: Principal, *, side: str | None) -> OnlineMaterialOut:
    up: Upload | None = m.upload
    links = OnlineLinks()
    if up is not None:
        links = _links("m", m.id, online.variants_for(side=side, content_type=up.content_type),
                       principal)
    return OnlineMaterialOut(
        id=m.id, name=m.name, source=m.source.value, status=m.status.value, reason=m.reason,
        reused_from_id=m.reused_from_id,  # type: ignore[attr-defined]
        supplement_id=m.supplement_id,  # type: ignore[attr-defined]
        content_type=up.content_type if up else None, licence=_licence(m.licence),
        valid_until=m.valid_until, links=links)


async def _draft_out(draft: ApplicationDraft, principal: Principal) -> OnlineDraftOut:
    fields = list(draft.form_fields["fields"])
    values = online.decrypt_values(draft)
    applicant_id: int = draft.applicant_id  # type: ignore[attr-defined]
    if principal.user_id != applicant_id:
        values = online.masked_values(fields, values)
    mats = await online.draft_materials(draft.id)
    offers = await online.offers_for(applicant_id=applicant_id,
                                     enterprise_id=draft.enterprise_id,  # type: ignore[attr-defined]
                                     item_code=draft.item_code, bundle_code=draft.bundle_code)
    code = draft.item_code or draft.bundle_code or ""
    return OnlineDraftOut(
        id=draft.id, applicant_user_id=applicant_id, item_code=draft.item_code,
        bundle_code=draft.bundle_code, hall_code=draft.hall_code,
        enterprise_id=draft.enterprise_id,  # type: ignore[attr-defined]
        title=draft.title,
        form=OnlineFormOut(target_code=code, title=draft.title,
                           versions=draft.form_versions["versions"],
                           fields=_fields(fields, await online.locked_fields(draft))),
        values=values,
        materials=[_material(m, principal, side="applicant") for m in mats],
        checklist=[OnlineChecklistOut(
            name=o.name, required=o.required,
            provided=sum(1 for m in mats if m.name == o.name),
            reusable=[OnlineReusableOut(material_id=r.id, case_id=r.case_id,  # type: ignore[attr-defined]
                                        accepted_at=r.reviewed_at, valid_until=r.valid_until)
                      for r in o.reusable],
            licences=[x for x in (_licence(lic) for lic in o.licences) if x is not None],
        ) for o in offers],
        case_id=draft.case_id,  # type: ignore[attr-defined]
        updated_at=clock.local(draft.updated_at),
    )


async def _application_out(view: online.ApplicationView,
                           principal: Principal) -> OnlineApplicationOut:
    draft = view.draft
    fields = list(draft.form_fields["fields"]) if draft else []
    return OnlineApplicationOut(
        case_id=view.case.id, title=view.case.title, status=view.case.status,
        form_versions=draft.form_versions["versions"] if draft else {},
        fields=_fields(fields), values=view.values,
        materials=[_material(m, principal, side=view.side) for m in view.materials],
        reused=[m.name for m in view.materials if m.source.value != "upload"],
    )


def _form_version(f: FormDefinition) -> OnlineFormVersionOut:
    return OnlineFormVersionOut(version=f.version, title=f.title,
                                fields=_fields(list(f.schema["fields"])),
                                created_by=f.created_by_id,  # type: ignore[attr-defined]
                                created_at=clock.local(f.created_at))


async def _body_chunks(request: Request) -> Any:
    while True:
        chunk = await request.stream.read()  # type: ignore[union-attr]
        if chunk is None:
            return
        yield chunk


# ---------------------------------------------------------------------------------------------
# Routes: forms


@bp.get("/forms/<code:str>")
@endpoint(response=OnlineFormOut, summary="事项或一件事的网上申请表", tag="online")
async def get_form(_request: Request, code: str, principal: Principal) -> OnlineFormOut:
    form = await online.form_of(code)
    return OnlineFormOut(target_code=code, title=form.title, versions=form.versions,
                         fields=_fields(form.fields))


@admin_bp.put("/forms/<code:str>")
@endpoint(body=OnlineFormIn, response=OnlineFormVersionOut, status=201,
          roles=[Role.staff, Role.admin], summary="保存申请表（生成新版本）", tag="online")
async def save_form(_request: Request, code: str, body: OnlineFormIn,
                    principal: Principal) -> OnlineFormVersionOut:
    f = await online.save_form(actor=principal, target_code=code, title=body.title,
                               fields=body.fields)
    return _form_version(f)


@admin_bp.get("/forms/<code:str>/versions")
@endpoint(response=OnlineFormVersionsOut, roles=[Role.staff, Role.admin],
          summary="申请表的历史版本", tag="online")
async def form_versions(_request: Request, code: str,
                        principal: Principal) -> OnlineFormVersionsOut:
    return OnlineFormVersionsOut(target_code=code,
                                 versions=[_form_version(f) for f in
                                           await online.form_history(code)])


# ---------------------------------------------------------------------------------------------
# Routes: uploads and files


@bp.post("/uploads", stream=True)
@openapi.body(RequestBody({"multipart/form-data": _RawSchema({
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "JPEG/PNG/HEIC 图片或 PDF"}}})}, required=True))
@endpoint(response=OnlineUploadOut, status=201, errors=(413, 415, 503),
          summary="上传材料（wx.uploadFile，multipart 字段名 file；JPEG/PNG/HEIC/PDF）",
          tag="online")
async def upload(request: Request, principal: Principal) -> OnlineUploadOut:
    length = request.headers.get("content-length")
    up = await uploads.receive_upload(
        owner_id=principal.user_id, content_type=request.headers.get("content-type", ""),
        content_length=int(length) if length and length.isdigit() else None,
        chunks=_body_chunks(request))
    variants = online.variants_for(side="applicant", content_type=up.content_type)
    return OnlineUploadOut(id=up.id, content_type=up.content_type, size=up.size,
                           original_name=up.original_name, created_at=clock.local(up.created_at),
                           links=_links("u", up.id, variants, principal))


@bp.delete("/uploads/<upload_id:int>")
@endpoint(response=Ok, summary="删除自己未使用的上传文件", tag="online", errors=(503,))
async def delete_upload(_request: Request, upload_id: int, principal: Principal) -> Ok:
    await online.delete_upload(actor=principal, upload_id=path_id(upload_id, "文件"))
    return Ok()


@bp.get("/files")
@endpoint(query=OnlineFileQuery, public=True, errors=(403, 404, 503),
          summary="通过短时签名链接读取材料（工作人员查看带水印并留痕）", tag="online")
async def get_file(request: Request, query: OnlineFileQuery) -> HTTPResponse:
    f = await online.open_file(token=query.t, request_id=request_id(request))
    return HTTPResponse(f.content, content_type=f.content_type, headers={
        "Cache-Control": "private, no-store",
        "Content-Disposition": f'inline; filename="{f.filename}"',
        "X-Content-Type-Options": "nosniff",
    })


# ---------------------------------------------------------------------------------------------
# Routes: drafts


@bp.post("/drafts")
@endpoint(body=OnlineDraftIn, response=OnlineDraftOut, status=201,
          summary="开始网上申请（预填已知信息）", tag="online")
async def create_draft(_request: Request, body: OnlineDraftIn,
                       principal: Principal) -> OnlineDraftOut:
    draft = await online.create_draft(
        actor=principal, hall_code=body.hall_code, item_code=body.item_code,
        bundle_code=body.bundle_code, applicant_user_id=body.applicant_user_id,
        enterprise_id=body.enterprise_id)
    return await _draft_out(draft, principal)


@bp.get("/drafts")
@endpoint(query=OnlinePageQuery, response=OnlineDraftListOut, summary="未提交的申请（草稿）",
          tag="online")
async def list_drafts(_request: Request, query: OnlinePageQuery,
                      principal: Principal) -> OnlineDraftListOut:
    rows, nxt = await online.my_drafts(actor=principal, cursor=query.cursor, limit=query.limit)
    return OnlineDraftListOut(drafts=[OnlineDraftSummary(
        id=d.id, title=d.title, item_code=d.item_code, bundle_code=d.bundle_code,
        updated_at=clock.local(d.updated_at)) for d in rows], next_cursor=nxt)


@bp.get("/drafts/<draft_id:int>")
@endpoint(response=OnlineDraftOut, summary="继续填写申请", tag="online")
async def get_draft(_request: Request, draft_id: int, principal: Principal) -> OnlineDraftOut:
    draft = await online.access_draft(principal, path_id(draft_id, "申请"))
    return await _draft_out(draft, principal)


@bp.put("/drafts/<draft_id:int>/values")
@endpoint(body=OnlineValuesIn, response=OnlineDraftOut, summary="保存申请表填写内容",
          tag="online")
async def save_values(_request: Request, draft_id: int, body: OnlineValuesIn,
                      principal: Principal) -> OnlineDraftOut:
    draft = await online.save_values(actor=principal, draft_id=path_id(draft_id, "申请"),
                                     values=body.values)
    return await _draft_out(draft, principal)


@bp.post("/drafts/<draft_id:int>/materials")
@endpoint(body=OnlineSupplyIn, response=OnlineDraftOut, status=201,
          summary="为申请提供一项材料（上传、复用或电子证照）", tag="online")
async def attach(_request: Request, draft_id: int, body: OnlineSupplyIn,
                 principal: Principal) -> OnlineDraftOut:
    did = path_id(draft_id, "申请")
    await online.attach_to_draft(actor=principal, draft_id=did, supplied=body.supplied())
    return await _draft_out(await online.access_draft(principal, did), principal)


@bp.delete("/drafts/<draft_id:int>/materials/<material_id:int>")
@endpoint(response=Ok, summary="移除申请中的一项材料", tag="online")
async def detach(_request: Request, draft_id: int, material_id: int, principal: Principal) -> Ok:
    await online.detach_from_draft(actor=principal, draft_id=path_id(draft_id, "申请"),
                                   material_id=path_id(material_id, "材料"))
    return Ok()


@bp.post("/drafts/<draft_id:int>/submit")
@endpoint(body=OnlineSubmitIn, response=OnlineApplicationOut, status=201,
          summary="提交网上申请（可带 Idempotency-Key 安全重试）", tag="online")
async def submit(request: Request, draft_id: int, body: OnlineSubmitIn,
                 principal: Principal) -> HTTPResponse:
    did = path_id(draft_id, "申请")

    async def action() -> tuple[int, object]:
        case = await online.submit(actor=principal, draft_id=did, note=body.note)
        view = await online.application(actor=principal, case_id=case.id)
        return 201, (await _application_out(view, principal)).model_dump(mode="json")

    status, payload = await idempotency.run_once(
        user_id=principal.user_id, key=request.headers.get("idempotency-key"),
        fingerprint=idempotency.request_fingerprint("POST", request.path,
                                                    body.model_dump(mode="json")),
        action=action)
    return json(payload, status=status)


# ---------------------------------------------------------------------------------------------
# Routes: a case's application


@bp.get("/cases/<case_id:int>/application")
@endpoint(response=OnlineApplicationOut, summary="办件的申请表与材料", tag="online")
async def get_application(request: Request, case_id: int,
                          principal: Principal) -> OnlineApplicationOut:
    view = await online.application(actor=principal, case_id=path_id(case_id, "办件"),
                                    request_id=request_id(request))
    return await _application_out(view, principal)


@bp.post("/cases/<case_id:int>/supplements")
@endpoint(body=OnlineSupplementIn, response=OnlineApplicationOut, status=201,
          summary="按一次性告知补正材料（须与告知的材料一致）", tag="online")
async def supplement(_request: Request, case_id: int, body: OnlineSupplementIn,
                     principal: Principal) -> OnlineApplicationOut:
    cid = path_id(case_id, "办件")
    await online.deliver_supplement(actor=principal, case_id=cid,
                                    supplied=[m.supplied() for m in body.materials],
                                    note=body.note)
    return await _application_out(await online.application(actor=principal, case_id=cid),
                                  principal)


@bp.post("/cases/<case_id:int>/materials/<material_id:int>/review")
@endpoint(body=OnlineReviewIn, response=OnlineApplicationOut, roles=[Role.staff, Role.admin],
          summary="审核材料：通过或退回（须说明原因）", tag="online")
async def review(_request: Request, case_id: int, material_id: int, body: OnlineReviewIn,
                 principal: Principal) -> OnlineApplicationOut:
    cid = path_id(case_id, "办件")
    if body.decision not in ("accepted", "rejected"):
        raise AppError(ErrorCode.validation_failed, fields={"decision": "取值不在允许范围内"})
    await online.review_material(actor=principal, case_id=cid,
                                 material_id=path_id(material_id, "材料"),
                                 accept=body.decision == "accepted", reason=body.reason)
    return await _application_out(await online.application(actor=principal, case_id=cid),
                                  principal)
