"""实名 + 实人: binding an account to a real person only on proof, never on typing.

Two proofs exist (``IdentityLevel``):

- **face** — WeChat 人脸核身. ``start_face`` records an attempt and asks getVerifyId for a
  session the mini program hands to ``wx.requestFacialVerify``; ``finish_face`` asks
  queryVerifyInfo server to server and binds only on ``verify_ret`` 10000. The real person
  always wins: a face-verified binding of an ID another account holds moves the person here,
  the other account loses it, is told (a stored notice, delivered by one durable path) and
  the move is audited. A person registered by a community worker or at a window (no account)
  can only be claimed this way.
- **desk** — window staff saw the ID card in person (``desk_bind``). Audited, and it never
  takes a person away from another account: that needs the person's own face.

What needs a proven identity (the 人码, seeing what others booked on one's behalf, granting
proxy powers, becoming an enterprise agent) asks ``require_verified`` — one check, one place.
Both proofs count: at the desk a trained clerk compares the card's photo with the face in
front of them, which is what the face check automates.

Oracle: starting a verification never reads whether the ID number is registered, by whom, or
under which name, so a right and a wrong name on a registered number answer the same; the
platform's own verdicts on name/number and face mismatches share one answer
(``face_mismatch``). Attempts are rate-limited per account and per ID number.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from datetime import timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.users import IdentityLevel, Person, Role, User
from models.verification import IdentityVerification, VerificationMethod, VerificationStatus
from services import audit, clock, jobs, notifications, people, pii, ratelimit
from services.auth import Principal
from services.errors import AppError, ErrorCode, not_found
from services.identity import mask_id_number, mask_name
from services.scope import scope_of
from services.settings import get_settings
from services.wechat import wechat

log = logging.getLogger(__name__)

VERIFIED = frozenset({IdentityLevel.face, IdentityLevel.desk})
P_CERT_NAME = "verification.cert_name"
P_CERT_NO = "verification.cert_no"
NOTICE_JOB = "identity.moved_notice"
NOTICE_TEMPLATE = "identity_moved"
FINISH_GRACE = timedelta(minutes=10)

VERIFY_PASSED = 10000
# queryVerifyInfo's verify_ret values (WeChat docs, 查询用户人脸核身真实验证结果), grouped by
# what the user can do about them. Anything unlisted is a plain failure (``face_failed``).
_CANCELLED = frozenset({90002, 90003, 90004, 90005, 90006, 90024})
_TIMED_OUT = frozenset({90017, 90107})
# 10003 身份证号与姓名不匹配 and 10004 人脸不匹配 get one answer: telling them apart would say
# whether the name typed for a number is right.
_MISMATCH = frozenset({10003, 10004})
_CAPTURE = frozenset({10002, 90011, 90012, 90013, 90014, 90023})
_UNSUPPORTED = frozenset({90001, 90008, 90009, 90010, 90106, 90109})


def outcome_for(verify_ret: int) -> ErrorCode:
    if verify_ret in _CANCELLED:
        return ErrorCode.face_cancelled
    if verify_ret in _TIMED_OUT:
        return ErrorCode.face_timeout
    if verify_ret in _MISMATCH:
        return ErrorCode.face_mismatch
    if verify_ret in _CAPTURE:
        return ErrorCode.face_capture_failed
    if verify_ret in _UNSUPPORTED:
        return ErrorCode.face_unsupported
    return ErrorCode.face_failed


# --- the one check ----------------------------------------------------------------------------


def is_verified(user: User) -> bool:
    return user.person_id is not None and user.identity_level in VERIFIED  # type: ignore[attr-defined]


async def verified_person_of(user_id: int) -> Person | None:
    """The account's person if its identity was proven (face or desk), else None: a typed-in
    binding from before proofs existed shows nothing that belongs to the person."""
    user = await User.get_or_none(id=user_id).select_related("person")
    if user is None or not is_verified(user):
        return None
    return user.person


async def require_verified(actor: Principal | int) -> Person:
    """The caller's proven person, or a clear refusal: ``identity_required`` when no person is
    bound at all, ``identity_unverified`` when one is bound without proof."""
    user_id = actor if isinstance(actor, int) else actor.user_id
    user = await User.get_or_none(id=user_id).select_related("person")
    if user is None or user.person is None:
        raise AppError(ErrorCode.identity_required)
    if not is_verified(user):
        raise AppError(ErrorCode.identity_unverified)
    return user.person


# --- attempts ---------------------------------------------------------------------------------


async def access_verification(
    actor: Principal, verification_id: int, *, for_change: bool = False, lock: bool = False
) -> IdentityVerification:
    """An attempt is its account's alone (reading and finishing alike); anyone else's id is
    404, the same answer as an id that doesn't exist."""
    del for_change  # reading and changing have the same audience: the account itself
    qs = IdentityVerification.filter(id=verification_id, user_id=actor.user_id)
    if lock:
        qs = qs.select_for_update()
    row = await qs.first()
    if row is None:
        raise not_found("核身记录")
    return row


