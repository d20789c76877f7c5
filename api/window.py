"""综窗 at the window: walk-in intake, 首问负责, 容缺/承诺 acceptance, 不予受理, printable notices.

Staff routes are scoped in the services (a clerk of another hall gets 404). The case view and
the notices' PDFs are readable by anyone who may see the case, so the applicant gets the same
list and the same paper in the mini program."""

from __future__ import annotations

import asyncio
from datetime import date, datetime

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw
from sanic_ext.extensions.openapi import openapi

from api.cases import MAX_ID
from api.endpoint import endpoint
from api.schemas import Day
from models.cases import Case, CaseStatus
from models.users import Role
from services import cases, clock
from services.auth import Principal
from services.window import acceptance, intake, notices, ownership, refusal, release
from services.window.rules import rules_for

bp = Blueprint("window", url_prefix="/api/v1/window")

_STAFF = [Role.staff, Role.admin]
_PDF = {"application/pdf": {"type": "string", "format": "binary"}}


class WindowIntakeIn(BaseModel):
    name: str | None = Field(default=None, min_length=2, max_length=32,
                             description="姓名（读卡或录入；凭已签到预约受理时可省略）")
    id_number: str | None = Field(default=None, min_length=18, max_length=18,
                                  description="身份证号")
    item_code: str | None = Field(default=None, max_length=32)
    bundle_code: str | None = Field(default=None, max_length=32)
    appointment_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                       description="本大厅已签到的预约：预填申请人与事项")
    note: str = Field(default="", max_length=500)


class WindowToleratedIn(BaseModel):
    material: str = Field(min_length=1, max_length=128)
    reason: str = Field(default="", max_length=500)


class WindowAcceptIn(BaseModel):
    tolerated: list[WindowToleratedIn] = Field(default_factory=list, max_length=30,
                                               description="容缺受理：暂缺的非关键材料")
    supply_by: Day | None = Field(default=None, description="申请人承诺补齐的日期")
    commitment_text: str | None = Field(default=None, max_length=2000,
                                        description="告知承诺制：申请人签署的承诺内容")
    received: list[str] = Field(default_factory=list, max_length=30,
                                description="一次性告知所列、申请人已当场补交的材料")
    note: str = Field(default="", max_length=500)
    expected_version: int | None = Field(default=None, ge=0)


class WindowRefuseIn(BaseModel):
    ground: str = Field(min_length=2, max_length=500, description="从该事项的不予受理情形中选择")
    note: str = Field(default="", max_length=500)
    expected_version: int | None = Field(default=None, ge=0)


class WindowHandoverIn(BaseModel):
    to_user_id: int = Field(ge=1, le=MAX_ID)
    note: str = Field(min_length=2, max_length=500, description="移交原因")


class WindowCheckIn(BaseModel):
    truthful: bool = Field(description="核查结果：承诺属实为 true")
    finding: str = Field(min_length=2, max_length=500)


class WindowPageQuery(BaseModel):
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID)
    limit: int = Field(default=20, ge=1, le=100)


class WindowOwner(BaseModel):
    staff_id: int
    since: datetime
    until: datetime | None
    handed_over_by: int | None
    note: str


class WindowTolerated(BaseModel):
    id: int
    material: str
    reason: str
    supply_by: date
    supplied_at: datetime | None
    overdue: bool


class WindowCommitment(BaseModel):
    id: int
    materials: list[str]
    text: str
    signer: str
    signed_at: datetime
    check_due: date
    check_status: str
    finding: str


class WindowRefusal(BaseModel):
    ground: str
    legal_basis: str
    note: str
    refused_at: datetime
    notice_pdf: str


class WindowNotice(BaseModel):
    sequence: int
    requested_at: datetime
    resolved_at: datetime | None
    items: list[dict[str, str]]
    notice_pdf: str


