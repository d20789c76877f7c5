"""投诉建议 / 办不成事: residents report and answer; staff assign, moderate and reply."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from api.endpoint import endpoint
from api.observability import request_id
from models.feedback import Feedback, FeedbackEvent, FeedbackKind, FeedbackStatus, Moderation
from models.users import Role
from services import clock, idempotency
from services import feedback as service
from services.auth import Principal

bp = Blueprint("feedback", url_prefix="/api/v1/feedback")
admin_bp = Blueprint("admin_feedback", url_prefix="/api/v1/admin/feedback")

Kind = Literal["complaint", "suggestion", "unresolved"]
Status = Literal["submitted", "replied", "reopened", "closed"]
ModerationName = Literal["passed", "review", "approved", "hidden"]
STAFF = [Role.staff, Role.admin]


PhotoRef = Annotated[str, StringConstraints(
    max_length=512, pattern=r"^(https://|wxfile://|cloud://)\S+$")]


class SubmitIn(BaseModel):
    kind: Kind = Field(description="complaint 投诉 / suggestion 建议 / unresolved 办不成事")
    text: str = Field(min_length=5, max_length=2000, description="诉求内容")
    photos: list[PhotoRef] = Field(
        default_factory=list, max_length=9,
        description="图片引用（wx.uploadFile 后的 https://、wxfile:// 或 cloud:// 地址），最多9张")
    case_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="相关办件")
    hall_code: str | None = Field(default=None, min_length=1, max_length=32,
                                  description="相关大厅编码")
    item_code: str | None = Field(default=None, min_length=1, max_length=32,
                                  description="相关事项编码")
    publish: bool = Field(
        default=True,
        description="是否同意在公开栏展示（展示时隐去身份证号、电话、银行卡号等）；false 不公开")

    model_config = {"extra": "forbid"}


class EventOut(BaseModel):
    at: datetime
    action: str
    note: str


class FeedbackOut(BaseModel):
    id: int
    kind: Kind
    kind_label: str
    text: str
    photos: list[str]
    case_id: int | None
    hall_code: str | None
    hall_name: str | None
    item_code: str | None
    department: str = Field(description="承办部门")
    handler_id: int | None = Field(description="承办人（工作人员）")
    status: Status
    moderation: ModerationName = Field(
        description="内容安全：passed 通过 / review 待人工审核 / approved 审核公开 / hidden 不公开")
    is_public: bool = Field(description="内容审核允许公开")
    publish: bool = Field(description="居民同意公开；is_public 与 publish 均为 true 才出现在公开栏")
    due_at: datetime = Field(description="办理时限（工作日）")
    overdue: bool
    reply: str | None
    replied_at: datetime | None
    reopen_count: int
    can_reopen: bool = Field(description="不满意时可重新办理一次")
    satisfied: bool | None
    close_reason: Literal["satisfied", "unsatisfied", "timeout"] | None
    closed_at: datetime | None
    created_at: datetime


class FeedbackDetailOut(FeedbackOut):
    events: list[EventOut]


class ResidentBrief(BaseModel):
    user_id: int
    name: str | None = Field(description="脱敏姓名")
    phone: str | None = Field(description="脱敏手机号")


class StaffFeedbackOut(FeedbackOut):
    resident: ResidentBrief


class FeedbackListOut(BaseModel):
    feedback: list[FeedbackOut]
    next_cursor: int | None


class StaffFeedbackListOut(BaseModel):
    feedback: list[StaffFeedbackOut]
    next_cursor: int | None


class PublicFeedbackOut(BaseModel):
    id: int
    kind: Kind
    kind_label: str
    text: str
    hall_name: str | None
    status: Status
    reply: str | None
    created_at: datetime


class PublicListOut(BaseModel):
    feedback: list[PublicFeedbackOut]
    next_cursor: int | None


class FeedbackMineQuery(BaseModel):
    cursor: int | None = Field(default=None, ge=1, le=2**63 - 1, description="上一页的 next_cursor")
    limit: int = Field(default=20, ge=1, le=100)


class PublicQuery(FeedbackMineQuery):
    kind: Kind | None = None


class StaffQuery(FeedbackMineQuery):
    status: Status | None = None
    kind: Kind | None = None
    moderation: ModerationName | None = None
    department: str | None = Field(default=None, min_length=1, max_length=64)
    overdue: bool | None = Field(default=None, description="true 只看超期未办")


class FeedbackPublicationIn(BaseModel):
    model_config = {"extra": "forbid"}

    publish: bool = Field(description="true 同意在公开栏展示；false 从公开栏撤回")


class AnswerIn(BaseModel):
    satisfied: bool = Field(description="是否满意；答复后作答即办结")
    note: str = Field(default="", max_length=500)

    model_config = {"extra": "forbid"}


class FeedbackReopenIn(BaseModel):
    reason: str = Field(min_length=2, max_length=500, description="不满意的原因")

    model_config = {"extra": "forbid"}


class AssignIn(BaseModel):
    handler_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="承办人用户ID")
    department: str | None = Field(default=None, min_length=1, max_length=64,
                                   description="承办部门")

    model_config = {"extra": "forbid"}


class ReplyIn(BaseModel):
    text: str = Field(min_length=2, max_length=2000, description="答复内容，将通知居民")

    model_config = {"extra": "forbid"}


class FeedbackRevealIn(BaseModel):
    reason: str = Field(min_length=4, max_length=200, description="查看事由，写入审计日志")

    model_config = {"extra": "forbid"}


class ModerateIn(BaseModel):
    approve: bool = Field(description="true 公开，false 不公开")

    model_config = {"extra": "forbid"}


def _out_fields(fb: Feedback, shown: service.MaskedCopy | None = None) -> dict[str, object]:
    """``shown``: the masked copy for anyone but the author (staff views); None for the
    author's own routes and the audited reveal, which show what was written."""
    now = clock.now()
    hall = fb.hall
    return {
        "id": fb.id, "kind": fb.kind.value, "kind_label": service.KIND_LABELS[fb.kind],
        "text": shown.text if shown else fb.text, "photos": list(fb.photos.get("refs", [])),
        "case_id": fb.case_id,
        "hall_code": hall.code if hall else None, "hall_name": hall.name if hall else None,
        "item_code": fb.item_code, "department": fb.department,
        "handler_id": fb.handler_id,  # type: ignore[attr-defined]
        "status": fb.status.value, "moderation": fb.moderation.value, "is_public": fb.is_public,
        "publish": fb.publish, "due_at": clock.local(fb.due_at),
        "overdue": service.is_overdue(fb, now=now),
        "reply": shown.reply if shown else fb.reply,
        "replied_at": clock.local(fb.replied_at) if fb.replied_at else None,
        "reopen_count": fb.reopen_count,
        "can_reopen": fb.reopen_count == 0 and (
            fb.status is FeedbackStatus.replied
            or (fb.satisfied is False and fb.status is FeedbackStatus.closed)),
        "satisfied": fb.satisfied,
        "close_reason": fb.close_reason.value if fb.close_reason else None,
        "closed_at": clock.local(fb.closed_at) if fb.closed_at else None,
        "created_at": clock.local(fb.created_at),
    }


