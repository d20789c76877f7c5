"""一码通 under real parallel connections: one active code per subject, whatever the race."""

from __future__ import annotations

import asyncio

import pytest

from models.codes import DoorPlate, IssuedCode
from models.enterprises import Enterprise
from models.users import Role
from services import codes
from services.errors import AppError
from tests.unit.test_codes import AGENT_USCC, seed_demo, user

pytestmark = pytest.mark.mysql

TASKS = 12


async def test_parallel_reissues_leave_exactly_one_active_enterprise_code() -> None:
    await seed_demo()
    ent = await Enterprise.get(uscc=AGENT_USCC)
    staff = await user("staff", Role.staff)
    results = await asyncio.gather(
        *(codes.issue_enterprise_code(actor=staff, enterprise_id=ent.id) for _ in range(TASKS)),
        return_exceptions=True)
    issued = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, AppError) for r in results if isinstance(r, BaseException)), results
    assert issued, results
    rows = await IssuedCode.filter(enterprise_id=ent.id)
    active = [r for r in rows if r.active_key is not None]
    assert len(active) == 1
    # Every successful call issued its own code; all but the last were voided by the next.
    assert len(rows) == len(issued)
    resident = await user("resident")
    live = [qr for qr in issued
            if codes.token_hash(qr.token) == active[0].token_hash]
    assert len(live) == 1
    assert (await codes.scan(actor=resident, content=live[0].content)).kind == "enterprise"


async def test_parallel_batches_over_the_same_plates_share_one_code_each() -> None:
    await seed_demo()
    staff = await user("staff", Role.staff)
    plates = ["D-XF-0001", "D-XF-0002", "D-XF-0003", "D-XF-0004"]
    # Different orders, so only the locking order keeps the batches from deadlocking.
    orders = [plates if i % 2 else list(reversed(plates)) for i in range(TASKS)]
    results = await asyncio.gather(
        *(codes.issue_doorplate_codes(actor=staff, plate_codes=o) for o in orders))
    for plate in plates:
        contents = {q.content for batch in results for p, q, _ in batch if p.code == plate}
        assert len(contents) == 1, plate
        row = await DoorPlate.get(code=plate)
        assert await IssuedCode.filter(doorplate_id=row.id).count() == 1
    assert sum(new for batch in results for _, _, new in batch) == len(plates)
