"""后台分类审批 under real concurrency on MariaDB: many approvers of one department clicking
"take" on the same task at once end with exactly one holder, and two departments deciding a
bundle's last parts at once move the case once."""

from __future__ import annotations

import asyncio

import pytest

from models.approval import CaseTask, TaskStatus
from models.cases import Case, CaseEvent, CaseStatus
from models.catalogue import Bundle
from models.users import Role
from services import approval, org
from services.approval import tasks
from services.auth import Principal
from services.cases import Action, open_case, transition
from services.errors import AppError, ErrorCode
from tests.conftest import grant_position
from tests.unit.test_cases import World, user_with, world

__all__ = ["world"]

pytestmark = pytest.mark.mysql


async def _approvers(n: int, department: str, tag: str) -> list[Principal]:
    await org.seed_org({})  # the demo organisation (idempotent): departments to belong to
    out = []
    for i in range(n):
        p = await user_with(f"appr-{tag}-{i}", Role.staff)
        await grant_position(p.user_id, department=department)
        out.append(p)
    return out


async def _accepted(w: World, **kind: str) -> int:
    case = await open_case(actor=w.zhang, hall_code="H-XF-000", **kind)
    await transition(actor=w.staff, case_id=case.id, action=Action.accept)
    return int(case.id)


async def test_concurrent_takers_leave_one_holder(world: World) -> None:
    assert approval.tasks is tasks  # the package registers the routing hook
    takers = await _approvers(12, "市民政局", "mz")
    for _round in range(5):
        cid = await _accepted(world, item_code="MZ-004")
        task = await CaseTask.get(case_id=cid)

        async def take(p: Principal, tid: int = task.id) -> object:
            try:
                return await tasks.claim(actor=p, task_id=tid)
            except AppError as exc:
                return exc.code

        results = await asyncio.gather(*(take(p) for p in takers))
        won = [r for r in results if isinstance(r, CaseTask)]
        assert len(won) == 1, results
        assert {r for r in results if not isinstance(r, CaseTask)} <= {ErrorCode.task_taken}
        fresh = await CaseTask.get(id=task.id)
        assert fresh.status is TaskStatus.claimed and fresh.version == 1
        assert fresh.claimed_by_id == won[0].claimed_by_id
        # The case moved to 审查中 once, however many claims raced.
        assert await CaseEvent.filter(case_id=cid, action="start_review").count() == 1


async def test_two_departments_deciding_at_once_move_the_bundle_once(world: World) -> None:
    await Bundle.create(code="T-PAR-M", name="并联测试", subject="person",
                        item_codes=["MZ-004", "GA-005"])
    [mz] = await _approvers(1, "市民政局", "pmz")
    [ga] = await _approvers(1, "市公安局", "pga")
    for _round in range(5):
        cid = await _accepted(world, bundle_code="T-PAR-M")
        t_mz = await CaseTask.get(case_id=cid, department="市民政局")
        t_ga = await CaseTask.get(case_id=cid, department="市公安局")
        await tasks.claim(actor=mz, task_id=t_mz.id)
        await tasks.claim(actor=ga, task_id=t_ga.id)
        await asyncio.gather(
            tasks.decide(actor=mz, task_id=t_mz.id, approve=True, opinion="符合"),
            tasks.decide(actor=ga, task_id=t_ga.id, approve=True, opinion="符合"))
        assert (await Case.get(id=cid)).status is CaseStatus.approved
        assert await CaseEvent.filter(case_id=cid, action="approve").count() == 1
