"""Append-only record of reads and changes of personal data."""

from __future__ import annotations

from collections.abc import Iterable

from models.audit import AuditLog
from services.auth import Principal


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
