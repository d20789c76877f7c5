"""办件: open a case, follow it (timeline, due time, what is missing), move it, ask for help;
staff lists, overdue alerts and repeated supplement notices."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sanic import Blueprint, Request

from api.endpoint import endpoint
from models.approval import DECIDED_TASK, TASK_STATUS_LABELS
from models.cases import Case, CaseAlertLevel, CaseStatus, HelperAssignment, SupplementRequest
from models.users import Role
from services import cases, clock, helpers
from services.auth import Principal
from services.cases import Action, ActorKind
from services.errors import not_found

bp = Blueprint("cases", url_prefix="/api/v1/cases")
admin_bp = Blueprint("cases_admin", url_prefix="/api/v1/admin")

MAX_ID = 2**63 - 1


def path_id(value: int, what: str) -> int:
    # A path id outside BIGINT can't name a row; say so before the database chokes on it.
    if not 1 <= value <= MAX_ID:
        raise not_found(what)
    return value


def _t(dt: datetime | None) -> datetime | None:
    return clock.local(dt) if dt is not None else None


# ---------------------------------------------------------------------------------------------
# Models


class OpenCaseIn(BaseModel):
    item_code: str | None = Field(default=None, min_length=1, max_length=32,
                                  description="事项编码（与 bundle_code 二选一）")
    bundle_code: str | None = Field(default=None, min_length=1, max_length=32,
                                    description="一件事编码")
    hall_code: str = Field(min_length=1, max_length=32, description="办理大厅编码")
    applicant_user_id: int | None = Field(
        default=None, ge=1, le=MAX_ID,
        description="代为申请时的申请人用户ID（须有申请人的 apply 代办授权）",
    )
    enterprise_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                      description="企业事项：办理的企业")
    note: str = Field(default="", max_length=500)
    need_help: bool = Field(default=False, description="是否申请帮办代办")
    help_note: str = Field(default="", max_length=500)


class TransitionIn(BaseModel):
    action: Literal["accept", "start_review", "resubmit", "approve", "reject", "deliver",
                    "close", "withdraw"] = Field(
        description="受理/审查/补正提交/批准/不予批准/送达/办结/撤回")
    note: str = Field(default="", max_length=500)
    expected_version: int | None = Field(default=None, ge=0, le=2**31 - 1,
                                         description="乐观锁：读取到的 version")


class MaterialIssue(BaseModel):
    material: str = Field(min_length=1, max_length=128,
                          description="材料名称（取自办事指南材料清单）")
    reason: str = Field(min_length=2, max_length=200, description="缺少或不符合的原因")


class SupplementIn(BaseModel):
    items: list[MaterialIssue] = Field(min_length=1, max_length=50,
                                       description="一次性告知：全部缺少或不符合的材料")
    new_requirement_reason: str | None = Field(
        default=None, max_length=500, description="第二次及以后补正时必填：为何是新的要求"
    )
    note: str = Field(default="", max_length=500)


class CaseReopenIn(BaseModel):
    reason: str = Field(min_length=4, max_length=500, description="重新办理的理由")


class HelpIn(BaseModel):
    note: str = Field(default="", max_length=500, description="需要帮助的事项说明")


class TimelineEntry(BaseModel):
    at: datetime
    action: str
    from_status: str | None
    to_status: str
    actor_kind: str = Field(description="applicant / helper / staff / system")
    note: str


class MissingMaterial(BaseModel):
    material: str
    reason: str


class SupplementOut(BaseModel):
    sequence: int
    requested_at: datetime
    resolved_at: datetime | None
    items: list[MissingMaterial]
    new_requirement_reason: str | None = Field(description="再次补正的理由（仅工作人员可见）")


class ApplicantBrief(BaseModel):
    name: str | None = Field(description="脱敏姓名")
    id_number: str | None = Field(description="脱敏身份证号")
    enterprise_name: str | None


class HelperBrief(BaseModel):
    assignment_id: int
    helper_user_id: int
    nickname: str
    status: str


class CaseDepartmentOut(BaseModel):
    """并联审批: one approving department's progress, as the applicant sees it."""

    department: str
    status: str = Field(description="pending 待审批 / claimed 审批中 / approved / rejected / "
                                    "returned")
    status_label: str
    due_at: datetime | None = Field(description="本部门办结时限")
    decided_at: datetime | None
    opinion: str = Field(description="审批意见（办结后可见）")