def cert_of(row: IdentityVerification) -> tuple[str, str]:
    return (pii.decrypt(row.cert_name_enc, purpose=P_CERT_NAME),
            pii.decrypt(row.cert_no_enc, purpose=P_CERT_NO))


async def _limit(*, account_key: str, account_limit: int, id_hash: str) -> None:
    s = get_settings()
    await ratelimit.hit(account_key, limit=account_limit,
                        window_seconds=s.identity_verify_rate_window_seconds,
                        message="实名认证尝试过于频繁，请稍后再试")
    await ratelimit.hit(f"idv:id:{id_hash}", limit=s.identity_verify_id_rate_limit,
                        window_seconds=s.identity_verify_rate_window_seconds,
                        message="该身份证号的认证尝试过于频繁，请稍后再试")


def _new_row(*, user_id: int, method: VerificationMethod, name: str, id_number: str,
             verified_by: int | None = None) -> IdentityVerification:
    # Our serial for WeChat: 5-32 of [0-9A-Za-z_-], unique per appid.
    return IdentityVerification(
        user_id=user_id, method=method, verified_by_id=verified_by,
        out_seq_no=f"xq{method.value[0]}{secrets.token_hex(12)}",
        cert_name_enc=pii.encrypt(name, purpose=P_CERT_NAME),
        cert_no_enc=pii.encrypt(id_number, purpose=P_CERT_NO),
        cert_no_hash=people.id_lookup_hash(id_number),
        cert_no_masked=mask_id_number(id_number),
        expires_at=clock.now() + timedelta(hours=1),
    )


async def start_face(*, actor: Principal, name: str, id_number: str) -> IdentityVerification:
    idn = people.parse_id_number(id_number)  # a malformed number is refused before any lookup
    name = name.strip()
    id_hash = people.id_lookup_hash(idn.value)
    await _limit(account_key=f"idv:acct:{actor.user_id}",
                 account_limit=get_settings().identity_verify_rate_limit, id_hash=id_hash)
    user = await User.get(id=actor.user_id).select_related("person")
    if is_verified(user):
        # A proven account keeps its person; the one upgrade allowed is desk -> face for the
        # same person. (Only the caller's own binding is read: nothing about the number.)
        same = user.person is not None and user.person.id_number_hash == id_hash
        if not same or user.identity_level == IdentityLevel.face:
            raise AppError(ErrorCode.identity_already_bound)
    row = _new_row(user_id=user.id, method=VerificationMethod.face, name=name,
                   id_number=idn.value)
    await row.save()  # recorded before WeChat hears of it: every attempt leaves a row
    try:
        session = await wechat().face_verify_id(out_seq_no=row.out_seq_no, openid=user.openid,
                                                cert_name=name, cert_no=idn.value)
    except AppError as exc:
        await _fail(row, exc.code, None)
        raise
    row.verify_id = session.verify_id
    row.expires_at = clock.now() + timedelta(seconds=session.expires_in)
    await row.save(update_fields=["verify_id", "expires_at"])
    return row


async def _fail(row: IdentityVerification, code: ErrorCode, verify_ret: int | None) -> None:
    # Conditional: of two finishes racing, the first verdict stands and the other replays it.
    await IdentityVerification.filter(id=row.id, status=VerificationStatus.pending).update(
        status=VerificationStatus.failed, outcome=code.name, verify_ret=verify_ret,
        finished_at=clock.now())


def _replay(row: IdentityVerification) -> IdentityVerification:
    """A finished attempt answers a retry exactly as it answered first."""
    if row.status == VerificationStatus.failed:
        raise AppError(ErrorCode[row.outcome] if row.outcome in ErrorCode.__members__
                       else ErrorCode.face_failed)
    return row


async def finish_face(*, actor: Principal, verification_id: int,
                      request_id: str = "") -> IdentityVerification:
    row = await access_verification(actor, verification_id, for_change=True)
    if row.status != VerificationStatus.pending:
        return _replay(row)
    # Each pending finish is a WeChat call: a client polling in a loop mustn't spend the
    # appid's quota.
    await ratelimit.hit(f"idv:finish:{actor.user_id}", limit=30, window_seconds=60,
                        message="查询过于频繁，请稍后再试")
    if row.method != VerificationMethod.face or not row.verify_id:
        raise not_found("核身记录")
    # verify_id's lifetime bounds starting the face step; a finish a little after it (the
    # check done at minute 59) still asks. Long after, the attempt is closed here.
    if row.expires_at + FINISH_GRACE <= clock.now():
        await _fail(row, ErrorCode.face_session_invalid, None)
        return _replay(await IdentityVerification.get(id=row.id))
    user = await User.get(id=actor.user_id)
    name, number = cert_of(row)
    # Asked outside any transaction: no row lock is held across the network.
    ret = await wechat().face_verify_result(verify_id=row.verify_id, out_seq_no=row.out_seq_no,
                                            openid=user.openid, cert_name=name, cert_no=number)
    if ret is None:
        await _fail(row, ErrorCode.face_session_invalid, None)
    elif ret == 0:
        raise AppError(ErrorCode.face_pending)
    elif ret != VERIFY_PASSED:
        await _fail(row, outcome_for(ret), ret)
    else:
        await _bind_face(actor=actor, row=row, name=name, id_number=number,
                         request_id=request_id)
    return _replay(await IdentityVerification.get(id=row.id))