def feedback_out(fb: Feedback) -> FeedbackOut:
    return FeedbackOut.model_validate(_out_fields(fb))


def detail_out(fb: Feedback, events: list[FeedbackEvent], *,
               masked: bool = False) -> FeedbackDetailOut:
    shown = service.masked_copy(fb, events) if masked else None
    return FeedbackDetailOut.model_validate({
        **_out_fields(fb, shown),
        "events": [EventOut(at=clock.local(e.created_at), action=e.action,
                            note=shown.notes[e.id] if shown else e.note)
                   for e in events]})


def staff_out(fb: Feedback) -> StaffFeedbackOut:
    user = fb.user
    person = user.person
    return StaffFeedbackOut.model_validate({
        **_out_fields(fb, service.masked_copy(fb)),
        "resident": ResidentBrief(user_id=user.id,
                                  name=person.name_masked if person else None,
                                  phone=user.phone_masked)})


async def _detail(fb: Feedback) -> FeedbackDetailOut:
    """The author's view: what they wrote, in full."""
    return detail_out(fb, await service.events_of(fb.id))


async def _staff_detail(actor: Principal, feedback_id: int) -> FeedbackDetailOut:
    """A staff view: read back through ``access_feedback`` (author's person loaded) and
    masked; the original through the audited ``/reveal``."""
    fb = await service.get_for(actor=actor, feedback_id=feedback_id)
    return detail_out(fb, await service.events_of(fb.id), masked=True)