class WindowRules(BaseModel):
    materials: list[str]
    tolerable: list[str] = Field(description="可容缺（后补）的非关键材料")
    promisable: list[str] = Field(description="可以告知承诺代替的材料")
    refusal_grounds: list[str]
    legal_basis: str


class WindowCaseOut(BaseModel):
    id: int
    title: str
    hall_code: str
    status: CaseStatus
    status_label: str
    version: int
    accepted_at: datetime | None
    due_at: datetime | None
    walk_in: bool
    owner: WindowOwner | None = Field(description="首问责任人（仅工作人员可见）")
    owner_history: list[WindowOwner]
    notices: list[WindowNotice] = Field(description="一次性告知单（受理前后）")
    tolerated: list[WindowTolerated]
    commitment: WindowCommitment | None
    refusal: WindowRefusal | None
    release_blockers: list[str]
    rules: WindowRules


class WindowCaseBrief(BaseModel):
    id: int
    title: str
    hall_code: str
    department: str
    status: CaseStatus
    created_at: datetime


class WindowCaseListOut(BaseModel):
    cases: list[WindowCaseBrief]
    next_cursor: int | None


class WindowLoad(BaseModel):
    staff_id: int
    open_cases: int


class WindowLoadOut(BaseModel):
    owners: list[WindowLoad]


class WindowCheckItem(BaseModel):
    id: int
    case_id: int
    title: str
    hall_code: str
    check_due: date
    materials: list[str]


class WindowCheckListOut(BaseModel):
    checks: list[WindowCheckItem]
    next_cursor: int | None


def _t(dt: datetime | None) -> datetime | None:
    return clock.local(dt) if dt is not None else None


def _owner(o: object) -> WindowOwner:
    return WindowOwner(staff_id=o.staff_id, since=clock.local(o.since),  # type: ignore[attr-defined]
                       until=_t(o.until),  # type: ignore[attr-defined]
                       handed_over_by=o.handed_over_by_id,  # type: ignore[attr-defined]
                       note=o.note)  # type: ignore[attr-defined]


async def _view(principal: Principal, case_id: int) -> WindowCaseOut:
    case, acc = await cases.case_and_access(principal, case_id)
    staff = cases.ActorKind.staff in acc.kinds
    history = await ownership.history(case.id) if staff else []
    current = next((o for o in history if o.until is None), None)
    sups = await cases.supplements_of(case.id)
    today = clock.today()
    com = await acceptance.commitment_of(case.id)
    ref = await refusal.refusal_of(case.id)
    r = await rules_for(case)
    base = f"/api/v1/window/cases/{case.id}"
    return WindowCaseOut(
        id=case.id, title=case.title, hall_code=case.hall_code, status=case.status,
        status_label=cases.STATUS_LABELS[case.status], version=case.version,
        accepted_at=_t(case.accepted_at), due_at=_t(case.due_at),
        walk_in=await intake.opened_at_window(case.id),
        owner=_owner(current) if current else None,
        owner_history=[_owner(o) for o in history],
        notices=[WindowNotice(sequence=s.sequence, requested_at=clock.local(s.requested_at),
                              resolved_at=_t(s.resolved_at),
                              items=[{"material": str(i.get("material", "")),
                                      "reason": str(i.get("reason", ""))}
                                     for i in s.items.get("items", [])],
                              notice_pdf=f"{base}/notices/{s.sequence}/pdf") for s in sups],
        tolerated=[WindowTolerated(id=t.id, material=t.material, reason=t.reason,
                                   supply_by=t.supply_by, supplied_at=_t(t.supplied_at),
                                   overdue=t.supplied_at is None and t.supply_by < today)
                   for t in await acceptance.tolerated_of(case.id)],
        commitment=WindowCommitment(
            id=com.id, materials=[str(m) for m in com.materials.get("materials", [])],
            text=com.text, signer=com.signer_masked, signed_at=clock.local(com.signed_at),
            check_due=com.check_due, check_status=str(com.check_status),
            finding=com.finding) if com else None,
        refusal=WindowRefusal(ground=ref.ground, legal_basis=ref.legal_basis, note=ref.note,
                              refused_at=clock.local(ref.refused_at),
                              notice_pdf=f"{base}/refusal/pdf") if ref else None,
        release_blockers=await _blockers(case),
        rules=WindowRules(materials=r.materials, tolerable=sorted(r.tolerable),
                          promisable=sorted(r.promisable), refusal_grounds=r.refusal_grounds,
                          legal_basis=r.legal_basis),
    )