async def _lock_person(name: str, id_number: str, *, correct_name: bool) -> Person:
    """The person with this number, locked; created if new. With ``correct_name`` (a
    face-verified name: the registry's word) a differing stored name, typed earlier by a worker,
    is corrected."""
    id_hash = people.id_lookup_hash(id_number)
    person = await Person.select_for_update().get_or_none(id_number_hash=id_hash)
    if person is None:
        # Neither MySQL nor SQLite aborts the transaction on a failed insert, so a lost race
        # just means reading the winner's row below (registered meanwhile under another name:
        # then handled like any existing record).
        with contextlib.suppress(AppError):
            await people.upsert_person(name=name, id_number=id_number)
        person = await Person.select_for_update().get(id_number_hash=id_hash)
    if correct_name and pii.decrypt(person.name_enc, purpose=people.P_NAME) != name:
        person.name_enc = pii.encrypt(name, purpose=people.P_NAME)
        person.name_masked = mask_name(name)
        await person.save(update_fields=["name_enc", "name_masked", "updated_at"])
    return person


async def _bind_face(*, actor: Principal, row: IdentityVerification, name: str,
                     id_number: str, request_id: str) -> None:
    took_from: int | None = None
    async with in_transaction():
        locked = await IdentityVerification.select_for_update().get(id=row.id)
        if locked.status != VerificationStatus.pending:
            return  # a concurrent finish decided; the caller replays its verdict
        # Lock order: the person, then accounts by id, so two claims of one person queue.
        person = await _lock_person(name, id_number, correct_name=True)
        holder = await User.filter(person_id=person.id).exclude(id=actor.user_id).first()
        ids = sorted({actor.user_id, *([holder.id] if holder else [])})
        locked_users = {u.id: u for u in await User.select_for_update().filter(id__in=ids)}
        user = locked_users[actor.user_id]
        if user.person_id not in (None, person.id) and is_verified(user):  # type: ignore[attr-defined]
            # Proven as someone else since the start (e.g. at a desk): keep that binding.
            await _fail(locked, ErrorCode.identity_already_bound, VERIFY_PASSED)
            return
        now = clock.now()
        if holder is not None:
            old = locked_users[holder.id]
            old.person = None
            old.identity_level = IdentityLevel.none
            old.identity_verified_at = None
            # Released first: users.person_id is unique.
            await old.save(update_fields=["person_id", "identity_level", "identity_verified_at"])
            took_from = old.id
            await audit.record(actor=actor, person_id=person.id, action="identity.reclaimed",
                               fields_read=[], request_id=request_id,
                               reason=f"人脸核身通过，实名信息由账号#{old.id}转至账号#{actor.user_id}")
        user.person = person
        user.identity_level = IdentityLevel.face
        user.identity_verified_at = now
        await user.save(update_fields=["person_id", "identity_level", "identity_verified_at"])
        await IdentityVerification.filter(id=row.id).update(
            status=VerificationStatus.passed, verify_ret=VERIFY_PASSED, outcome="passed",
            person_id=person.id, took_from_id=took_from, finished_at=now)
        # The person binding themselves is no staff read: the attempt row is its record, and
        # the resident's access log stays about others.
    if took_from is not None:
        # After commit; the sweep below delivers it if this process dies before the queue.
        await jobs.enqueue(NOTICE_JOB, {"verification_id": row.id}, key=f"{NOTICE_JOB}:{row.id}")


# --- desk ------------------------------------------------------------------------------------


