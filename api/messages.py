"""站内消息 (the message centre), notice consent and settings, and delivery figures for staff."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from api.schemas import Day, Page
from models.messages import Message, MessageCategory
from models.users import Role
from services import clock, messages, notifications
from services.auth import Principal

bp = Blueprint("messages", url_prefix="/api/v1/me/messages")
notices_bp = Blueprint("notice_settings", url_prefix="/api/v1/me/notifications")
admin_bp = Blueprint("admin_notifications", url_prefix="/api/v1/admin/notifications")

Category = Literal["appointments", "cases", "policies", "complaints", "helper_offers"]
ConsentAction = Literal["booking", "applying", "complaining", "rating", "helping", "policies"]


class MessageOut(BaseModel):
    id: int
    category: Category
    template: str = Field(description="消息类型，如 appointment_booked、helper_offered")
    title: str
    body: str
    page: str = Field(description="小程序内跳转页面")
    action_path: str = Field(description="可直接在消息上操作的接口（如帮办接单），无则为空")
    read: bool
    read_at: datetime | None
    created_at: datetime


class MessagePageOut(Page):
    messages: list[MessageOut]
    unread: int = Field(description="全部未读数")
    unread_by_category: dict[str, int]


class MessageListQuery(BaseModel):
    category: Category | None = None
    unread: bool = Field(default=False, description="只看未读")
    cursor: int | None = Field(default=None, ge=1, le=2**63 - 1, description="上一页的 next_cursor")
    limit: int = Field(default=20, ge=1, le=100)


class MessageReadAllIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Category | None = None


class MessageReadAllOut(BaseModel):
    marked: int


class ConsentQuery(BaseModel):
    action: ConsentAction = Field(description="即将进行的操作：预约、申办、投诉建议……")


class ConsentTemplateOut(BaseModel):
    template: str
    template_id: str = Field(description="传给 wx.requestSubscribeMessage 的 tmplIds")
    label: str
    long_term: bool = Field(description="政务类长期订阅：同意一次即可持续接收")


class ConsentPlanOut(BaseModel):
    tmpl_ids: list[str] = Field(description="按此顺序请求，最多3个")
    templates: list[ConsentTemplateOut]


class ConsentResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    results: dict[str, str] = Field(
        min_length=1, max_length=10,
        description="wx.requestSubscribeMessage 的结果：{模板ID: accept|reject|ban|filter}")


class NoticeSettingOut(BaseModel):
    template: str
    label: str
    category: str
    wechat: Literal["long_term", "one_time", "not_subscribed", "muted"]
    wechat_remaining: int | None = Field(description="一次性订阅剩余条数")
    sms_fallback: bool = Field(description="微信无法送达时是否改发短信")
    in_app: bool = Field(default=True, description="站内消息总会保存")


class NoticeSettingsOut(BaseModel):
    phone: str | None = Field(description="接收短信的脱敏手机号")
    sms_daily_limit: int
    sms_sent_today: int
    notices: list[NoticeSettingOut]


class FiguresQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    start: Day | None = Field(default=None, alias="from", description="开始日期（含），默认近7天")
    end: Day | None = Field(default=None, alias="to", description="结束日期（含），默认今天")


class DeliveryFiguresRow(BaseModel):
    day: date
    template: str
    total: int
    sent: int
    failed: int
    pending: int
    skipped: dict[str, int] = Field(description="按原因：not_subscribed、no_balance、muted")
    sms: dict[str, int] = Field(description="短信兜底：sent、failed、limited、no_phone、muted")


class DeliveryFiguresOut(BaseModel):
    start: date
    end: date
    rows: list[DeliveryFiguresRow]


def message_out(m: Message) -> MessageOut:
    return MessageOut(id=m.id, category=m.category.value, template=m.template, title=m.title,
                      body=m.body, page=m.page, action_path=m.action_path,
                      read=m.read_at is not None,
                      read_at=clock.local(m.read_at) if m.read_at else None,
                      created_at=clock.local(m.created_at))


# --- the centre ---------------------------------------------------------------------------


@bp.get("")
@endpoint(query=MessageListQuery, response=MessagePageOut, summary="我的消息（含未读数）",
          tag="messages")
async def list_messages(_request: Request, query: MessageListQuery,
                        principal: Principal) -> MessagePageOut:
    rows = await messages.list_mine(
        actor=principal, category=MessageCategory(query.category) if query.category else None,
        unread=query.unread, cursor=query.cursor, limit=query.limit)
    counts = await messages.unread_counts(actor=principal)
    more = len(rows) > query.limit
    return MessagePageOut(
        messages=[message_out(m) for m in rows[: query.limit]],
        next_cursor=str(rows[query.limit - 1].id) if more else None,
        unread=sum(counts.values()), unread_by_category=counts)


@bp.get("/<message_id:int>")
@endpoint(response=MessageOut, summary="查看一条消息", tag="messages")
async def get_message(_request: Request, message_id: int, principal: Principal) -> MessageOut:
    return message_out(await messages.access_message(principal, message_id))


@bp.post("/<message_id:int>/read")
@endpoint(response=MessageOut, summary="标为已读", tag="messages")
async def read_message(_request: Request, message_id: int, principal: Principal) -> MessageOut:
    return message_out(await messages.mark(actor=principal, message_id=message_id, read=True))


@bp.post("/<message_id:int>/unread")
@endpoint(response=MessageOut, summary="标为未读", tag="messages")
async def unread_message(_request: Request, message_id: int,
                         principal: Principal) -> MessageOut:
    return message_out(await messages.mark(actor=principal, message_id=message_id, read=False))


@bp.post("/read-all")
@endpoint(body=MessageReadAllIn, response=MessageReadAllOut, summary="全部标为已读（可按分类）",
          tag="messages")
async def read_all(_request: Request, body: MessageReadAllIn,
                   principal: Principal) -> MessageReadAllOut:
    n = await messages.mark_all_read(
        actor=principal, category=MessageCategory(body.category) if body.category else None)
    return MessageReadAllOut(marked=n)


# --- consent and settings -------------------------------------------------------------------


@notices_bp.get("/consent")
@endpoint(query=ConsentQuery, response=ConsentPlanOut,
          summary="操作前应请求订阅的消息模板（预约、申办、投诉建议……）", tag="messages")
async def consent_plan(_request: Request, query: ConsentQuery,
                       principal: Principal) -> ConsentPlanOut:
    asks = notifications.consent_for(query.action)[:3]
    return ConsentPlanOut(
        tmpl_ids=[a.template_id for a in asks],
        templates=[ConsentTemplateOut(template=a.template, template_id=a.template_id,
                                      label=a.label, long_term=a.long_term) for a in asks])


async def _settings(user_id: int) -> NoticeSettingsOut:
    s = await notifications.settings_of(user_id)
    return NoticeSettingsOut(
        phone=s.phone, sms_daily_limit=s.sms_daily_limit, sms_sent_today=s.sms_sent_today,
        notices=[NoticeSettingOut(template=n.template, label=n.label, category=n.category,
                                  wechat=n.wechat,
                                  wechat_remaining=n.wechat_remaining,
                                  sms_fallback=n.sms_fallback) for n in s.notices])


@notices_bp.post("/consent")
@endpoint(body=ConsentResultIn, response=NoticeSettingsOut,
          summary="记录 wx.requestSubscribeMessage 的结果", tag="messages")
async def consent_result(_request: Request, body: ConsentResultIn,
                         principal: Principal) -> NoticeSettingsOut:
    await notifications.record_consent(user_id=principal.user_id, results=body.results)
    return await _settings(principal.user_id)


@notices_bp.get("/settings")
@endpoint(response=NoticeSettingsOut, summary="我会收到哪些通知、通过什么渠道", tag="messages")
async def notice_settings(_request: Request, principal: Principal) -> NoticeSettingsOut:
    return await _settings(principal.user_id)


# --- figures --------------------------------------------------------------------------------


@admin_bp.get("/figures")
@endpoint(query=FiguresQuery, response=DeliveryFiguresOut, roles=[Role.admin, Role.staff],
          summary="消息送达统计：按模板与日期的发送、跳过原因、短信兜底", tag="messages")
async def delivery_figures(_request: Request, query: FiguresQuery,
                           principal: Principal) -> DeliveryFiguresOut:
    end = query.end or clock.today()
    start = query.start or end - timedelta(days=6)
    rows = await notifications.figures(actor=principal, start=start, end=end)
    return DeliveryFiguresOut(start=start, end=end, rows=[
        DeliveryFiguresRow(day=r.day, template=r.template, total=r.total, sent=r.sent,
                           failed=r.failed, pending=r.pending, skipped=r.skipped or {},
                           sms=r.sms or {}) for r in rows])
