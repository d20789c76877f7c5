"""综窗 behind the scenes (审批任务: queue, take, decide, return to the window) and at the
result window (出件: the applicant's choice, window hand-over, EMS)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from models.approval import CaseRelease, CaseTask, ReleaseMethod, TaskStatus
from models.users import Role
from services import clock
from services.approval import release, tasks
from services.auth import Principal

bp = Blueprint("approval", url_prefix="/api/v1/approval")

STAFF = [Role.staff, Role.admin]


def _t(dt: datetime | None) -> datetime | None:
    return clock.local(dt) if dt is not None else None


class ApprovalTaskQuery(BaseModel):
    status: TaskStatus | None = Field(default=None, description="默认：待审批与审批中")
    mine: bool = Field(default=False, description="只看我认领的")
    cursor: int | None = Field(default=None, ge=1, le=2**63 - 1)
    limit: int = Field(default=20, ge=1, le=100)


class ApprovalTaskOut(BaseModel):
    id: int
    case_id: int
    case_title: str
    case_status: str
    hall_code: str
    department: str
    item_codes: list[str]
    status: TaskStatus
    status_label: str
    promised_days: int
    due_at: datetime | None = Field(description="本部门办结时限；补正期间暂停为空")
    overdue: bool
    claimed_by: int | None
    claimed_at: datetime | None
    decided_at: datetime | None
    opinion: str
    version: int


class ApprovalTaskListOut(BaseModel):
    tasks: list[ApprovalTaskOut]
    next_cursor: int | None


class ApprovalDecisionIn(BaseModel):
    approve: bool = Field(description="true 批准 / false 不予批准")
    opinion: str = Field(min_length=2, max_length=500, description="审批意见")


class ApprovalReturnIn(BaseModel):
    reason: str = Field(min_length=4, max_length=500, description="退回窗口的理由")


class ReleaseChoiceIn(BaseModel):
    method: Literal["window", "mail"] = Field(description="window 窗口领取 / mail EMS寄递")
    address: str | None = Field(default=None, max_length=200, description="邮寄地址（邮寄必填）")
    phone: str | None = Field(default=None, max_length=20, description="收件人手机号（邮寄必填）")


class ReleasePickupIn(BaseModel):
    person_code: str | None = Field(default=None, min_length=1, max_length=512,
                                    description="扫描领取人个人码所得内容")
    id_number: str | None = Field(default=None, min_length=15, max_length=18,
                                  description="读取领取人身份证所得号码")


class ReleaseMailIn(BaseModel):
    tracking_no: str = Field(min_length=13, max_length=13, description="EMS 寄递单号")


class ReleaseOut(BaseModel):
    case_id: int
    method: ReleaseMethod
    address: str = Field(description="脱敏地址")
    recipient_phone: str = Field(description="脱敏手机号")
    chosen_at: datetime
    tracking_no: str | None
    verified_by: str = Field(description="person_code 个人码 / id_card 身份证 / 空")
    released_at: datetime | None


def task_out(t: CaseTask) -> ApprovalTaskOut:
    c = t.case
    now = clock.now()
    return ApprovalTaskOut(
        id=t.id, case_id=c.id, case_title=c.title, case_status=c.status, hall_code=t.hall_code,
        department=t.department, item_codes=[str(x) for x in t.items.get("codes", [])],
        status=t.status, status_label=tasks.TASK_LABELS[t.status],
        promised_days=t.promised_days, due_at=_t(t.due_at),
        overdue=t.status in (TaskStatus.pending, TaskStatus.claimed) and t.due_at is not None
        and t.due_at < now,
        claimed_by=t.claimed_by_id, claimed_at=_t(t.claimed_at),  # type: ignore[attr-defined]
        decided_at=_t(t.decided_at), opinion=t.opinion, version=t.version)


def release_out(r: CaseRelease) -> ReleaseOut:
    return ReleaseOut(case_id=r.case_id, method=r.method,  # type: ignore[attr-defined]
                      address=r.address_masked, recipient_phone=r.recipient_phone_masked,
                      chosen_at=clock.local(r.chosen_at), tracking_no=r.tracking_no,
                      verified_by=r.verified_by, released_at=_t(r.released_at))


@bp.get("/tasks")
@endpoint(query=ApprovalTaskQuery, response=ApprovalTaskListOut, roles=STAFF,
          summary="本部门审批队列", tag="approval")
async def queue(_request: Request, query: ApprovalTaskQuery,
                principal: Principal) -> ApprovalTaskListOut:
    rows, nxt = await tasks.queue(actor=principal, status=query.status, mine=query.mine,
                                  cursor=query.cursor, limit=query.limit)
    return ApprovalTaskListOut(tasks=[task_out(t) for t in rows], next_cursor=nxt)


@bp.get("/tasks/<task_id:int>")
@endpoint(response=ApprovalTaskOut, roles=STAFF, summary="审批任务详情", tag="approval")
async def get_task(_request: Request, task_id: int, principal: Principal) -> ApprovalTaskOut:
    return task_out(await tasks.get_task(actor=principal, task_id=task_id))


@bp.post("/tasks/<task_id:int>/claim")
@endpoint(response=ApprovalTaskOut, roles=STAFF, summary="认领审批任务（不会重复认领）",
          tag="approval")
async def claim(_request: Request, task_id: int, principal: Principal) -> ApprovalTaskOut:
    return task_out(await tasks.claim(actor=principal, task_id=task_id))


@bp.post("/tasks/<task_id:int>/decision")
@endpoint(body=ApprovalDecisionIn, response=ApprovalTaskOut, roles=STAFF,
          summary="批准或不予批准（附审批意见）", tag="approval")
async def decide(_request: Request, task_id: int, body: ApprovalDecisionIn,
                 principal: Principal) -> ApprovalTaskOut:
    return task_out(await tasks.decide(actor=principal, task_id=task_id, approve=body.approve,
                                       opinion=body.opinion))


@bp.post("/tasks/<task_id:int>/return")
@endpoint(body=ApprovalReturnIn, response=ApprovalTaskOut, roles=STAFF,
          summary="退回窗口（附理由）", tag="approval")
async def send_back(_request: Request, task_id: int, body: ApprovalReturnIn,
                    principal: Principal) -> ApprovalTaskOut:
    return task_out(await tasks.return_to_window(actor=principal, task_id=task_id,
                                                 reason=body.reason))


@bp.post("/cases/<case_id:int>/release-choice")
@endpoint(body=ReleaseChoiceIn, response=ReleaseOut, summary="选择领取方式：窗口领取或EMS寄递",
          tag="approval")
async def choose(_request: Request, case_id: int, body: ReleaseChoiceIn,
                 principal: Principal) -> ReleaseOut:
    return release_out(await release.choose(actor=principal, case_id=case_id,
                                            method=ReleaseMethod(body.method),
                                            address=body.address, phone=body.phone))


@bp.post("/cases/<case_id:int>/pickup")
@endpoint(body=ReleasePickupIn, response=ReleaseOut, roles=STAFF,
          summary="窗口出件：核验领取人个人码或身份证", tag="approval")
async def pickup(_request: Request, case_id: int, body: ReleasePickupIn,
                 principal: Principal) -> ReleaseOut:
    return release_out(await release.hand_over(actor=principal, case_id=case_id,
                                               person_code=body.person_code,
                                               id_number=body.id_number))


@bp.post("/cases/<case_id:int>/mail")
@endpoint(body=ReleaseMailIn, response=ReleaseOut, roles=STAFF,
          summary="邮寄出件：登记EMS单号", tag="approval")
async def mail(_request: Request, case_id: int, body: ReleaseMailIn,
               principal: Principal) -> ReleaseOut:
    return release_out(await release.mail(actor=principal, case_id=case_id,
                                          tracking_no=body.tracking_no))