async def desk_bind(*, actor: Principal, user_id: int, name: str, id_number: str,
                    request_id: str = "") -> IdentityVerification:
    """Window staff bind a walk-in's account after seeing the ID card. Any conflict — the
    number's record has another name, or another account holds it — gets one answer and
    changes nothing: taking a person from an account needs that person's face. A person
    without an account (registered by a community worker) may be bound here: the clerk has
    compared the card with the face in front of them."""
    if not actor.has(Role.staff):
        raise AppError(ErrorCode.forbidden)
    # Only someone who sits at a hall's window (clerk or manager there; an admin) sees the card
    # and the face: a back-office approver or a supervisor never has the walk-in in front of them.
    staff_scope = await scope_of(actor)
    if not (staff_scope.everything or staff_scope.scanning_hall):
        raise AppError(ErrorCode.forbidden, "窗口核验须由大厅窗口工作人员办理")
    if user_id == actor.user_id:
        # Four eyes: a clerk binding their own account to someone is exactly the squat this
        # guards against, done from inside.
        raise AppError(ErrorCode.forbidden, "不能为自己的账号办理窗口核验")
    idn = people.parse_id_number(id_number)
    name = name.strip()
    id_hash = people.id_lookup_hash(idn.value)
    # A clerk serves a queue of walk-ins: their own budget is a day's counter, not a resident's.
    await _limit(account_key=f"idv:desk:{actor.user_id}",
                 account_limit=get_settings().identity_verify_rate_limit * 20, id_hash=id_hash)
    target = await User.get_or_none(id=user_id, is_active=True)
    if target is None:
        raise not_found("用户")
    row = _new_row(user_id=user_id, method=VerificationMethod.desk, name=name,
                   id_number=idn.value, verified_by=actor.user_id)
    await row.save()
    try:
        async with in_transaction():  # a refusal raises inside: nothing half-written stays
            # Same lock order as a face binding: the person, then the account.
            person = await _lock_person(name, idn.value, correct_name=False)
            user = await User.select_for_update().get(id=user_id)
            if (pii.decrypt(person.name_enc, purpose=people.P_NAME) != name
                    or await User.filter(Q(person_id=person.id) & ~Q(id=user_id)).exists()):
                raise AppError(ErrorCode.identity_desk_conflict)
            if is_verified(user) and user.person_id != person.id:  # type: ignore[attr-defined]
                raise AppError(ErrorCode.identity_already_bound)
            user.person = person
            if user.identity_level != IdentityLevel.face:  # never downgrade a face proof
                user.identity_level = IdentityLevel.desk
                user.identity_verified_at = clock.now()
            await user.save(update_fields=["person_id", "identity_level",
                                           "identity_verified_at"])
            await IdentityVerification.filter(id=row.id).update(
                status=VerificationStatus.passed, outcome="passed", person_id=person.id,
                finished_at=clock.now())
    except AppError as exc:
        await _fail(row, exc.code, None)
        await audit.record(actor=actor, person_id=None, action="identity.desk_refused",
                           fields_read=[], request_id=request_id,
                           reason=f"窗口核验未绑定账号#{user_id}：{exc.code.name}")
        raise
    await audit.record(actor=actor, person_id=person.id, action="identity.desk_verified",
                       fields_read=[], reason=f"窗口核验身份证，绑定账号#{user_id}",
                       request_id=request_id)
    return await IdentityVerification.get(id=row.id)


# --- the moved-away notice: one durable path -------------------------------------------------


async def moved_away(*, actor: Principal, limit: int = 20) -> list[IdentityVerification]:
    """The stored notices: verifications that took this account's person away."""
    return await IdentityVerification.filter(took_from_id=actor.user_id).order_by("-id") \
        .limit(limit)


async def _send_moved_notice(row: IdentityVerification) -> None:
    if row.took_from_id is None or row.took_from_notified_at is not None:  # type: ignore[attr-defined]
        return
    data: dict[str, Any] = {
        "thing1": "您的实名信息已由本人通过人脸核身绑定到其他账号",
        "character_string2": row.cert_no_masked,
        "time3": clock.local(row.finished_at or clock.now()).strftime("%Y-%m-%d %H:%M"),
    }
    await notifications.notify(user_id=row.took_from_id,  # type: ignore[attr-defined]
                               template=NOTICE_TEMPLATE, data=data,
                               dedup_key=f"{NOTICE_TEMPLATE}:{row.id}",
                               page="pages/me/identity")
    await IdentityVerification.filter(id=row.id, took_from_notified_at=None).update(
        took_from_notified_at=clock.now())


@jobs.handler(NOTICE_JOB)
async def _notice_job(payload: dict[str, Any]) -> None:
    row = await IdentityVerification.get_or_none(id=payload["verification_id"])
    if row is not None:
        await _send_moved_notice(row)


@jobs.periodic("identity.moved_notices", every_seconds=60)
async def sweep_moved_notices() -> None:
    """Reads the truth from the database: a move committed but never queued (the process died
    in between) is still told. ``notify`` sends once per dedup key, so overlap is harmless."""
    rows = await IdentityVerification.filter(
        took_from_id__isnull=False, took_from_notified_at__isnull=True,
        status=VerificationStatus.passed).order_by("id").limit(100)
    for row in rows:
        await _send_moved_notice(row)
