"""全程网办 under real concurrency on MySQL: many taps on 提交 for one draft open one case, and
concurrent deliveries of one supplement move the case once with one set of materials."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from models.cases import Case, CaseStatus
from models.online import CaseMaterial, Upload
from models.users import IdentityLevel, Person, User
from services import cases, doorplates, online, people, seed
from services.auth import Principal
from services.errors import AppError

pytestmark = [pytest.mark.mysql, pytest.mark.usefixtures("fake_wechat")]

N = 20
VALUES = {"bank_name": "中国农业银行", "bank_account": "6228480000000000000",
          "living_status": "独居", "contact_phone": "13812345678", "address": "长庆路12号"}


async def _people() -> tuple[Principal, Principal]:
    data = seed.load_demo_data()
    for seeder in (seed.seed_people, seed.seed_catalogue, doorplates.seed_codes,
                   online.seed_online):
        await seeder(data)
    person = await Person.get(id_number_hash=people.id_lookup_hash("621002194103050316"))
    # Bound as if face-verified: only a proven identity prefills the form's name and ID.
    user = await User.create(openid="o-zhang-mysql", person=person,
                             identity_level=IdentityLevel.face)
    staff = await User.create(openid="o-staff-mysql")
    return (Principal(user.id, frozenset({"resident"})),
            Principal(staff.id, frozenset({"resident", "staff"})))


async def _upload(owner: Principal, n: int) -> Upload:
    return await Upload.create(owner_id=owner.user_id, storage_key=f"uploads/{owner.user_id}/{n}",
                               content_type="image/jpeg", size=1, sha256="0" * 64)


class Meter:
    """How many calls were inside the wrapped coroutine at once: proof the test overlapped."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def wrap(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                return await fn(*args, **kwargs)
            finally:
                self.now -= 1

        return wrapped


async def _outcomes(calls: list[Any]) -> list[Any]:
    async def one(c: Any) -> Any:
        try:
            return await c
        except AppError as exc:
            return exc.code.name

    return await asyncio.gather(*(one(c) for c in calls))


async def test_many_submits_of_one_draft_open_one_case(monkeypatch: pytest.MonkeyPatch) -> None:
    me, _ = await _people()
    meter = Meter()
    monkeypatch.setattr(cases, "open_case", meter.wrap(cases.open_case))
    draft = await online.create_draft(actor=me, hall_code="H-XF-000", item_code="MZ-004")
    await online.save_values(actor=me, draft_id=draft.id, values=VALUES)
    up = await _upload(me, 1)
    await online.attach_to_draft(actor=me, draft_id=draft.id,
                                 supplied=online.Supplied("居民身份证", upload_id=up.id))
    got = await _outcomes([online.submit(actor=me, draft_id=draft.id) for _ in range(N)])
    opened = [g for g in got if isinstance(g, Case)]
    assert len(opened) == 1, got
    assert meter.peak > 1, "the submits never overlapped"
    assert set(g for g in got if not isinstance(g, Case)) <= {"draft_submitted"}
    assert await Case.filter(applicant_id=me.user_id).count() == 1
    assert await CaseMaterial.filter(case_id=opened[0].id).count() == 1


async def test_concurrent_supplement_deliveries_move_the_case_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    me, staff = await _people()
    draft = await online.create_draft(actor=me, hall_code="H-XF-000", item_code="MZ-004")
    await online.save_values(actor=me, draft_id=draft.id, values=VALUES)
    await online.attach_to_draft(actor=me, draft_id=draft.id,
                                 supplied=online.Supplied("居民身份证",
                                                          upload_id=(await _upload(me, 1)).id))
    case = await online.submit(actor=me, draft_id=draft.id)
    await cases.transition(actor=staff, case_id=case.id, action=cases.Action.accept)
    await cases.request_supplement(actor=staff, case_id=case.id,
                                   items=[("居民身份证", "照片不清晰")])
    ups = [await _upload(me, 10 + i) for i in range(N)]
    meter = Meter()
    monkeypatch.setattr(cases, "resubmit", meter.wrap(cases.resubmit))
    got = await _outcomes([
        online.deliver_supplement(actor=me, case_id=case.id,
                                  supplied=[online.Supplied("居民身份证", upload_id=u.id)])
        for u in ups])
    moved = [g for g in got if isinstance(g, Case)]
    assert len(moved) == 1, got
    assert meter.peak > 1, "the deliveries never overlapped"
    assert set(g for g in got if not isinstance(g, Case)) <= {"illegal_transition",
                                                               "case_changed"}
    assert (await Case.get(id=case.id)).status is CaseStatus.resubmitted
    assert await CaseMaterial.filter(case_id=case.id, supplement_id__not_isnull=True).count() == 1