class CaseReleaseBrief(BaseModel):
    method: str = Field(description="window 窗口领取 / mail EMS寄递")
    address: str = Field(description="脱敏地址")
    tracking_no: str | None
    released_at: datetime | None


class CaseOut(BaseModel):
    id: int
    title: str
    item_code: str | None
    bundle_code: str | None
    department: str
    hall_code: str
    status: CaseStatus
    status_label: str
    version: int
    promised_days: int = Field(description="承诺时限（工作日）")
    accepted_at: datetime | None
    due_at: datetime | None = Field(description="办结时限；补正期间暂停计时为空")
    clock_paused: bool = Field(description="是否处于补正暂停计时")
    overdue: bool
    closed_at: datetime | None
    reopen_until: datetime | None = Field(description="可申请重新办理的截止时间")
    applicant: ApplicantBrief
    filed_by_proxy: bool = Field(description="是否由他人代为提交")
    help_requested: bool
    helper: HelperBrief | None
    missing: list[MissingMaterial] = Field(description="当前需补正的全部材料")
    supplements: list[SupplementOut]
    timeline: list[TimelineEntry]
    actions: list[str] = Field(description="当前用户可执行的操作")
    created_at: datetime
    departments: list[CaseDepartmentOut] = Field(
        default_factory=list, description="各审批部门进度（一件事并联审批）")
    release: CaseReleaseBrief | None = Field(default=None, description="出件方式与进度")


class CaseSummary(BaseModel):
    id: int
    title: str
    hall_code: str
    department: str
    status: CaseStatus
    status_label: str
    due_at: datetime | None
    created_at: datetime


class CaseListQuery(BaseModel):
    status: CaseStatus | None = None
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID, description="上一页的 next_cursor")
    limit: int = Field(default=20, ge=1, le=100)


class StaffCaseQuery(CaseListQuery):
    hall_code: str | None = Field(default=None, min_length=1, max_length=32)
    overdue: bool | None = None


class CaseListOut(BaseModel):
    cases: list[CaseSummary]
    next_cursor: int | None


class HelpOut(BaseModel):
    case_id: int
    help_requested: bool
    assigned: bool = Field(description="是否已派给帮办人员；否则等待后台重新派单")
    helper: HelperBrief | None


class AlertQuery(BaseModel):
    level: CaseAlertLevel | None = None
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID)
    limit: int = Field(default=50, ge=1, le=200)


class AlertOut(BaseModel):
    id: int
    case_id: int
    title: str
    hall_code: str
    department: str
    status: CaseStatus
    level: CaseAlertLevel
    due_at: datetime
    created_at: datetime


class AlertListOut(BaseModel):
    alerts: list[AlertOut]
    next_cursor: int | None


class PageQuery(BaseModel):
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID)
    limit: int = Field(default=50, ge=1, le=200)


class RepeatSupplementOut(BaseModel):
    id: int
    case_id: int
    title: str
    hall_code: str
    department: str
    sequence: int
    requested_by: int | None
    requested_at: datetime
    items: list[MissingMaterial]
    new_requirement_reason: str | None


class RepeatSupplementListOut(BaseModel):
    supplements: list[RepeatSupplementOut]
    next_cursor: int | None


# ---------------------------------------------------------------------------------------------
# Shaping


def _issues(raw: object) -> list[MissingMaterial]:
    items = raw.get("items", []) if isinstance(raw, dict) else []
    return [MissingMaterial(material=str(i.get("material", "")), reason=str(i.get("reason", "")))
            for i in items if isinstance(i, dict)]


def helper_brief(a: HelperAssignment | None) -> HelperBrief | None:
    if a is None:
        return None
    return HelperBrief(assignment_id=a.id, helper_user_id=a.helper_id,  # type: ignore[attr-defined]
                       nickname=a.helper.nickname, status=a.status)


def summary(c: Case) -> CaseSummary:
    return CaseSummary(id=c.id, title=c.title, hall_code=c.hall_code, department=c.department,
                       status=c.status, status_label=cases.STATUS_LABELS[c.status],
                       due_at=_t(c.due_at), created_at=clock.local(c.created_at))


