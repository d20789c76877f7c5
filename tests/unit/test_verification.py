"""services/verification.py rules that need no HTTP: the verify_ret table, the one check, and
the moved-away notice being told exactly once whichever path gets there first."""

from __future__ import annotations

import pytest

from models.notifications import Notification
from models.users import IdentityLevel, User
from models.verification import IdentityVerification, VerificationMethod, VerificationStatus
from services import clock, jobs, people, verification
from services.errors import AppError, ErrorCode

LI = ("李秀兰", "621021197508120426")


@pytest.mark.parametrize(("ret", "code"), [
    (10003, ErrorCode.face_mismatch), (10004, ErrorCode.face_mismatch),
    (90002, ErrorCode.face_cancelled), (90006, ErrorCode.face_cancelled),
    (90024, ErrorCode.face_cancelled), (90017, ErrorCode.face_timeout),
    (90107, ErrorCode.face_timeout), (90011, ErrorCode.face_capture_failed),
    (10002, ErrorCode.face_capture_failed), (90008, ErrorCode.face_unsupported),
    (90001, ErrorCode.face_unsupported), (90018, ErrorCode.face_failed),
    (10001, ErrorCode.face_failed), (12345, ErrorCode.face_failed),
])
def test_every_verify_ret_maps_to_one_answer(ret: int, code: ErrorCode) -> None:
    assert verification.outcome_for(ret) is code


def test_refusals_are_distinct_clear_and_never_a_500() -> None:
    codes = [ErrorCode.face_cancelled, ErrorCode.face_timeout, ErrorCode.face_mismatch,
             ErrorCode.face_capture_failed, ErrorCode.face_unsupported, ErrorCode.face_failed,
             ErrorCode.face_pending, ErrorCode.face_session_invalid]
    assert len({c.default_message for c in codes}) == len(codes)
    assert all(400 <= c.status < 500 for c in codes)


async def test_require_verified_tells_missing_from_unproven() -> None:
    user = await User.create(openid="o-unit-1")
    with pytest.raises(AppError) as none:
        await verification.require_verified(user.id)
    assert none.value.code is ErrorCode.identity_required
    person = await people.upsert_person(name=LI[0], id_number=LI[1])
    await User.filter(id=user.id).update(person_id=person.id)
    with pytest.raises(AppError) as typed:
        await verification.require_verified(user.id)
    assert typed.value.code is ErrorCode.identity_unverified
    assert await verification.verified_person_of(user.id) is None
    for level in (IdentityLevel.desk, IdentityLevel.face):
        await User.filter(id=user.id).update(identity_level=level)
        assert (await verification.require_verified(user.id)).id == person.id
        assert (await verification.verified_person_of(user.id)).id == person.id


async def test_moved_notice_is_sent_once_by_job_and_sweep(fake_wechat) -> None:
    old = await User.create(openid="o-old")
    new = await User.create(openid="o-new")
    person = await people.upsert_person(name=LI[0], id_number=LI[1])
    row = await IdentityVerification.create(
        user_id=new.id, method=VerificationMethod.face, out_seq_no="xqfunit0001",
        cert_name_enc="x", cert_no_enc="x", cert_no_hash="h", cert_no_masked="6210**0426",
        status=VerificationStatus.passed, person_id=person.id, took_from_id=old.id,
        expires_at=clock.now(), finished_at=clock.now())
    # Committed, but the process died before queueing: the sweep finds it.
    await verification.sweep_moved_notices()
    await jobs.enqueue(verification.NOTICE_JOB, {"verification_id": row.id})
    await jobs.run_due()
    await verification.sweep_moved_notices()
    notes = await Notification.filter(user_id=old.id, template="identity_moved")
    assert len(notes) == 1 and notes[0].data["character_string2"] == "6210**0426"
    await row.refresh_from_db()
    assert row.took_from_notified_at is not None
