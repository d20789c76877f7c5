"""导办: data-driven decision flows that ask a few questions and land on an item or bundle.

A flow is a graph stored in the database (``models.guide.GuidedFlow``), seeded from
``seed/guided_flows.json``. Staff replace a whole flow at once; a flow is accepted only if every
answer leads to a question of the same flow or to an active item/bundle, every question is
reachable from the start, and no path loops. Walking is stateless: the client sends the indices
of the answers chosen so far and gets the next question or the destination, so a flow edited
mid-walk can't leave a server-side session dangling.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tortoise.transactions import in_transaction

from models.catalogue import Bundle, ServiceItem
from models.guide import GuidedFlow
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found

SEED_FILE = Path(__file__).resolve().parent.parent / "seed" / "guided_flows.json"
MAX_QUESTIONS = 50
MAX_OPTIONS = 12
QUESTION_ID = r"^[a-z][a-z0-9_]{0,31}$"
FLOW_CODE = r"[a-z0-9][a-z0-9_-]{0,31}"


class FlowOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=40, description="答案文字")
    next: str | None = Field(default=None, pattern=QUESTION_ID, description="下一个问题")
    item: str | None = Field(default=None, min_length=1, max_length=32, description="落到事项")
    bundle: str | None = Field(default=None, min_length=1, max_length=32,
                               description="落到一件事")

    @model_validator(mode="after")
    def _one_target(self) -> FlowOption:
        if sum(x is not None for x in (self.next, self.item, self.bundle)) != 1:
            raise ValueError("每个答案必须且只能指向一个问题、事项或一件事")
        return self


class FlowQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=2, max_length=80)
    options: list[FlowOption] = Field(min_length=2, max_length=MAX_OPTIONS)


class FlowGraph(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=QUESTION_ID)
    questions: dict[Annotated[str, Field(pattern=QUESTION_ID)], FlowQuestion] = Field(
        min_length=1, max_length=MAX_QUESTIONS)


def _invalid(fields: dict[str, str]) -> AppError:
    return AppError(ErrorCode.validation_failed, "导办流程不合法", fields=fields)


async def check_graph(graph: FlowGraph) -> None:
    """Refuse a graph that could strand a resident: a dangling answer, an unknown or retired
    item/bundle, an unreachable question or a loop."""
    errors: dict[str, str] = {}
    qs = graph.questions
    for qid in qs:
        if not _is_qid(qid):
            errors[f"questions.{qid}"] = "问题编号只能用小写字母、数字和下划线"
    if graph.start not in qs:
        errors["start"] = "起始问题不存在"
    item_refs: dict[str, str] = {}
    bundle_refs: dict[str, str] = {}
    for qid, q in qs.items():
        for i, opt in enumerate(q.options):
            where = f"questions.{qid}.options.{i}"
            if opt.next is not None and opt.next not in qs:
                errors[where] = f"指向不存在的问题 {opt.next}"
            if opt.item is not None:
                item_refs.setdefault(opt.item, where)
            if opt.bundle is not None:
                bundle_refs.setdefault(opt.bundle, where)
        labels = [o.label for o in q.options]
        if len(set(labels)) != len(labels):
            errors[f"questions.{qid}.options"] = "同一问题的答案不能重复"
    if item_refs:
        known = {r["code"] for r in await ServiceItem.filter(
            code__in=list(item_refs), is_active=True).values("code")}
        for code, where in item_refs.items():
            if code not in known:
                errors.setdefault(where, f"事项 {code} 不存在或已停用")
    if bundle_refs:
        known = {r["code"] for r in await Bundle.filter(
            code__in=list(bundle_refs), is_active=True).values("code")}
        for code, where in bundle_refs.items():
            if code not in known:
                errors.setdefault(where, f"一件事 {code} 不存在或已停用")
    if not errors:
        cycle = _find_cycle(graph)
        if cycle:
            errors["questions"] = "流程存在循环：" + " → ".join(cycle)
        else:
            unreachable = sorted(set(qs) - _reachable(graph))
            if unreachable:
                errors["questions"] = "从起始问题到不了：" + "、".join(unreachable[:5])
    if errors:
        raise _invalid(errors)


def _is_qid(qid: str) -> bool:
    return re.fullmatch(QUESTION_ID, qid) is not None


def _reachable(graph: FlowGraph) -> set[str]:
    seen: set[str] = set()
    stack = [graph.start]
    while stack:
        qid = stack.pop()
        if qid in seen:
            continue
        seen.add(qid)
        stack.extend(o.next for o in graph.questions[qid].options if o.next is not None)
    return seen


def _find_cycle(graph: FlowGraph) -> list[str]:
    """A loop as a path of question ids, or [] (iterative DFS, three colours)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph.questions, white)
    for root in graph.questions:
        if colour[root] != white:
            continue
        path = [root]
        stack = [iter([o.next for o in graph.questions[root].options if o.next])]
        colour[root] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
                continue
            if colour[nxt] == grey:
                return [*path[path.index(nxt):], nxt]
            if colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter([o.next for o in graph.questions[nxt].options if o.next]))
    return []


