"""Append-only record of reads and changes of personal data."""

from __future__ import annotations

from collections.abc import Iterable

from models.audit import AuditLog
from models.users import Role
from services.auth import Principal
from services.errors import forbidden


async def record(
    *,
    actor: Principal | None,
    person_id: int | None,
    action: str,
    fields_read: Iterable[str],
    reason: str,
    request_id: str = "",
) -> AuditLog:
    return await AuditLog.create(
        actor_id=actor.user_id if actor else None,
        actor_roles=sorted(actor.roles) if actor else [],
        subject_person_id=person_id,
        action=action,
        fields_read=list(fields_read),
        reason=reason[:255],
        request_id=request_id[:64],
    )


async def entries_for_person(person_id: int, *, limit: int = 50) -> list[AuditLog]:
    return await AuditLog.filter(subject_person_id=person_id).order_by("-id").limit(limit)


async def search(*, actor: Principal, person_id: int | None = None, actor_id: int | None = None,
                 cursor: int | None = None, limit: int = 50) -> list[AuditLog]:
    """The audit log for admins, newest first: about one person, by one actor, or all.
    Returns up to ``limit + 1`` rows; the extra one tells the caller another page exists."""
    if not actor.has(Role.admin):
        raise forbidden()
    qs = AuditLog.all().order_by("-id")
    if person_id:
        qs = qs.filter(subject_person_id=person_id)
    if actor_id:
        qs = qs.filter(actor_id=actor_id)
    if cursor:
        qs = qs.filter(id__lt=cursor)
    return await qs.limit(limit + 1)
