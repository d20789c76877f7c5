"""办事指南 and 精准导办: items, 一件事 bundles, search, guided Q&A; staff maintenance."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sanic import Blueprint, Request

from api.endpoint import endpoint
from api.map import PlaceOut, place_out
from models.catalogue import Bundle, ServiceItem, WindowKind
from models.guide import GuidedFlow
from models.users import Role
from services import guide, guided_flows, halls
from services.auth import Principal
from services.guided_flows import FlowGraph

bp = Blueprint("guide", url_prefix="/api/v1/guide")
admin_bp = Blueprint("admin_guide", url_prefix="/api/v1/admin/guide")

STAFF = [Role.staff, Role.admin]
CODE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
Subject = Literal["person", "enterprise"]
Line = Annotated[str, Field(min_length=1, max_length=500)]
Word = Annotated[str, Field(min_length=1, max_length=32)]


# --- models ---------------------------------------------------------------------------------
class SearchQuery(BaseModel):
    q: str = Field(min_length=1, max_length=100, description="口语、拼音、首字母或错别字均可")
    type: Literal["item", "bundle"] | None = Field(default=None, description="只看事项或一件事")
    limit: int = Field(default=10, ge=1, le=50)


class SearchResultOut(BaseModel):
    type: Literal["item", "bundle"]
    code: str
    name: str
    score: float = Field(description="相关度，仅用于同一次查询内排序")
    subject: str
    theme: str = Field(description="事项主题；一件事为空")
    department: str = Field(description="实施部门；一件事为空")


class SearchOut(BaseModel):
    query: str
    results: list[SearchResultOut]


class FacetOut(BaseModel):
    value: str
    count: int


class FacetsOut(BaseModel):
    themes: list[FacetOut]
    departments: list[FacetOut]
    subjects: list[FacetOut]


class ItemListQuery(BaseModel):
    theme: str | None = Field(default=None, max_length=32, description="主题，如 户籍证件")
    subject: Subject | None = Field(default=None, description="服务对象：个人/法人")
    department: str | None = Field(default=None, max_length=64)
    hall: str | None = Field(default=None, max_length=32, description="可办理大厅编码")
    after: str | None = Field(default=None, max_length=32, description="上一页的 next_after")
    limit: int = Field(default=20, ge=1, le=100)


class ItemBrief(BaseModel):
    code: str
    name: str
    department: str
    theme: str
    subject: str
    online: str
    promised_limit_days: int
    handling_type: str = Field(description="即办件 / 承诺件")


class ItemListOut(BaseModel):
    items: list[ItemBrief]
    next_after: str | None


class MaterialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    form: Literal["原件", "复印件", "原件和复印件", "电子证照"] = "原件"
    copies: StrictInt = Field(default=1, ge=1, le=20)
    source: str = Field(default="", max_length=128, description="来源渠道，如 申请人自备、公安机关")
    required: StrictBool = True
    electronic_ok: StrictBool = Field(default=False, description="可用电子证照代替")
    note: str = Field(default="", max_length=255)
    blank_form_url: str = Field(default="", max_length=255, description="空白表格")
    sample_url: str = Field(default="", max_length=255, description="示例样表")


class MaterialOut(BaseModel):
    name: str
    form: str
    copies: int
    source: str
    required: bool
    electronic_ok: bool
    note: str
    blank_form_url: str
    sample_url: str


class FaqEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str = Field(min_length=1, max_length=200)
    a: str = Field(min_length=1, max_length=2000)


class BundleBrief(BaseModel):
    code: str
    name: str
    subject: str
    item_count: int


class ItemGuideOut(BaseModel):
    code: str
    name: str
    department: str
    window_kind: str
    window: str = Field(description="受理窗口")
    kind: str = Field(description="事项类型，如 行政许可、行政确认")
    subject: str = Field(description="服务对象：person 个人 / enterprise 法人")
    theme: str
    legal_basis: str
    conditions: list[str]
    refusal_cases: list[str]
    materials: list[MaterialOut]
    steps: list[str]
    time_limit_unit: Literal["working_days"] = "working_days"
    legal_limit_days: int = Field(description="法定办结时限（工作日）")
    promised_limit_days: int = Field(description="承诺办结时限（工作日），0 为即办")
    handling_type: str = Field(description="即办件 / 承诺件")
    visits: int = Field(description="到现场次数")
    online: str = Field(description="网办深度：full 全程网办 / pre 网上预审 / offline 线下办理")
    fee: str
    fee_basis: str
    halls: list[PlaceOut] = Field(description="可办理大厅，含开放时间与当前是否开放")
    consult_phone: str
    complaint_phone: str
    faq: list[FaqEntry]
    keywords: list[str]
    bundles: list[BundleBrief] = Field(description="包含本事项的一件事")
    updated_at: datetime


class MergedMaterialOut(BaseModel):
    name: str
    forms: list[str]
    copies: int
    required: bool
    electronic_ok: bool
    source: str
    notes: list[str]
    blank_form_url: str
    sample_url: str
    needed_by: list[str] = Field(description="需要该材料的事项编码")
    needed_by_names: list[str]


class BundleOut(BaseModel):
    code: str
    name: str
    subject: str
    description: str
    items: list[ItemBrief]
    materials: list[MergedMaterialOut] = Field(description="合并去重后的一套材料")
    materials_if_separate: int = Field(description="分别办理时各事项材料条目合计")


class BundleListQuery(BaseModel):
    subject: Subject | None = None


class BundleListOut(BaseModel):
    bundles: list[BundleBrief]


class FlowBrief(BaseModel):
    code: str
    title: str
    theme: str
    revision: int


class FlowListOut(BaseModel):
    flows: list[FlowBrief]


class FlowOut(FlowBrief):
    graph: FlowGraph
    updated_at: datetime


class WalkIn(BaseModel):
    # Strict: JSON false is not answer 0.
    answers: list[StrictInt] = Field(default_factory=list, max_length=50,
                               description="至今每一题所选答案的序号（从 0 开始）")


class QuestionOut(BaseModel):
    id: str
    text: str
    options: list[str]


class DestinationOut(BaseModel):
    type: Literal["item", "bundle"]
    code: str
    name: str


class AskedOut(BaseModel):
    question: str
    answer: str


class StepOut(BaseModel):
    done: bool
    asked: list[AskedOut]
    question: QuestionOut | None
    destination: DestinationOut | None


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=2, max_length=128)
    department: str = Field(min_length=2, max_length=64)
    kind: str = Field(min_length=2, max_length=32, description="行政许可 / 行政确认 / 公共服务 …")
    subject: Subject
    theme: str = Field(min_length=2, max_length=32)
    legal_basis: str = Field(default="", max_length=4000)
    conditions: list[Line] = Field(default_factory=list, max_length=30)
    refusal_cases: list[Line] = Field(default_factory=list, max_length=30)
    materials: list[MaterialIn] = Field(default_factory=list, max_length=50)
    steps: list[Line] = Field(default_factory=list, max_length=20)
    legal_limit_days: StrictInt = Field(default=0, ge=0, le=365, description="法定时限（工作日）")
    promised_limit_days: StrictInt = Field(default=0, ge=0, le=365,
                                           description="承诺时限（工作日）")
    visits: StrictInt = Field(default=1, ge=0, le=10)
    online: Literal["full", "pre", "offline"] = "offline"
    fee: str = Field(default="不收费", max_length=128)
    fee_basis: str = Field(default="", max_length=255)
    window_kind: WindowKind
    hall_codes: list[Word] = Field(default_factory=list, max_length=200)
    consult_phone: str = Field(default="", max_length=32)
    complaint_phone: str = Field(default="12345", max_length=32)
    keywords: list[Word] = Field(default_factory=list, max_length=30)
    faq: list[FaqEntry] = Field(default_factory=list, max_length=30)


class ItemCreateIn(ItemIn):
    code: str = Field(pattern=CODE, description="事项编码")


class DeactivatedOut(BaseModel):
    code: str
    active: bool


class BundleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=2, max_length=128)
    subject: Subject
    item_codes: list[Word] = Field(min_length=1, max_length=30)
    description: str = Field(default="", max_length=2000)


class FlowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=2, max_length=64)
    theme: str = Field(min_length=2, max_length=32)
    graph: FlowGraph


# --- shaping --------------------------------------------------------------------------------
def handling_type(item: ServiceItem) -> str:
    return "即办件" if item.promised_limit_days == 0 else "承诺件"


def item_brief(item: ServiceItem) -> ItemBrief:
    return ItemBrief(code=item.code, name=item.name, department=item.department,
                     theme=item.theme, subject=item.subject, online=item.online,
                     promised_limit_days=item.promised_limit_days,
                     handling_type=handling_type(item))


def bundle_brief(b: Bundle) -> BundleBrief:
    return BundleBrief(code=b.code, name=b.name, subject=b.subject,
                       item_count=len(b.item_codes))


def _strings(raw: object) -> list[str]:
    return [str(x) for x in raw] if isinstance(raw, list) else []


def material_out(m: dict[str, object]) -> MaterialOut:
    return MaterialOut(
        name=str(m.get("name", "")), form=str(m.get("form", "") or "原件"),
        copies=int(str(m.get("copies", 1) or 1)), source=str(m.get("source", "") or ""),
        required=bool(m.get("required", True)), electronic_ok=guide.electronic_ok(m),
        note=str(m.get("note", "") or ""), blank_form_url=str(m.get("blank_form_url", "") or ""),
        sample_url=str(m.get("sample_url", "") or ""))


async def item_guide_out(item: ServiceItem) -> ItemGuideOut:
    places = await halls.halls_for_item(item)
    bundles = await guide.bundles_with(item.code)
    return ItemGuideOut(
        code=item.code, name=item.name, department=item.department,
        window_kind=str(item.window_kind),
        window=guide.WINDOW_LABELS.get(WindowKind(item.window_kind), str(item.window_kind)),
        kind=item.kind, subject=item.subject, theme=item.theme, legal_basis=item.legal_basis,
        conditions=_strings(item.conditions), refusal_cases=_strings(item.refusal_cases),
        materials=[material_out(m) for m in item.materials if isinstance(m, dict)],
        steps=_strings(item.steps), legal_limit_days=item.legal_limit_days,
        promised_limit_days=item.promised_limit_days, handling_type=handling_type(item),
        visits=item.visits, online=item.online, fee=item.fee, fee_basis=item.fee_basis,
        halls=[place_out(p) for p in places], consult_phone=item.consult_phone,
        complaint_phone=item.complaint_phone,
        faq=[FaqEntry(q=str(f.get("q", "")) or "-", a=str(f.get("a", "")) or "-")
             for f in item.faq if isinstance(f, dict)],
        keywords=_strings(item.keywords), bundles=[bundle_brief(b) for b in bundles],
        updated_at=item.updated_at)


def flow_out(flow: GuidedFlow) -> FlowOut:
    return FlowOut(code=flow.code, title=flow.title, theme=flow.theme, revision=flow.revision,
                   graph=guided_flows.graph_of(flow), updated_at=flow.updated_at)


# --- resident routes (public: the guide is public information) ------------------------------
@bp.get("/search")
@endpoint(query=SearchQuery, response=SearchOut, public=True, tag="guide",
          summary="精准导办搜索：事项与一件事，支持口语、拼音、首字母与错别字")
async def search(_request: Request, query: SearchQuery) -> SearchOut:
    found = await guide.search(q=query.q, type=query.type, limit=query.limit)
    return SearchOut(query=query.q, results=[
        SearchResultOut(
            type="item" if isinstance(r.row, ServiceItem) else "bundle", code=r.hit.code,
            name=r.hit.name, score=r.hit.score, subject=r.row.subject,
            theme=r.row.theme if isinstance(r.row, ServiceItem) else "",
            department=r.row.department if isinstance(r.row, ServiceItem) else "",
        ) for r in found])


@bp.get("/facets")
@endpoint(response=FacetsOut, public=True, tag="guide", summary="按主题、部门、服务对象浏览的分面")
async def facets(_request: Request) -> FacetsOut:
    f = await guide.facets()
    return FacetsOut(themes=[FacetOut(value=v, count=c) for v, c in f.themes],
                     departments=[FacetOut(value=v, count=c) for v, c in f.departments],
                     subjects=[FacetOut(value=v, count=c) for v, c in f.subjects])


@bp.get("/items")
@endpoint(query=ItemListQuery, response=ItemListOut, public=True, tag="guide",
          summary="事项列表：按主题、服务对象、部门、大厅筛选")
async def list_items(_request: Request, query: ItemListQuery) -> ItemListOut:
    rows, nxt = await guide.list_items(theme=query.theme, subject=query.subject,
                                       department=query.department, hall=query.hall,
                                       after=query.after, limit=query.limit)
    return ItemListOut(items=[item_brief(r) for r in rows], next_after=nxt)


@bp.get("/items/<code:str>")
@endpoint(response=ItemGuideOut, public=True, errors=(404,), tag="guide",
          summary="办事指南：一个事项的全部要素")
async def item_detail(_request: Request, code: str) -> ItemGuideOut:
    return await item_guide_out(await guide.get_item(code))


@bp.get("/bundles")
@endpoint(query=BundleListQuery, response=BundleListOut, public=True, tag="guide",
          summary="一件事列表")
async def list_bundles(_request: Request, query: BundleListQuery) -> BundleListOut:
    return BundleListOut(bundles=[bundle_brief(b)
                                  for b in await guide.list_bundles(subject=query.subject)])


@bp.get("/bundles/<code:str>")
@endpoint(response=BundleOut, public=True, errors=(404,), tag="guide",
          summary="一件事详情：所含事项与合并去重后的一套材料")
async def bundle_detail(_request: Request, code: str) -> BundleOut:
    d = await guide.bundle_detail(code)
    return BundleOut(
        code=d.bundle.code, name=d.bundle.name, subject=d.bundle.subject,
        description=d.bundle.description, items=[item_brief(i) for i in d.items],
        materials=[MergedMaterialOut(
            name=m.name, forms=m.forms, copies=m.copies, required=m.required,
            electronic_ok=m.electronic_ok, source=m.source, notes=m.notes,
            blank_form_url=m.blank_form_url, sample_url=m.sample_url,
            needed_by=[c for c, _ in m.needed_by], needed_by_names=[n for _, n in m.needed_by],
        ) for m in d.materials],
        materials_if_separate=d.asked_total)


@bp.get("/flows")
@endpoint(response=FlowListOut, public=True, tag="guide", summary="导办流程列表")
async def list_flows(_request: Request) -> FlowListOut:
    return FlowListOut(flows=[FlowBrief(code=f.code, title=f.title, theme=f.theme,
                                        revision=f.revision)
                              for f in await guided_flows.list_flows()])


@bp.get("/flows/<code:str>")
@endpoint(response=FlowOut, public=True, errors=(404,), tag="guide",
          summary="导办流程全图（小程序可在本地逐题展示）")
async def get_flow(_request: Request, code: str) -> FlowOut:
    return flow_out(await guided_flows.get_flow(code))


@bp.post("/flows/<code:str>/walk")
@endpoint(body=WalkIn, response=StepOut, public=True, errors=(404,), tag="guide",
          summary="导办问答：提交已选答案，返回下一题或应办事项")
async def walk(_request: Request, code: str, body: WalkIn) -> StepOut:
    step = await guided_flows.walk(code=code, answers=body.answers)
    return StepOut(
        done=step.destination is not None,
        asked=[AskedOut(question=q, answer=a) for q, a in step.asked],
        question=QuestionOut(id=step.question.id, text=step.question.text,
                             options=step.question.options) if step.question else None,
        destination=DestinationOut(type=step.destination.type, code=step.destination.code,
                                   name=step.destination.name) if step.destination else None,
    )


# --- staff routes ---------------------------------------------------------------------------
@admin_bp.post("/items")
@endpoint(body=ItemCreateIn, response=ItemGuideOut, status=201, roles=STAFF, tag="admin",
          summary="新增事项（办事指南）")
async def create_item(_request: Request, body: ItemCreateIn, principal: Principal) -> ItemGuideOut:
    values = body.model_dump(mode="json", exclude={"code"})
    item = await guide.save_item(actor=principal, code=body.code, values=values, create=True)
    return await item_guide_out(item)


@admin_bp.put("/items/<code:str>")
@endpoint(body=ItemIn, response=ItemGuideOut, roles=STAFF, tag="admin",
          summary="整体更新事项的办事指南")
async def replace_item(_request: Request, code: str, body: ItemIn,
                       principal: Principal) -> ItemGuideOut:
    item = await guide.save_item(actor=principal, code=code, values=body.model_dump(mode="json"),
                                 create=False)
    return await item_guide_out(item)


@admin_bp.delete("/items/<code:str>")
@endpoint(response=DeactivatedOut, roles=STAFF, tag="admin", summary="停用事项")
async def deactivate_item(_request: Request, code: str, principal: Principal) -> DeactivatedOut:
    await guide.deactivate_item(actor=principal, code=code)
    return DeactivatedOut(code=code, active=False)


@admin_bp.put("/bundles/<code:str>")
@endpoint(body=BundleIn, response=BundleBrief, roles=STAFF, tag="admin",
          summary="新增或整体更新一件事")
async def save_bundle(_request: Request, code: str, body: BundleIn,
                      principal: Principal) -> BundleBrief:
    b = await guide.save_bundle(actor=principal, code=code, name=body.name, subject=body.subject,
                                item_codes=body.item_codes, description=body.description)
    return bundle_brief(b)


@admin_bp.put("/flows/<code:str>")
@endpoint(body=FlowIn, response=FlowOut, roles=STAFF, tag="admin",
          summary="整体替换导办流程（校验：答案都指向问题或现有事项/一件事，无循环）")
async def replace_flow(_request: Request, code: str, body: FlowIn,
                       principal: Principal) -> FlowOut:
    flow = await guided_flows.replace_flow(actor=principal, code=code, title=body.title,
                                           theme=body.theme, graph=body.graph)
    return flow_out(flow)
