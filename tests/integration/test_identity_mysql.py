"""实名 + 实人 under concurrency on MariaDB: claims of one person queue on its row lock, and a
retried finish never binds twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from models.users import User
from models.verification import IdentityVerification, VerificationStatus
from services import people, verification
from services.auth import Principal

LI = ("李秀兰", "621021197508120426")


async def _ready(fake_wechat: Any, openid: str) -> tuple[Principal, IdentityVerification]:
    """An account whose phone is 李秀兰's, with a face step done and only the finish left."""
    user = await User.create(openid=openid)
    fake_wechat.register_face(openid, name=LI[0], id_number=LI[1])
    actor = Principal(user_id=user.id, roles=frozenset({"resident"}))
    row = await verification.start_face(actor=actor, name=LI[0], id_number=LI[1])
    assert fake_wechat.face_verify(row.verify_id)["verify_ret"] == 10000
    return actor, row


@pytest.mark.mysql
async def test_simultaneous_claims_of_one_person_leave_exactly_one_holder(app, fake_wechat):
    # A worker registered her; eight of her phones (the same face) finish at the same moment.
    person = await people.upsert_person(name=LI[0], id_number=LI[1])
    ready = [await _ready(fake_wechat, f"o-li-{i}") for i in range(8)]
    results = await asyncio.gather(
        *(verification.finish_face(actor=a, verification_id=r.id) for a, r in ready),
        return_exceptions=True)
    assert all(isinstance(r, IdentityVerification) for r in results), results
    assert {r.status for r in results} == {VerificationStatus.passed}
    assert await User.filter(person_id=person.id).count() == 1
    # Each later claim took the person from the one before: 7 recorded moves, a chain that
    # ends at the holder, and no move lost to a race.
    moves = await IdentityVerification.filter(took_from_id__isnull=False).order_by("finished_at")
    assert len(moves) == 7
    holder = await User.get(person_id=person.id)
    givers = {m.took_from_id for m in moves}
    assert holder.id not in givers and len(givers) == 7


@pytest.mark.mysql
async def test_one_verification_finished_many_times_at_once_binds_once(app, fake_wechat):
    actor, row = await _ready(fake_wechat, "o-li-retry")
    results = await asyncio.gather(
        *(verification.finish_face(actor=actor, verification_id=row.id) for _ in range(12)),
        return_exceptions=True)
    assert all(isinstance(r, IdentityVerification) for r in results), results
    assert {(r.id, r.status) for r in results} == {(row.id, VerificationStatus.passed)}
    assert await User.filter(person_id__isnull=False).count() == 1
    assert await IdentityVerification.filter(took_from_id__isnull=False).count() == 0
