"""Issuing and revoking codes: a person's one-minute 人码, an enterprise's 企业码, door plates'
门楼牌码 (in batches, for printing), and their mini-program codes.

Long-lived codes: ``active_key`` (``kind:subject``, NULL once revoked) is unique, so the
database itself refuses a second active code for a subject; issuing locks the subject row
(``SELECT … FOR UPDATE``, plates in id order) so parallel re-issues queue instead of failing.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.codes import CodeKind, DoorPlate, IssuedCode
from models.enterprises import Enterprise, EnterpriseAgent
from services import cache, clock, ratelimit, verification
from services.auth import Principal
from services.codes import images, views
from services.codes.images import IssuedQr
from services.codes.tokens import (
    code_url,
    new_long_token,
    seal,
    sign_person_token,
    stored_token,
    token_hash,
)
from services.doorplate_access import access_doorplate, access_doorplates
from services.errors import AppError, ErrorCode, not_found
from services.settings import get_settings

MAX_ID = 2**63 - 1


# --- person code --------------------------------------------------------------------------


async def issue_person_code(*, user_id: int) -> IssuedQr:
    # The app refreshes about once a minute; a loop fetching codes only fills Redis.
    await ratelimit.hit(f"mecode:{user_id}", limit=30, window_seconds=60)
    # The 人码 shows the person's ID to window staff: only a proven identity gets one.
    person = await verification.require_verified(user_id)
    ttl = get_settings().person_code_ttl_seconds
    now = clock.now()
    expires = int(now.timestamp()) + ttl
    nonce = secrets.token_bytes(9)
    token = sign_person_token(nonce, expires)
    static = await views.person_static_view(person)
    await cache.redis().set(f"code:p:{nonce.hex()}", views.person_entry(person.id, static),
                            ex=ttl)
    return IssuedQr(token=token, content=code_url(token),
                    expires_at=clock.local(datetime.fromtimestamp(expires, tz=clock.SHANGHAI)))


# --- long-lived codes ---------------------------------------------------------------------


def _active_key(kind: CodeKind, subject_id: int) -> str:
    return f"{kind.value}:{subject_id}"


async def _issue_long(*, kind: CodeKind, subject_id: int, actor: Principal | None,
                      reissue: bool) -> tuple[IssuedCode, str, bool]:
    """Caller holds the subject row locked. Returns (code, token, newly issued)."""
    key = _active_key(kind, subject_id)
    current = await IssuedCode.get_or_none(active_key=key)
    if current is not None and not reissue:
        return current, stored_token(current), False
    revoked_token = None
    if current is not None:
        revoked_token = stored_token(current)
        current.active_key = None
        current.revoked_at = clock.now()
        current.revoked_by_id = actor.user_id if actor else None
        await current.save(update_fields=["active_key", "revoked_at", "revoked_by_id"])
    token = new_long_token()
    code = await IssuedCode.create(
        kind=kind, token_hash=token_hash(token), token_enc=seal(token),
        active_key=key,
        enterprise_id=subject_id if kind is CodeKind.enterprise else None,
        doorplate_id=subject_id if kind is CodeKind.doorplate else None,
        issued_by_id=actor.user_id if actor else None,
    )
    if revoked_token is not None:
        await views.mark_revoked(revoked_token)
    return code, token, True


async def _revoke_long(*, kind: CodeKind, subject_id: int, actor: Principal) -> bool:
    code = await IssuedCode.get_or_none(active_key=_active_key(kind, subject_id))
    if code is None:
        return False
    token = stored_token(code)
    updated = await IssuedCode.filter(id=code.id, active_key__isnull=False).update(
        active_key=None, revoked_at=clock.now(), revoked_by_id=actor.user_id)
    await views.mark_revoked(token)
    return bool(updated)


async def _can_manage_enterprise(actor: Principal, enterprise_id: int) -> Enterprise:
    # Ids beyond BIGINT can't exist, and SQLite would overflow binding them.
    ent = await Enterprise.get_or_none(id=enterprise_id) if 0 < enterprise_id <= MAX_ID else None
    if ent is None:
        raise not_found("企业")
    if actor.is_staff:
        return ent
    if not await EnterpriseAgent.exists(enterprise_id=enterprise_id, user_id=actor.user_id):
        # Same answer as a missing enterprise: ids of other firms are not confirmed.
        raise not_found("企业")
    return ent


async def issue_enterprise_code(*, actor: Principal, enterprise_id: int,
                                reissue: bool = True) -> IssuedQr:
    await _can_manage_enterprise(actor, enterprise_id)
    async with in_transaction():
        ent = await Enterprise.select_for_update().get(id=enterprise_id)
        views.checked_uscc(ent)
        try:
            _, token, _ = await _issue_long(kind=CodeKind.enterprise, subject_id=ent.id,
                                            actor=actor, reissue=reissue)
        except IntegrityError as exc:
            raise AppError(ErrorCode.conflict, "企业码正在生成，请稍后重试") from exc
    return IssuedQr(token=token, content=code_url(token), expires_at=None)


async def current_enterprise_code(*, actor: Principal, enterprise_id: int) -> IssuedQr:
    await _can_manage_enterprise(actor, enterprise_id)
    code = await IssuedCode.get_or_none(active_key=_active_key(CodeKind.enterprise,
                                                               enterprise_id))
    if code is None:
        raise not_found("企业码")
    token = stored_token(code)
    return IssuedQr(token=token, content=code_url(token), expires_at=None)


async def revoke_enterprise_code(*, actor: Principal, enterprise_id: int) -> None:
    await _can_manage_enterprise(actor, enterprise_id)
    if not await _revoke_long(kind=CodeKind.enterprise, subject_id=enterprise_id, actor=actor):
        raise not_found("企业码")


async def issue_doorplate_codes(*, actor: Principal, plate_codes: list[str],
                                reissue: bool = False) -> list[tuple[DoorPlate, IssuedQr, bool]]:
    """Codes for many plates at once; a plate that already has one keeps it unless
    ``reissue`` (which voids the printed plate)."""
    plates = {p.code: p for p in await access_doorplates(actor, plate_codes, for_change=True)}
    wanted = list(plates)
    out: list[tuple[DoorPlate, IssuedQr, bool]] = []
    async with in_transaction():
        # Lock in a fixed order so two batches over overlapping plates can't deadlock.
        locked = await DoorPlate.filter(id__in=[p.id for p in plates.values()]) \
            .select_for_update().order_by("id")
        by_code = {p.code: p for p in locked}
        for c in wanted:
            plate = by_code[c]
            try:
                _, token, new = await _issue_long(kind=CodeKind.doorplate, subject_id=plate.id,
                                                  actor=actor, reissue=reissue)
            except IntegrityError as exc:
                raise AppError(ErrorCode.conflict, "门牌码正在生成，请稍后重试") from exc
            out.append((plate, IssuedQr(token=token, content=code_url(token), expires_at=None),
                        new))
    return out


async def doorplate_codes(*, actor: Principal, plate_codes: list[str]) -> list[tuple[DoorPlate,
                                                                                   IssuedQr]]:
    """The active codes of these plates, for printing. Plates without one are a 409: printing
    must not silently mint codes."""
    plates = {p.code: p for p in await access_doorplates(actor, plate_codes)}
    wanted = list(plates)
    codes = {c.doorplate_id: c for c in await IssuedCode.filter(  # type: ignore[attr-defined]
        active_key__in=[_active_key(CodeKind.doorplate, p.id) for p in plates.values()])}
    lacking = [c for c in wanted if plates[c].id not in codes]
    if lacking:
        raise AppError(ErrorCode.conflict, "部分门牌尚未生成二维码，请先批量生成",
                       fields={"plate_codes": "、".join(lacking)})
    out = []
    for c in wanted:
        token = stored_token(codes[plates[c].id])
        out.append((plates[c], IssuedQr(token=token, content=code_url(token), expires_at=None)))
    return out


async def revoke_doorplate_code(*, actor: Principal, plate_code: str) -> None:
    plate = await access_doorplate(actor, plate_code, for_change=True)
    if not await _revoke_long(kind=CodeKind.doorplate, subject_id=plate.id, actor=actor):
        raise not_found("门牌码")


async def wxacode(*, actor: Principal, kind: CodeKind, subject: str) -> bytes:
    """The mini-program code (getwxacodeunlimit) for an active long-lived code, for whoever
    may manage it."""
    if kind is CodeKind.enterprise:
        if not subject.isdigit():
            raise not_found("企业")
        await _can_manage_enterprise(actor, int(subject))
        code = await IssuedCode.get_or_none(active_key=_active_key(kind, int(subject)))
    else:
        plate = await access_doorplate(actor, subject)
        code = await IssuedCode.get_or_none(active_key=_active_key(kind, plate.id))
    if code is None:
        raise not_found("二维码")
    return await images.wxacode_image(code)
