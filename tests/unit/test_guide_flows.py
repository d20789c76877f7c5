"""导办 flows: validation of staff edits and walking the seeded flows to the right place."""

from __future__ import annotations

import pytest

from models.guide import GuidedFlow
from models.users import Role
from services import guide, guided_flows, seed
from services.auth import Principal
from services.errors import AppError
from services.guided_flows import FlowGraph

STAFF = Principal(user_id=1, roles=frozenset({Role.staff.value}))


def graph(questions: dict[str, object], start: str = "a") -> FlowGraph:
    return FlowGraph.model_validate({"start": start, "questions": questions})


def q(text: str, *options: dict[str, str]) -> dict[str, object]:
    return {"text": text, "options": list(options)}


async def _refused(g: FlowGraph) -> dict[str, str]:
    with pytest.raises(AppError) as exc:
        await guided_flows.check_graph(g)
    assert exc.value.status == 422
    return exc.value.fields


async def test_seed_covers_the_required_themes_and_all_flows_are_valid():
    await seed.run()
    flows = {f.theme: f for f in await GuidedFlow.all()}
    assert {"户籍证件", "社会保障", "不动产", "市场主体"} <= set(flows)
    for f in flows.values():
        await guided_flows.check_graph(guided_flows.graph_of(f))


@pytest.mark.parametrize(("code", "answers", "dest"), [
    ("huji", [0, 1], ("item", "GA-002")),  # 身份证 -> 丢失补领
    ("huji", [0, 3, 0], ("bundle", "YJS-07")),  # 身份证 -> 新生儿 -> 一次办好
    ("shebao", [0, 0, 0], ("item", "RS-001")),  # 本人 -> 社保卡 -> 首次申领
    ("shebao", [1, 0], ("bundle", "YJS-13")),  # 企业 -> 新员工入职
    ("budongchan", [0, 0, 0], ("bundle", "YJS-12")),  # 本人 -> 二手房 -> 联动过户
    ("shichang", [1, 2], ("bundle", "YJS-06")),  # 企业 -> 注销
])
async def test_walks_land_on_the_right_item_or_bundle(code, answers, dest):
    await seed.run()
    step = await guided_flows.walk(code=code, answers=answers)
    assert step.question is None and step.destination is not None
    assert (step.destination.type, step.destination.code) == dest
    assert len(step.asked) == len(answers)


async def test_a_partial_walk_returns_the_next_question():
    await seed.run()
    step = await guided_flows.walk(code="shebao", answers=[])
    assert step.question is not None and step.question.text == "为本人还是为企业办理?"
    step = await guided_flows.walk(code="shebao", answers=[0, 0])
    assert step.question is not None and step.question.options == ["首次申领", "丢失或损坏补换"]


async def test_out_of_range_and_extra_answers_are_422():
    await seed.run()
    with pytest.raises(AppError) as exc:
        await guided_flows.walk(code="shebao", answers=[0, 9])
    assert exc.value.status == 422 and "answers.1" in exc.value.fields
    with pytest.raises(AppError) as exc:
        await guided_flows.walk(code="shebao", answers=[1, 0, 0])
    assert exc.value.status == 422 and "answers.2" in exc.value.fields


async def test_cycle_is_refused():
    await seed.run()
    fields = await _refused(graph({
        "a": q("一?", {"label": "去b", "next": "b"}, {"label": "办", "item": "GA-001"}),
        "b": q("二?", {"label": "回a", "next": "a"}, {"label": "办", "item": "GA-002"}),
    }))
    assert "循环" in fields["questions"]


async def test_dangling_unknown_and_unreachable_are_refused():
    await seed.run()
    fields = await _refused(graph({
        "a": q("一?", {"label": "去x", "next": "x"}, {"label": "办", "item": "NOPE-1"}),
    }))
    assert "x" in fields["questions.a.options.0"]
    assert "NOPE-1" in fields["questions.a.options.1"]
    fields = await _refused(graph({
        "a": q("一?", {"label": "办1", "item": "GA-001"}, {"label": "办2", "bundle": "YJS-07"}),
        "orphan": q("孤?", {"label": "办1", "item": "GA-001"}, {"label": "办2", "item": "GA-002"}),
    }))
    assert "orphan" in fields["questions"]
    fields = await _refused(graph({"a": q("一?", {"label": "办", "item": "GA-001"},
                                            {"label": "办", "item": "GA-002"})}))
    assert "questions.a.options" in fields
    fields = await _refused(graph({"a": q("一?", {"label": "1", "item": "GA-001"},
                                            {"label": "2", "item": "GA-002"})}, start="zz"))
    assert "start" in fields


async def test_a_retired_item_invalidates_a_new_flow_that_points_at_it():
    await seed.run()
    await guide.deactivate_item(actor=STAFF, code="GA-003")
    fields = await _refused(graph({"a": q("一?", {"label": "1", "item": "GA-003"},
                                            {"label": "2", "item": "GA-002"})}))
    assert "GA-003" in fields["questions.a.options.0"]


async def test_option_must_have_exactly_one_target():
    with pytest.raises(ValueError):
        FlowGraph.model_validate({"start": "a", "questions": {"a": q(
            "一?", {"label": "1", "item": "GA-001", "next": "a"}, {"label": "2", "item": "X"})}})


async def test_replace_bumps_revision_and_seed_does_not_overwrite():
    await seed.run()
    new = graph({"a": q("办哪个?", {"label": "换领", "item": "GA-001"},
                        {"label": "补领", "item": "GA-002"})})
    flow = await guided_flows.replace_flow(actor=STAFF, code="huji", title="户籍证件导办",
                                           theme="户籍证件", graph=new)
    assert flow.revision == 2
    await seed.run()
    again = await GuidedFlow.get(code="huji")
    assert again.revision == 2 and again.graph["start"] == "a"
    step = await guided_flows.walk(code="huji", answers=[1])
    assert step.destination is not None and step.destination.code == "GA-002"