async def _blockers(case: Case) -> list[str]:
    return await release.result_release_blockers(case)


def _pdf(data: bytes, name: str) -> HTTPResponse:
    return raw(data, content_type="application/pdf",
               headers={"Content-Disposition": f'inline; filename="{name}"',
                        "Cache-Control": "no-store"})


@bp.post("/cases")
@endpoint(body=WindowIntakeIn, response=WindowCaseOut, status=201, roles=_STAFF,
          summary="综窗现场受理申请（读卡/录入身份，或凭已签到预约）", tag="window")
async def walk_in(_request: Request, body: WindowIntakeIn, principal: Principal) -> WindowCaseOut:
    case = await intake.walk_in(actor=principal, name=body.name, id_number=body.id_number,
                                item_code=body.item_code, bundle_code=body.bundle_code,
                                appointment_id=body.appointment_id, note=body.note)
    return await _view(principal, case.id)


@bp.get("/cases/<case_id:int>")
@endpoint(response=WindowCaseOut,
          summary="综窗视图：首问责任人、一次性告知、容缺、承诺、不予受理", tag="window")
async def get_window_case(_request: Request, case_id: int, principal: Principal) -> WindowCaseOut:
    return await _view(principal, case_id)


@bp.post("/cases/<case_id:int>/accept")
@endpoint(body=WindowAcceptIn, response=WindowCaseOut, roles=_STAFF,
          summary="受理（可容缺受理、告知承诺制受理）", tag="window")
async def accept(_request: Request, case_id: int, body: WindowAcceptIn,
                 principal: Principal) -> WindowCaseOut:
    await acceptance.accept(actor=principal, case_id=case_id,
                            tolerated=[(t.material, t.reason) for t in body.tolerated],
                            supply_by=body.supply_by, commitment_text=body.commitment_text,
                            received=body.received, note=body.note,
                            expected_version=body.expected_version)
    return await _view(principal, case_id)


@bp.post("/cases/<case_id:int>/tolerated/<material_id:int>/supplied")
@endpoint(response=WindowCaseOut, roles=_STAFF, summary="登记容缺材料已补齐", tag="window")
async def supplied(_request: Request, case_id: int, material_id: int,
                   principal: Principal) -> WindowCaseOut:
    await acceptance.mark_supplied(actor=principal, case_id=case_id, material_id=material_id)
    return await _view(principal, case_id)


@bp.post("/cases/<case_id:int>/refuse")
@endpoint(body=WindowRefuseIn, response=WindowCaseOut, roles=_STAFF,
          summary="不予受理（理由取自事项的不予受理情形）", tag="window")
async def refuse(_request: Request, case_id: int, body: WindowRefuseIn,
                 principal: Principal) -> WindowCaseOut:
    await refusal.refuse(actor=principal, case_id=case_id, ground=body.ground, note=body.note,
                         expected_version=body.expected_version)
    return await _view(principal, case_id)


@bp.get("/cases/<case_id:int>/notices/<sequence:int>/pdf")
@openapi.response(200, _PDF, "一次性告知单 PDF")
@endpoint(errors=(503,), summary="打印一次性告知单", tag="window")
async def supplement_pdf(_request: Request, case_id: int, sequence: int,
                         principal: Principal) -> HTTPResponse:
    data = await notices.supplement_notice(actor=principal, case_id=case_id, sequence=sequence)
    # Drawing and subsetting the font is CPU work: off the event loop.
    return _pdf(await asyncio.to_thread(notices.render, data), f"gaozhi-{case_id}-{sequence}.pdf")


