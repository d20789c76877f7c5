"""Who may act for whom, under real concurrency on MySQL: a person registered at the desk by
several workers at once has exactly one registrar, and a resident's grant racing the
revocation of the helper's role never leaves an authorisation with someone who lost the role."""

from __future__ import annotations

import asyncio

import pytest

from models.cases import ProxyAuthorization, ProxyScope
from models.onbehalf import DeskRegistration
from models.users import Person, Role, UserRole
from services import helpers, onbehalf, users
from services.auth import Principal
from services.errors import AppError, ErrorCode
from tests.integration.test_appointments_mysql import wide_pool
from tests.unit.test_appointments_common import account, id_number, resident

pytestmark = pytest.mark.mysql
__all__ = ["wide_pool"]


async def test_a_person_registered_by_many_workers_at_once_has_one_registrar(
        wide_pool: None) -> None:
    workers = [await account(Role.community_worker) for _ in range(8)]
    idn = id_number("19480101")

    async def register(w: Principal) -> Person | ErrorCode:
        try:
            return await onbehalf.person_for_booking(w, name="王大爷", id_number=idn)
        except AppError as exc:
            return exc.code

    results = await asyncio.gather(*(register(w) for w in workers))
    won = [r for r in results if isinstance(r, Person)]
    assert len(won) == 1, results
    assert set(results) - set(won) == {ErrorCode.on_behalf_not_permitted}
    assert await Person.all().count() == 1
    registration = await DeskRegistration.get(person_id=won[0].id)
    winner = workers[results.index(won[0])]
    assert registration.worker_id == winner.user_id


async def test_a_grant_racing_the_revocation_never_outlives_the_role(wide_pool: None) -> None:
    admin = await account(Role.admin)
    for round_ in range(12):
        grantor = await resident()
        helper = await account(Role.helper)

        async def grant(grantor: Principal = grantor, helper: Principal = helper) -> None:
            try:
                await helpers.grant_proxy(actor=grantor, helper_user_id=helper.user_id,
                                          scopes=[ProxyScope.apply], days=3)
            except AppError as exc:
                assert exc.code is ErrorCode.not_found  # the role was already gone

        revoke = users.revoke_role(actor=admin, user_id=helper.user_id, role="helper")
        # Alternate who starts first so both orders meet inside the database.
        calls = [grant(), revoke] if round_ % 2 else [revoke, grant()]
        await asyncio.gather(*calls)
        assert not await UserRole.exists(user_id=helper.user_id, role=Role.helper)
        live = await ProxyAuthorization.filter(helper_id=helper.user_id, revoked_at=None).count()
        assert live == 0, f"round {round_}: an authorisation outlived the role"