def _supplement(s: SupplementRequest, *, staff: bool) -> SupplementOut:
    return SupplementOut(sequence=s.sequence, requested_at=clock.local(s.requested_at),
                         resolved_at=_t(s.resolved_at), items=_issues(s.items),
                         new_requirement_reason=s.new_requirement_reason if staff else None)


def case_out(view: cases.CaseView) -> CaseOut:
    c = view.case
    staff = ActorKind.staff in view.access.kinds
    person = c.person
    now = clock.now()
    return CaseOut(
        id=c.id, title=c.title, item_code=c.item_code, bundle_code=c.bundle_code,
        department=c.department, hall_code=c.hall_code, status=c.status,
        status_label=cases.STATUS_LABELS[c.status], version=c.version,
        promised_days=c.promised_days, accepted_at=_t(c.accepted_at), due_at=_t(c.due_at),
        clock_paused=c.status is CaseStatus.supplement_requested,
        overdue=c.status in cases.CLOCK_RUNNING and c.due_at is not None and c.due_at < now,
        closed_at=_t(c.closed_at), reopen_until=_t(view.reopen_until),
        applicant=ApplicantBrief(
            name=person.name_masked if person else None,
            id_number=person.id_number_masked if person else None,
            enterprise_name=c.enterprise.name if c.enterprise else None,
        ),
        filed_by_proxy=c.submitted_by_id != c.applicant_id,  # type: ignore[attr-defined]
        help_requested=c.help_requested_at is not None,
        helper=helper_brief(view.helper),
        missing=_issues({"items": view.missing}),
        supplements=[_supplement(s, staff=staff) for s in view.supplements],
        timeline=[TimelineEntry(at=clock.local(e.created_at), action=e.action,
                                from_status=e.from_status, to_status=e.to_status,
                                actor_kind=e.actor_kind, note=note)
                  for e, note in zip(view.events, cases.timeline_notes(view), strict=True)],
        actions=[str(a) for a in view.actions],
        created_at=clock.local(c.created_at),
        departments=[CaseDepartmentOut(
            department=t.department, status=t.status,
            status_label=TASK_STATUS_LABELS.get(t.status, t.status), due_at=_t(t.due_at),
            decided_at=_t(t.decided_at),
            opinion=t.opinion if t.status in DECIDED_TASK else "") for t in view.tasks],
        release=CaseReleaseBrief(
            method=view.release.method, address=view.release.address_masked,
            tracking_no=view.release.tracking_no, released_at=_t(view.release.released_at),
        ) if view.release else None,
    )


async def _detail(principal: Principal, case_id: int) -> CaseOut:
    return case_out(await cases.get_case(actor=principal, case_id=case_id))


# ---------------------------------------------------------------------------------------------
# Routes


@bp.post("")
@endpoint(body=OpenCaseIn, response=CaseOut, status=201, summary="提交办件（可同时申请帮办）",
          tag="cases")
async def open_case(_request: Request, body: OpenCaseIn, principal: Principal) -> CaseOut:
    case = await cases.open_case(
        actor=principal, hall_code=body.hall_code, item_code=body.item_code,
        bundle_code=body.bundle_code, applicant_user_id=body.applicant_user_id,
        enterprise_id=body.enterprise_id, note=body.note,
    )
    if body.need_help:
        await helpers.request_help(actor=principal, case_id=case.id, note=body.help_note)
    return await _detail(principal, case.id)


@bp.get("")
@endpoint(query=CaseListQuery, response=CaseListOut, summary="我的办件", tag="cases")
async def my_cases(_request: Request, query: CaseListQuery, principal: Principal) -> CaseListOut:
    rows, nxt = await cases.my_cases(actor=principal, status=query.status, cursor=query.cursor,
                                     limit=query.limit)
    return CaseListOut(cases=[summary(c) for c in rows], next_cursor=nxt)


@bp.get("/<case_id:int>")
@endpoint(response=CaseOut, summary="办件详情：进度、时限、需补正材料", tag="cases")
async def get_case(_request: Request, case_id: int, principal: Principal) -> CaseOut:
    return await _detail(principal, path_id(case_id, "办件"))