@bp.get("/cases/<case_id:int>/refusal/pdf")
@openapi.response(200, _PDF, "不予受理告知书 PDF")
@endpoint(errors=(503,), summary="打印不予受理告知书", tag="window")
async def refusal_pdf(_request: Request, case_id: int, principal: Principal) -> HTTPResponse:
    data = await notices.refusal_notice(actor=principal, case_id=case_id)
    return _pdf(await asyncio.to_thread(notices.render, data), f"buyu-{case_id}.pdf")


@bp.post("/cases/<case_id:int>/handover")
@endpoint(body=WindowHandoverIn, response=WindowCaseOut, roles=_STAFF,
          summary="首问负责：移交给其他工作人员（留痕）", tag="window")
async def handover(_request: Request, case_id: int, body: WindowHandoverIn,
                   principal: Principal) -> WindowCaseOut:
    await ownership.hand_over(actor=principal, case_id=case_id, to_user_id=body.to_user_id,
                              note=body.note)
    return await _view(principal, case_id)


@bp.get("/unowned")
@endpoint(query=WindowPageQuery, response=WindowCaseListOut, roles=_STAFF,
          summary="尚无首问责任人的申请（本人数据范围内）", tag="window")
async def unowned(_request: Request, query: WindowPageQuery,
                  principal: Principal) -> WindowCaseListOut:
    rows, nxt = await ownership.unowned(actor=principal, cursor=query.cursor, limit=query.limit)
    return WindowCaseListOut(
        cases=[WindowCaseBrief(id=c.id, title=c.title, hall_code=c.hall_code,
                               department=c.department, status=c.status,
                               created_at=clock.local(c.created_at)) for c in rows],
        next_cursor=nxt)


@bp.get("/owner-load")
@endpoint(response=WindowLoadOut, roles=_STAFF,
          summary="首问责任人在办数量（本人数据范围内）", tag="window")
async def owner_load(_request: Request, principal: Principal) -> WindowLoadOut:
    rows = await ownership.load(actor=principal)
    return WindowLoadOut(owners=[WindowLoad(staff_id=r.staff_id, open_cases=r.open_cases)
                                 for r in rows])


@bp.get("/commitment-checks")
@endpoint(query=WindowPageQuery, response=WindowCheckListOut, roles=_STAFF,
          summary="告知承诺待核查任务", tag="window")
async def commitment_checks(_request: Request, query: WindowPageQuery,
                            principal: Principal) -> WindowCheckListOut:
    rows, nxt = await acceptance.pending_checks(actor=principal, cursor=query.cursor,
                                                limit=query.limit)
    return WindowCheckListOut(
        checks=[WindowCheckItem(id=r.id, case_id=r.case.id, title=r.case.title,
                                hall_code=r.case.hall_code, check_due=r.check_due,
                                materials=[str(m) for m in r.materials.get("materials", [])])
                for r in rows],
        next_cursor=nxt)


@bp.post("/commitments/<commitment_id:int>/check")
@endpoint(body=WindowCheckIn, response=WindowCommitment, roles=_STAFF,
          summary="告知承诺核查（不实的记入办件）", tag="window")
async def check(_request: Request, commitment_id: int, body: WindowCheckIn,
                principal: Principal) -> WindowCommitment:
    com = await acceptance.check_commitment(actor=principal, commitment_id=commitment_id,
                                            truthful=body.truthful, finding=body.finding)
    return WindowCommitment(
        id=com.id, materials=[str(m) for m in com.materials.get("materials", [])],
        text=com.text, signer=com.signer_masked, signed_at=clock.local(com.signed_at),
        check_due=com.check_due, check_status=str(com.check_status), finding=com.finding)