def _next(rows: list[Feedback], limit: int) -> int | None:
    return rows[limit - 1].id if len(rows) > limit else None


# --- residents -----------------------------------------------------------------------------


@bp.post("")
@endpoint(body=SubmitIn, response=FeedbackDetailOut, status=201, errors=(503,),
          summary="提交投诉、建议或办不成事（先经内容安全检查；可带 Idempotency-Key 头重试）",
          tag="feedback")
async def submit(request: Request, body: SubmitIn, principal: Principal) -> HTTPResponse:
    async def action() -> tuple[int, object]:
        fb = await service.submit(
            actor=principal, kind=FeedbackKind(body.kind), text=body.text, photos=body.photos,
            case_id=body.case_id, hall_code=body.hall_code, item_code=body.item_code,
            publish=body.publish)
        out = await _detail(await service.get_own(actor=principal, feedback_id=fb.id))
        return 201, out.model_dump(mode="json")

    status, payload = await idempotency.run_once(
        user_id=principal.user_id, key=request.headers.get("idempotency-key"),
        fingerprint=idempotency.request_fingerprint("POST", request.path,
                                                    body.model_dump(mode="json")),
        action=action)
    return json(payload, status=status)


@bp.get("")
@endpoint(query=FeedbackMineQuery, response=FeedbackListOut, summary="我的诉求", tag="feedback")
async def mine(_request: Request, query: FeedbackMineQuery,
               principal: Principal) -> FeedbackListOut:
    rows = await service.list_mine(actor=principal, cursor=query.cursor, limit=query.limit)
    return FeedbackListOut(feedback=[feedback_out(f) for f in rows[: query.limit]],
                           next_cursor=_next(rows, query.limit))


@bp.get("/public")
@endpoint(query=PublicQuery, response=PublicListOut, public=True,
          summary="公开的诉求与答复（不含个人信息）", tag="feedback")
async def public(_request: Request, query: PublicQuery) -> PublicListOut:
    rows = await service.list_public(
        kind=FeedbackKind(query.kind) if query.kind else None, cursor=query.cursor,
        limit=query.limit)
    return PublicListOut(
        feedback=[_public_out(f) for f in rows[: query.limit]],
        next_cursor=_next(rows, query.limit))


def _public_out(f: Feedback) -> PublicFeedbackOut:
    shown = service.masked_copy(f)
    return PublicFeedbackOut(
        id=f.id, kind=f.kind.value, kind_label=service.KIND_LABELS[f.kind], text=shown.text,
        hall_name=f.hall.name if f.hall else None, status=f.status.value, reply=shown.reply,
        created_at=clock.local(f.created_at))


@bp.get("/<feedback_id:int>")
@endpoint(response=FeedbackDetailOut, summary="诉求详情与办理过程", tag="feedback")
async def detail(_request: Request, feedback_id: int, principal: Principal) -> FeedbackDetailOut:
    return await _detail(await service.get_own(actor=principal, feedback_id=feedback_id))


@bp.post("/<feedback_id:int>/satisfaction")
@endpoint(body=AnswerIn, response=FeedbackDetailOut, summary="对答复作出满意度评价（办结）",
          tag="feedback")
async def satisfaction(_request: Request, feedback_id: int, body: AnswerIn,
                       principal: Principal) -> FeedbackDetailOut:
    fb = await service.answer(actor=principal, feedback_id=feedback_id,
                              satisfied=body.satisfied, note=body.note)
    return await _detail(fb)


@bp.put("/<feedback_id:int>/publication")
@endpoint(body=FeedbackPublicationIn, response=FeedbackDetailOut,
          summary="公开或从公开栏撤回本人的诉求", tag="feedback")
