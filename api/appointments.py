"""预约服务: slots per hall, booking (also on behalf), cancel, reschedule, check-in, waitlist."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from api.endpoint import endpoint
from api.observability import request_id
from api.schemas import Day
from models.appointments import (
    Appointment,
    AppointmentStatus,
    Pool,
    SlotRule,
    WaitlistEntry,
    WaitlistStatus,
)
from models.catalogue import WindowKind
from models.users import Role
from services import appointments, clock, idempotency, slots, verification, waitlist
from services.appointments import OnBehalf
from services.auth import Principal
from services.errors import not_found

bp = Blueprint("appointments", url_prefix="/api/v1")

MAX_ID = 2**53
CODE = r"^[A-Za-z0-9_-]+$"


def _id(value: int, what: str) -> int:
    # Out-of-range ids can't exist; refusing them here keeps them away from the database.
    if not 0 < value <= MAX_ID:
        raise not_found(what)
    return value


# --- models --------------------------------------------------------------------------------


class SlotQuery(BaseModel):
    date: Day = Field(description="日期 YYYY-MM-DD（北京时间）")
    window_kind: WindowKind | None = Field(default=None, description="窗口类型")
    item_code: str | None = Field(default=None, min_length=1, max_length=32, pattern=CODE,
                                  description="要办的事项，按其办理窗口筛选时段")


class SlotOut(BaseModel):
    id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    capacity: int
    remaining: int = Field(description="对当前用户可约的剩余名额（含绿色通道名额时已计入）")
    bookable: bool


class SlotListOut(BaseModel):
    hall_code: str
    date: dt.date
    window_kind: WindowKind
    green_channel: bool = Field(description="当前用户是否享受绿色通道预留名额")
    booking_open_until: dt.date | None = Field(description="最远可预约日期；无预约规则时为空")
    slots: list[SlotOut]


class RuleIn(BaseModel):
    window_kind: WindowKind
    slot_minutes: int = Field(ge=5, le=240, description="每个时段的分钟数")
    capacity: int = Field(ge=1, le=500, description="每个时段的总名额")
    green_percent: int = Field(default=0, ge=0, le=100,
                               description="每个时段为绿色通道预留的名额比例（%，向下取整），"
                               "时段前一天0点起向所有人开放")
    book_ahead_days: int = Field(default=7, ge=1, le=60, description="可提前预约的天数")
    is_active: bool = True


class RuleOut(BaseModel):
    window_kind: WindowKind
    slot_minutes: int
    capacity: int
    green_percent: int
    green_hold: int = Field(description="按比例折算的每时段预留名额")
    book_ahead_days: int
    is_active: bool


class RulesOut(BaseModel):
    hall_code: str
    rules: list[RuleOut]


class OnBehalfIn(BaseModel):
    name: str = Field(min_length=2, max_length=32, pattern=r"^[\u3400-\u9fff·•]+$",
                      description="被代预约居民的姓名")
    id_number: str = Field(min_length=18, max_length=18, pattern=r"^[0-9]{17}[0-9Xx]$",
                           description="被代预约居民的18位身份证号")


class BookIn(BaseModel):
    slot_id: int = Field(ge=1, le=MAX_ID)
    item_code: str = Field(min_length=1, max_length=32, pattern=CODE)
    on_behalf_of: OnBehalfIn | None = Field(default=None, description="社区工作人员代预约时填写")


class RescheduleIn(BaseModel):
    slot_id: int = Field(ge=1, le=MAX_ID, description="改约到的新时段")


class StaffCheckInIn(BaseModel):
    code: str = Field(min_length=1, max_length=32, description="居民出示的预约签到码")


class HallCheckInIn(BaseModel):
    hall_code: str = Field(min_length=1, max_length=32, description="扫描大厅签到码得到的大厅编码")
    token: str = Field(min_length=1, max_length=64, description="大厅签到码中的校验串")


class WaitlistIn(BaseModel):
    item_code: str = Field(min_length=1, max_length=32, pattern=CODE)
    on_behalf_of: OnBehalfIn | None = None


class AppointmentOut(BaseModel):
    id: int
    status: AppointmentStatus
    hall_code: str
    hall_name: str
    window_kind: WindowKind
    item_code: str
    item_name: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    person_name: str = Field(description="脱敏姓名")
    person_id_number: str = Field(description="脱敏身份证号")
    on_behalf: bool = Field(description="是否为代预约")
    booked_by_me: bool
    green_channel: bool
    check_in_code: str | None = Field(description="到厅签到二维码内容；仅本人或代约人可见")
    created_at: dt.datetime
    cancelled_at: dt.datetime | None
    checked_in_at: dt.datetime | None


class AppointmentListQuery(BaseModel):
    status: AppointmentStatus | None = None
    cursor: int | None = Field(default=None, ge=0, le=MAX_ID, description="上一页的 next_cursor")
    limit: int = Field(default=20, ge=1, le=100)


class AppointmentListOut(BaseModel):
    appointments: list[AppointmentOut]
    next_cursor: int | None


class HallDayQuery(BaseModel):
    date: Day = Field(description="日期 YYYY-MM-DD（北京时间）")


class HallCodeOut(BaseModel):
    hall_code: str
    token: str
    valid_on: dt.date
    qr_content: str = Field(description="放在大厅签到二维码中的内容")


class WaitlistOut(BaseModel):
    id: int
    slot_id: int
    hall_code: str
    hall_name: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    item_code: str
    status: WaitlistStatus
    position: int | None = Field(description="在候补队列中的位置，从1开始")
    person_name: str
    appointment_id: int | None


class WaitlistListOut(BaseModel):
    entries: list[WaitlistOut]


# --- shaping -------------------------------------------------------------------------------


async def _out_many(rows: list[Appointment], principal: Principal) -> list[AppointmentOut]:
    names = await appointments.item_names({a.item_code for a in rows})
    # Whose real-name person the caller proved only matters for rows not theirs by account
    # (the common answer, a booking just made, needs no read).
    me = None
    if any(principal.user_id not in (a.booked_by_id, a.resident_id)  # type: ignore[attr-defined]
           for a in rows):
        me = await verification.verified_person_of(principal.user_id)
    out = []
    for a in rows:
        mine = (principal.user_id in (a.booked_by_id, a.resident_id)  # type: ignore[attr-defined]
                or (me is not None and me.id == a.person_id))  # type: ignore[attr-defined]
        out.append(AppointmentOut(
            id=a.id, status=a.status, hall_code=a.hall.code, hall_name=a.hall.name,
            window_kind=a.window_kind, item_code=a.item_code,
            item_name=names.get(a.item_code, a.item_code),
            starts_at=clock.local(a.starts_at), ends_at=clock.local(a.ends_at),
            person_name=a.person.name_masked, person_id_number=a.person.id_number_masked,
            on_behalf=a.on_behalf,
            booked_by_me=a.booked_by_id == principal.user_id,  # type: ignore[attr-defined]
            green_channel=a.pool == Pool.green,
            check_in_code=a.check_in_token if mine and a.status == AppointmentStatus.booked
            else None,
            created_at=clock.local(a.created_at),
            cancelled_at=clock.local(a.cancelled_at) if a.cancelled_at else None,
            checked_in_at=clock.local(a.checked_in_at) if a.checked_in_at else None,
        ))
    return out


async def _out(a: Appointment, principal: Principal) -> AppointmentOut:
    return (await _out_many([a], principal))[0]


def _rule_out(r: SlotRule) -> RuleOut:
    return RuleOut(window_kind=r.window_kind, slot_minutes=r.slot_minutes, capacity=r.capacity,
                   green_percent=r.green_percent, green_hold=slots.green_hold_of(r),
                   book_ahead_days=r.book_ahead_days,
                   is_active=r.is_active)


def _on_behalf(body: OnBehalfIn | None) -> OnBehalf | None:
    return OnBehalf(name=body.name, id_number=body.id_number) if body else None


async def _waitlist_out(e: WaitlistEntry) -> WaitlistOut:
    # The waitlist service hands entries over with their slot, hall and person loaded.
    return WaitlistOut(
        id=e.id, slot_id=e.slot.id, hall_code=e.slot.hall.code, hall_name=e.slot.hall.name,
        starts_at=clock.local(e.slot.starts_at), ends_at=clock.local(e.slot.ends_at),
        item_code=e.item_code, status=e.status, position=await waitlist.position(e),
        person_name=e.person.name_masked,
        appointment_id=e.appointment_id,  # type: ignore[attr-defined]
    )


# --- slots and rules -----------------------------------------------------------------------


@bp.get("/halls/<hall_code:str>/slots")
@endpoint(query=SlotQuery, response=SlotListOut, summary="查询某大厅某天可预约时段",
          tag="appointments")
async def list_slots(_request: Request, hall_code: str, query: SlotQuery,
                     principal: Principal) -> SlotListOut:
    day = await slots.list_day(actor=principal, hall_code=hall_code, day=query.date,
                               window_kind=query.window_kind, item_code=query.item_code)
    return SlotListOut(
        hall_code=day.hall.code, date=day.day, window_kind=day.window_kind,
        green_channel=day.green, booking_open_until=day.booking_open_until,
        slots=[SlotOut(id=v.slot.id, starts_at=clock.local(v.slot.starts_at),
                       ends_at=clock.local(v.slot.ends_at), capacity=v.slot.capacity,
                       remaining=v.remaining, bookable=v.bookable) for v in day.slots],
    )


@bp.get("/halls/<hall_code:str>/slot-rules")
@endpoint(response=RulesOut, roles=[Role.staff, Role.admin], summary="大厅预约规则",
          tag="appointments")
async def get_rules(_request: Request, hall_code: str, principal: Principal) -> RulesOut:
    hall, rules = await slots.rules_of(actor=principal, hall_code=hall_code)
    return RulesOut(hall_code=hall.code, rules=[_rule_out(r) for r in rules])


@bp.put("/halls/<hall_code:str>/slot-rules")
@endpoint(body=RuleIn, response=RuleOut, roles=[Role.staff, Role.admin],
          summary="设置某类窗口的时段长度、名额、绿色通道预留和可提前天数", tag="appointments")
async def put_rule(_request: Request, hall_code: str, body: RuleIn,
                   principal: Principal) -> RuleOut:
    row = await slots.set_rule(actor=principal, hall_code=hall_code, rule=slots.RuleInput(
        window_kind=body.window_kind, slot_minutes=body.slot_minutes, capacity=body.capacity,
        green_percent=body.green_percent, book_ahead_days=body.book_ahead_days,
        is_active=body.is_active))
    return _rule_out(row)


@bp.get("/halls/<hall_code:str>/check-in-code")
@endpoint(response=HallCodeOut, roles=[Role.staff, Role.admin],
          summary="大厅今日签到码（居民扫码签到）", tag="appointments")
async def hall_code(_request: Request, hall_code: str, principal: Principal) -> HallCodeOut:
    hall, token, day = await appointments.hall_code_for_today(actor=principal,
                                                              hall_code=hall_code)
    return HallCodeOut(hall_code=hall.code, token=token, valid_on=day,
                       qr_content=f"xq-checkin:{hall.code}:{token}")


@bp.get("/halls/<hall_code:str>/appointments")
@endpoint(query=HallDayQuery, response=AppointmentListOut, roles=[Role.staff, Role.admin],
          summary="大厅某天的预约（脱敏）", tag="appointments")
async def hall_day(_request: Request, hall_code: str, query: HallDayQuery,
                   principal: Principal) -> AppointmentListOut:
    rows = await appointments.hall_day(actor=principal, hall_code=hall_code, day=query.date)
    return AppointmentListOut(appointments=await _out_many(rows, principal), next_cursor=None)


# --- appointments --------------------------------------------------------------------------


@bp.post("/appointments")
@endpoint(body=BookIn, response=AppointmentOut, status=201,
          summary="预约（可带 Idempotency-Key 头安全重试；社区工作人员可代预约）",
          tag="appointments")
async def book(request: Request, body: BookIn, principal: Principal) -> HTTPResponse:
    async def admit() -> None:
        # Only a request that will act counts against the limit: a retry with its key is
        # answered from the stored reply first.
        await appointments.check_rate(actor=principal)

    async def action() -> tuple[int, object]:
        appt = await appointments.book(actor=principal, slot_id=body.slot_id,
                                       item_code=body.item_code,
                                       on_behalf_of=_on_behalf(body.on_behalf_of),
                                       request_id=request_id(request))
        return 201, (await _out(appt, principal)).model_dump(mode="json")

    status, payload = await idempotency.run_once(
        user_id=principal.user_id, key=request.headers.get("idempotency-key"),
        fingerprint=idempotency.request_fingerprint("POST", request.path,
                                                    body.model_dump(mode="json")),
        action=action, admit=admit)
    return json(payload, status=status)


@bp.get("/appointments")
@endpoint(query=AppointmentListQuery, response=AppointmentListOut,
          summary="我的预约与我代约的预约", tag="appointments")
async def list_mine(_request: Request, query: AppointmentListQuery,
                    principal: Principal) -> AppointmentListOut:
    rows = await appointments.list_mine(actor=principal, status=query.status,
                                        cursor=query.cursor, limit=query.limit + 1)
    page = rows[: query.limit]
    return AppointmentListOut(appointments=await _out_many(page, principal),
                              next_cursor=page[-1].id if len(rows) > query.limit else None)


@bp.get("/appointments/<appointment_id:int>")
@endpoint(response=AppointmentOut, summary="预约详情", tag="appointments")
async def detail(_request: Request, appointment_id: int, principal: Principal) -> AppointmentOut:
    appt = await appointments.get(actor=principal,
                                  appointment_id=_id(appointment_id, "预约"))
    return await _out(appt, principal)


@bp.post("/appointments/<appointment_id:int>/cancel")
@endpoint(response=AppointmentOut, summary="取消预约（开始前规定时间内不可取消）",
          tag="appointments")
async def cancel(_request: Request, appointment_id: int, principal: Principal) -> AppointmentOut:
    appt = await appointments.cancel(actor=principal,
                                     appointment_id=_id(appointment_id, "预约"))
    return await _out(appt, principal)


@bp.post("/appointments/<appointment_id:int>/reschedule")
@endpoint(body=RescheduleIn, response=AppointmentOut,
          summary="改约：先占新时段再释放原时段，失败则原预约不变", tag="appointments")
async def reschedule(_request: Request, appointment_id: int, body: RescheduleIn,
                     principal: Principal) -> AppointmentOut:
    appt = await appointments.reschedule(actor=principal,
                                         appointment_id=_id(appointment_id, "预约"),
                                         slot_id=body.slot_id)
    return await _out(appt, principal)


@bp.post("/appointments/<appointment_id:int>/check-in")
@endpoint(body=HallCheckInIn, response=AppointmentOut, summary="居民扫大厅签到码签到",
          tag="appointments")
async def check_in_at_hall(_request: Request, appointment_id: int, body: HallCheckInIn,
                           principal: Principal) -> AppointmentOut:
    appt = await appointments.check_in_at_hall(
        actor=principal, appointment_id=_id(appointment_id, "预约"),
        hall_code=body.hall_code, token=body.token)
    return await _out(appt, principal)


@bp.post("/appointments/check-in")
@endpoint(body=StaffCheckInIn, response=AppointmentOut, roles=[Role.staff, Role.admin],
          summary="工作人员扫居民预约码签到", tag="appointments")
async def check_in_by_code(_request: Request, body: StaffCheckInIn,
                           principal: Principal) -> AppointmentOut:
    appt = await appointments.check_in_by_code(actor=principal, code=body.code)
    return await _out(appt, principal)


# --- waitlist ------------------------------------------------------------------------------


@bp.post("/slots/<slot_id:int>/waitlist")
@endpoint(body=WaitlistIn, response=WaitlistOut, status=201,
          summary="时段约满时加入候补；有人取消时按顺序自动预约并通知", tag="appointments")
async def join_waitlist(_request: Request, slot_id: int, body: WaitlistIn,
                        principal: Principal) -> WaitlistOut:
    entry = await waitlist.join(actor=principal, slot_id=_id(slot_id, "预约时段"),
                                item_code=body.item_code,
                                on_behalf_of=_on_behalf(body.on_behalf_of))
    return await _waitlist_out(entry)


@bp.get("/waitlist")
@endpoint(response=WaitlistListOut, summary="我的候补", tag="appointments")
async def my_waitlist(_request: Request, principal: Principal) -> WaitlistListOut:
    return WaitlistListOut(entries=[await _waitlist_out(e)
                                    for e in await waitlist.list_mine(actor=principal)])


@bp.delete("/waitlist/<entry_id:int>")
@endpoint(response=WaitlistOut, summary="退出候补", tag="appointments")
async def leave_waitlist(_request: Request, entry_id: int, principal: Principal) -> WaitlistOut:
    entry = await waitlist.leave(actor=principal, entry_id=_id(entry_id, "候补"))
    return await _waitlist_out(entry)