# --- reading and walking --------------------------------------------------------------------
async def list_flows() -> list[GuidedFlow]:
    return list(await GuidedFlow.all().order_by("code"))


async def get_flow(code: str) -> GuidedFlow:
    flow = await GuidedFlow.get_or_none(code=code) if 0 < len(code) <= 32 else None
    if flow is None:
        raise not_found("导办流程")
    return flow


def graph_of(flow: GuidedFlow) -> FlowGraph:
    return FlowGraph.model_validate(flow.graph)


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    options: list[str]


@dataclass(frozen=True)
class Destination:
    type: Literal["item", "bundle"]
    code: str
    name: str


@dataclass(frozen=True)
class Step:
    asked: list[tuple[str, str]]  # (question text, chosen label) so far
    question: Question | None
    destination: Destination | None


async def walk(*, code: str, answers: Sequence[int]) -> Step:
    """Follow ``answers`` (option indices) from the start; the next question or the end."""
    flow = await get_flow(code)
    graph = graph_of(flow)
    qid = graph.start
    asked: list[tuple[str, str]] = []
    for n, choice in enumerate(answers):
        q = graph.questions[qid]
        if not 0 <= choice < len(q.options):
            raise AppError(ErrorCode.validation_failed, "所选答案不存在",
                           fields={f"answers.{n}": f"应在 0 到 {len(q.options) - 1} 之间"})
        opt = q.options[choice]
        asked.append((q.text, opt.label))
        if opt.next is not None:
            qid = opt.next
            continue
        if n != len(answers) - 1:
            raise AppError(ErrorCode.validation_failed, "流程已结束，答案过多",
                           fields={f"answers.{n + 1}": "流程在上一题已结束"})
        return Step(asked=asked, question=None, destination=await _destination(opt))
    q = graph.questions[qid]
    return Step(asked=asked, question=Question(id=qid, text=q.text,
                                               options=[o.label for o in q.options]),
                destination=None)


async def _destination(opt: FlowOption) -> Destination:
    if opt.item is not None:
        item = await ServiceItem.get_or_none(code=opt.item, is_active=True)
        if item is None:  # retired after the flow was saved
            raise not_found("事项")
        return Destination(type="item", code=item.code, name=item.name)
    assert opt.bundle is not None
    bundle = await Bundle.get_or_none(code=opt.bundle, is_active=True)
    if bundle is None:
        raise not_found("一件事")
    return Destination(type="bundle", code=bundle.code, name=bundle.name)


# --- staff edits and seed -------------------------------------------------------------------
async def replace_flow(
    *, actor: Principal, code: str, title: str, theme: str, graph: FlowGraph
) -> GuidedFlow:
    if not actor.is_staff:
        raise forbidden()
    if not re.fullmatch(FLOW_CODE, code):
        raise _invalid({"code": "流程编码应为 1–32 位小写字母、数字、连字符或下划线"})
    await check_graph(graph)
    stored = graph.model_dump(mode="json", exclude_none=True)
    async with in_transaction():
        flow = await GuidedFlow.select_for_update().get_or_none(code=code)
        if flow is None:
            return await GuidedFlow.create(code=code, title=title, theme=theme, graph=stored,
                                           updated_by_id=actor.user_id)
        flow.title, flow.theme, flow.graph = title, theme, stored
        flow.revision += 1
        flow.updated_by_id = actor.user_id
        await flow.save()
        return flow


def load_seed_flows(path: Path = SEED_FILE) -> list[dict[str, Any]]:
    raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    flows: list[dict[str, Any]] = raw["flows"]
    return flows


async def seed_flows(_data: dict[str, Any]) -> None:
    """Create the seed flows that don't exist yet; a flow staff already edited is theirs."""
    existing = set(await GuidedFlow.all().values_list("code", flat=True))
    for f in load_seed_flows():
        if f["code"] in existing:
            continue
        try:
            graph = FlowGraph.model_validate(f["graph"])
        except ValidationError as exc:
            raise ValueError(f"seed flow {f['code']} is malformed: {exc}") from exc
        await check_graph(graph)
        await GuidedFlow.create(code=f["code"], title=f["title"], theme=f["theme"],
                                graph=graph.model_dump(mode="json", exclude_none=True))