async def publication(_request: Request, feedback_id: int, body: FeedbackPublicationIn,
                      principal: Principal) -> FeedbackDetailOut:
    fb = await service.set_publication(actor=principal, feedback_id=feedback_id,
                                       publish=body.publish)
    return await _detail(fb)


@bp.post("/<feedback_id:int>/reopen")
@endpoint(body=FeedbackReopenIn, response=FeedbackDetailOut, summary="不满意，重新办理（限一次）",
          tag="feedback")
async def reopen(_request: Request, feedback_id: int, body: FeedbackReopenIn,
                 principal: Principal) -> FeedbackDetailOut:
    fb = await service.reopen(actor=principal, feedback_id=feedback_id, reason=body.reason)
    return await _detail(fb)


# --- staff ---------------------------------------------------------------------------------


@admin_bp.get("")
@endpoint(query=StaffQuery, response=StaffFeedbackListOut, roles=STAFF,
          summary="诉求列表（个人信息脱敏）", tag="admin")
async def staff_list(_request: Request, query: StaffQuery,
                     principal: Principal) -> StaffFeedbackListOut:
    rows = await service.list_for_staff(
        actor=principal, status=FeedbackStatus(query.status) if query.status else None,
        kind=FeedbackKind(query.kind) if query.kind else None,
        moderation=Moderation(query.moderation) if query.moderation else None,
        department=query.department, overdue=query.overdue, cursor=query.cursor,
        limit=query.limit)
    return StaffFeedbackListOut(feedback=[staff_out(f) for f in rows[: query.limit]],
                                next_cursor=_next(rows, query.limit))


@admin_bp.get("/<feedback_id:int>")
@endpoint(response=FeedbackDetailOut, roles=STAFF, summary="诉求详情", tag="admin")
async def staff_detail(_request: Request, feedback_id: int,
                       principal: Principal) -> FeedbackDetailOut:
    return await _staff_detail(principal, feedback_id)


@admin_bp.post("/<feedback_id:int>/assign")
@endpoint(body=AssignIn, response=FeedbackDetailOut, roles=STAFF,
          summary="指定承办人或承办部门", tag="admin")
async def staff_assign(_request: Request, feedback_id: int, body: AssignIn,
                       principal: Principal) -> FeedbackDetailOut:
    fb = await service.assign(actor=principal, feedback_id=feedback_id,
                              handler_id=body.handler_id, department=body.department)
    return await _staff_detail(principal, fb.id)


@admin_bp.post("/<feedback_id:int>/reply")
@endpoint(body=ReplyIn, response=FeedbackDetailOut, roles=STAFF,
          summary="答复居民（发送订阅消息 feedback_reply）", tag="admin")
async def staff_reply(_request: Request, feedback_id: int, body: ReplyIn,
                      principal: Principal) -> FeedbackDetailOut:
    fb = await service.reply(actor=principal, feedback_id=feedback_id, text=body.text)
    return await _staff_detail(principal, fb.id)


@admin_bp.post("/<feedback_id:int>/moderate")
@endpoint(body=ModerateIn, response=FeedbackDetailOut, roles=STAFF,
          summary="人工审核待复核内容：公开或不公开", tag="admin")
async def staff_moderate(_request: Request, feedback_id: int, body: ModerateIn,
                         principal: Principal) -> FeedbackDetailOut:
    fb = await service.moderate(actor=principal, feedback_id=feedback_id, approve=body.approve)
    return await _staff_detail(principal, fb.id)


@admin_bp.post("/<feedback_id:int>/reveal")
@endpoint(body=FeedbackRevealIn, response=FeedbackDetailOut, roles=STAFF,
          summary="查看诉求原文（含个人信息，写入审计日志）", tag="admin")
async def staff_reveal(request: Request, feedback_id: int, body: FeedbackRevealIn,
                       principal: Principal) -> FeedbackDetailOut:
    shown = await service.reveal(actor=principal, feedback_id=feedback_id, reason=body.reason,
                                 request_id=request_id(request))
    return detail_out(shown.feedback, shown.events)