@bp.post("/<case_id:int>/transitions")
@endpoint(body=TransitionIn, response=CaseOut, summary="办件状态流转", tag="cases")
async def move(_request: Request, case_id: int, body: TransitionIn,
               principal: Principal) -> CaseOut:
    await cases.transition(actor=principal, case_id=path_id(case_id, "办件"),
                           action=Action(body.action), note=body.note,
                           expected_version=body.expected_version)
    return await _detail(principal, case_id)


@bp.post("/<case_id:int>/supplement-requests")
@endpoint(body=SupplementIn, response=CaseOut, status=201, roles=[Role.staff, Role.admin],
          summary="一次性告知补正材料", tag="cases")
async def supplement(_request: Request, case_id: int, body: SupplementIn,
                     principal: Principal) -> CaseOut:
    await cases.request_supplement(
        actor=principal, case_id=path_id(case_id, "办件"),
        items=[(i.material, i.reason) for i in body.items],
        new_requirement_reason=body.new_requirement_reason, note=body.note,
    )
    return await _detail(principal, case_id)


@bp.post("/<case_id:int>/reopen")
@endpoint(body=CaseReopenIn, response=CaseOut, summary="办结后申请重新办理", tag="cases")
async def reopen(_request: Request, case_id: int, body: CaseReopenIn,
                 principal: Principal) -> CaseOut:
    await cases.reopen(actor=principal, case_id=path_id(case_id, "办件"), reason=body.reason)
    return await _detail(principal, case_id)


@bp.post("/<case_id:int>/help")
@endpoint(body=HelpIn, response=HelpOut, summary="申请帮办代办", tag="helpers")
async def ask_help(_request: Request, case_id: int, body: HelpIn,
                   principal: Principal) -> HelpOut:
    got = await helpers.request_help(actor=principal, case_id=path_id(case_id, "办件"),
                                     note=body.note)
    a = got.assignment
    return HelpOut(case_id=got.case.id, help_requested=True, assigned=a is not None,
                   helper=helper_brief(a))


@admin_bp.get("/cases")
@endpoint(query=StaffCaseQuery, response=CaseListOut, roles=[Role.staff, Role.admin],
          summary="办件列表（工作人员）", tag="cases")
async def staff_cases(_request: Request, query: StaffCaseQuery,
                      principal: Principal) -> CaseListOut:
    rows, nxt = await cases.staff_cases(actor=principal, status=query.status,
                                        hall_code=query.hall_code, overdue=query.overdue,
                                        cursor=query.cursor, limit=query.limit)
    return CaseListOut(cases=[summary(c) for c in rows], next_cursor=nxt)


@admin_bp.get("/case-alerts")
@endpoint(query=AlertQuery, response=AlertListOut, roles=[Role.staff, Role.admin],
          summary="即将超期与已超期办件预警", tag="cases")
async def case_alerts(_request: Request, query: AlertQuery,
                      principal: Principal) -> AlertListOut:
    rows, nxt = await cases.list_alerts(actor=principal, level=query.level, cursor=query.cursor,
                                        limit=query.limit)
    return AlertListOut(
        alerts=[AlertOut(id=a.id, case_id=a.case.id, title=a.case.title,
                         hall_code=a.case.hall_code, department=a.case.department,
                         status=a.case.status, level=a.level, due_at=clock.local(a.due_at),
                         created_at=clock.local(a.created_at)) for a in rows],
        next_cursor=nxt,
    )


@admin_bp.get("/case-supplements/repeated")
@endpoint(query=PageQuery, response=RepeatSupplementListOut, roles=[Role.staff, Role.admin],
          summary="再次补正告知（供督查）", tag="cases")
async def repeated_supplements(_request: Request, query: PageQuery,
                               principal: Principal) -> RepeatSupplementListOut:
    rows, nxt = await cases.repeat_supplements(actor=principal, cursor=query.cursor,
                                               limit=query.limit)
    return RepeatSupplementListOut(
        supplements=[RepeatSupplementOut(
            id=s.id, case_id=s.case.id, title=s.case.title, hall_code=s.case.hall_code,
            department=s.case.department, sequence=s.sequence,
            requested_by=s.requested_by_id,  # type: ignore[attr-defined]
            requested_at=clock.local(s.requested_at), items=_issues(s.items),
            new_requirement_reason=s.new_requirement_reason) for s in rows],
        next_cursor=nxt,
    )
