"""综窗 behind the scenes (审批任务: queue, take, decide, return to the window) and at the
result window (出件: the applicant's choice, window hand-over, EMS)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from api.endpoint import endpoint
from models.approval import CaseRelease, CaseTask, ReleaseMethod, TaskStatus
from models.ratings import RatingReview, ReviewVerdict
from models.users import Role
from services import clock, idempotency
from services import ratings as rating_service
from services.approval import release, tasks
from services.auth import Principal

bp = Blueprint("approval", url_prefix="/api/v1/approval")
# 好差评 that reaches people: figures by staff member and 差评核实 (services/ratings.py).
ratings_bp = Blueprint("staff_ratings", url_prefix="/api/v1/admin/staff-ratings")

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


async def _once(request: Request, principal: Principal, body: BaseModel,
                make: Callable[[], Awaitable[BaseModel]]) -> HTTPResponse:
    """With an Idempotency-Key a retried decision or hand-over gets the original answer, not a
    409 saying it is already done (services/idempotency.py)."""
    async def action() -> tuple[int, object]:
        return 200, (await make()).model_dump(mode="json")

    status, payload = await idempotency.run_once(
        user_id=principal.user_id, key=request.headers.get("idempotency-key"),
        fingerprint=idempotency.request_fingerprint("POST", request.path,
                                                    body.model_dump(mode="json")),
        action=action)
    return json(payload, status=status)


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
          summary="批准或不予批准（附审批意见；可带 Idempotency-Key 安全重试）", tag="approval")
async def decide(request: Request, task_id: int, body: ApprovalDecisionIn,
                 principal: Principal) -> HTTPResponse:
    async def make() -> BaseModel:
        return task_out(await tasks.decide(actor=principal, task_id=task_id,
                                           approve=body.approve, opinion=body.opinion))

    return await _once(request, principal, body, make)


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
          summary="窗口出件：核验领取人个人码或身份证（可带 Idempotency-Key）", tag="approval")
async def pickup(request: Request, case_id: int, body: ReleasePickupIn,
                 principal: Principal) -> HTTPResponse:
    async def make() -> BaseModel:
        return release_out(await release.hand_over(actor=principal, case_id=case_id,
                                                   person_code=body.person_code,
                                                   id_number=body.id_number))

    return await _once(request, principal, body, make)


class ReleaseAddressOut(BaseModel):
    address: str
    phone: str


@bp.get("/cases/<case_id:int>/mail-address")
@endpoint(response=ReleaseAddressOut, roles=STAFF,
          summary="邮寄出件：查看完整地址（留审计）", tag="approval")
async def mail_address(_request: Request, case_id: int,
                       principal: Principal) -> ReleaseAddressOut:
    address, phone = await release.mail_address(actor=principal, case_id=case_id)
    return ReleaseAddressOut(address=address, phone=phone)


@bp.post("/cases/<case_id:int>/mail")
@endpoint(body=ReleaseMailIn, response=ReleaseOut, roles=STAFF,
          summary="邮寄出件：登记EMS单号（可带 Idempotency-Key）", tag="approval")
async def mail(request: Request, case_id: int, body: ReleaseMailIn,
               principal: Principal) -> HTTPResponse:
    async def make() -> BaseModel:
        return release_out(await release.mail(actor=principal, case_id=case_id,
                                              tracking_no=body.tracking_no))

    return await _once(request, principal, body, make)



# --- 好差评 that reaches people ------------------------------------------------------------------


class StaffRatingFiguresOut(BaseModel):
    user_id: int
    nickname: str
    served_as: list[str] = Field(description="clerk 窗口 / approver 审批 / helper 帮办")
    ratings: int
    good: int = Field(description="满意及非常满意")
    bad: int = Field(description="差评（含未核实）")
    bad_valid: int = Field(description="核实属实、计入个人的差评（含申诉复核结果）")
    bad_unreviewed: int = Field(description="待核实的差评")
    average: float


class StaffRatingFiguresListOut(BaseModel):
    staff: list[StaffRatingFiguresOut]


class RatingReviewIn(BaseModel):
    verdict: Literal["valid", "invalid"] = Field(description="valid 属实 / invalid 不属实")
    reason: str = Field(min_length=4, max_length=500, description="核实理由")


class RatingAppealIn(BaseModel):
    reason: str = Field(min_length=4, max_length=500, description="申诉理由")


class RatingReviewOut(BaseModel):
    rating_id: int
    verdict: str
    reason: str
    reviewed_by: int | None
    reviewed_at: datetime
    appeal_reason: str | None
    appealed_at: datetime | None
    final_verdict: str | None
    final_reason: str | None
    final_at: datetime | None
    counts_against_staff: bool


def review_out(r: RatingReview) -> RatingReviewOut:
    return RatingReviewOut(
        rating_id=r.rating_id, verdict=r.verdict, reason=r.reason,  # type: ignore[attr-defined]
        reviewed_by=r.reviewed_by_id, reviewed_at=clock.local(r.reviewed_at),  # type: ignore[attr-defined]
        appeal_reason=r.appeal_reason, appealed_at=_t(r.appealed_at),
        final_verdict=r.final_verdict, final_reason=r.final_reason, final_at=_t(r.final_at),
        counts_against_staff=rating_service.counts_against(r))


@ratings_bp.get("/figures")
@endpoint(response=StaffRatingFiguresListOut, roles=STAFF,
          summary="好差评：按工作人员统计（数据权限内）", tag="ratings")
async def figures(_request: Request, principal: Principal) -> StaffRatingFiguresListOut:
    rows = await rating_service.staff_figures(actor=principal)
    return StaffRatingFiguresListOut(staff=[StaffRatingFiguresOut(**vars(f)) for f in rows])


@ratings_bp.post("/<rating_id:int>/review")
@endpoint(body=RatingReviewIn, response=RatingReviewOut, status=201, roles=STAFF,
          summary="差评核实（督查）", tag="ratings")
async def review(_request: Request, rating_id: int, body: RatingReviewIn,
                 principal: Principal) -> RatingReviewOut:
    return review_out(await rating_service.review_rating(
        actor=principal, rating_id=rating_id, verdict=ReviewVerdict(body.verdict),
        reason=body.reason))


@ratings_bp.post("/<rating_id:int>/appeal")
@endpoint(body=RatingAppealIn, response=RatingReviewOut, roles=STAFF,
          summary="被评价工作人员对核实结果申诉", tag="ratings")
async def appeal(_request: Request, rating_id: int, body: RatingAppealIn,
                 principal: Principal) -> RatingReviewOut:
    return review_out(await rating_service.appeal_review(actor=principal, rating_id=rating_id,
                                                         reason=body.reason))


@ratings_bp.post("/<rating_id:int>/appeal-decision")
@endpoint(body=RatingReviewIn, response=RatingReviewOut, roles=STAFF,
          summary="申诉复核（另一名督查）", tag="ratings")
async def appeal_decision(_request: Request, rating_id: int, body: RatingReviewIn,
                          principal: Principal) -> RatingReviewOut:
    return review_out(await rating_service.decide_appeal(
        actor=principal, rating_id=rating_id, verdict=ReviewVerdict(body.verdict),
        reason=body.reason))
