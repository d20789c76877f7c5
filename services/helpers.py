"""帮办代办: matching a case to a helper, offers that are accepted, declined, transferred or
time out, the resident's proxy authorisation, and the helper's worklist.

One active helper per case is enforced twice: assigning locks the case row, and
``HelperAssignment.active_case_id`` (= case id while offered/accepted, NULL after) is unique,
so even a path that forgot the lock cannot give one case to two helpers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from models.cases import (
    ACTIVE_ASSIGNMENT,
    Case,
    CaseEvent,
    HelperAssignment,
    HelperAssignmentStatus,
    HelperProfile,
    ProxyAuthorization,
    ProxyScope,
)
from models.catalogue import Hall
from models.org import Membership, Position
from models.users import Person, Role, User, UserRole
from services import audit, clock, jobs, notifications, onbehalf, people, pii
from services.auth import Principal
from services.cases import TERMINAL, access_case
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.people import P_ID, P_NAME, P_PHONE
from services.scope import scope_of
from services.scrub import scrub_public
from services.settings import get_settings
from services.verification import require_verified

log = logging.getLogger(__name__)

H = HelperAssignmentStatus
HELPER_ROLES = (Role.helper, Role.community_worker)

# Demo profiles for the stub accounts (miniprogram_stub/demo_accounts.py creates them).
DEMO_PROFILES: dict[str, dict[str, Any]] = {
    "demo-helper": {
        "hall_code": "H-XF-000",
        "departments": ["市民政局", "市残联", "市人社局", "市医保局", "市卫生健康委"],
        "themes": ["养老服务", "残疾人服务"],
    },
    "demo-helper2": {
        "hall_code": "H-XF-000",
        "departments": ["市民政局", "市公安局", "市不动产登记事务中心", "市市场监管局"],
        "themes": ["养老服务", "户籍证件"],
    },
}


# ---------------------------------------------------------------------------------------------
# Profiles


async def _hall_exists(hall_code: str) -> None:
    if not await Hall.exists(code=hall_code):
        raise AppError(ErrorCode.validation_failed, fields={"hall_code": "大厅不存在"})


async def upsert_profile(
    *,
    actor: Principal,
    user_id: int,
    hall_code: str,
    departments: list[str],
    themes: list[str],
    on_duty: bool,
) -> HelperProfile:
    if not actor.has(Role.admin):
        raise forbidden()
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise not_found("用户")
    if not await UserRole.exists(user_id=user_id, role__in=HELPER_ROLES):
        raise AppError(ErrorCode.validation_failed, "请先授予该用户帮办员或社区工作者角色",
                       fields={"user_id": "不是帮办人员"})
    await _hall_exists(hall_code)
    scope = {"departments": sorted(set(departments)), "themes": sorted(set(themes))}
    profile, _ = await HelperProfile.update_or_create(
        user_id=user_id, defaults={"hall_code": hall_code, "scope": scope, "on_duty": on_duty}
    )
    return profile


async def ensure_profile(*, user_id: int, hall_code: str, departments: list[str],
                         themes: list[str]) -> HelperProfile:
    """Seeding: create once, never overwrite what an admin changed since."""
    profile, _ = await HelperProfile.get_or_create(
        user_id=user_id,
        defaults={"hall_code": hall_code,
                  "scope": {"departments": departments, "themes": themes}, "on_duty": True},
    )
    return profile


async def list_profiles(
    *, actor: Principal, hall_code: str | None
) -> list[tuple[HelperProfile, int]]:
    if not actor.has(Role.admin, Role.staff):
        raise forbidden()
    # Staff see the helpers of the halls in their scope (home hall or a membership there).
    sc = await scope_of(actor)
    members = await Membership.filter(sc.q(hall_id="hall_id"),
                                      position=Position.helper).values_list("user_id", flat=True)
    q = HelperProfile.all() if sc.everything else HelperProfile.filter(
        sc.q(hall_code="hall_code") | Q(user_id__in=list(members)))
    if hall_code:
        q = q.filter(hall_code=hall_code)
    profiles = await q.order_by("id").limit(500)
    loads = await _open_loads([p.user_id for p in profiles])  # type: ignore[attr-defined]
    return [(p, loads.get(p.user_id, 0)) for p in profiles]  # type: ignore[attr-defined]


async def set_on_duty(*, actor: Principal, on_duty: bool) -> HelperProfile:
    profile = await HelperProfile.get_or_none(user_id=actor.user_id)
    if profile is None:
        raise not_found("帮办人员档案")
    profile.on_duty = on_duty
    await profile.save(update_fields=["on_duty", "updated_at"])
    return profile


async def _open_loads(user_ids: list[int]) -> dict[int, int]:
    if not user_ids:
        return {}
    rows = (
        await HelperAssignment.filter(helper_id__in=user_ids, status__in=ACTIVE_ASSIGNMENT)
        .annotate(n=Count("id"))
        .group_by("helper_id")
        .values("helper_id", "n")
    )
    return {int(r["helper_id"]): int(r["n"]) for r in rows}


# ---------------------------------------------------------------------------------------------
# Assignment


async def serving_hall(hall_code: str) -> Q:
    """Helpers who serve a hall: their profile's home hall, or a 帮办员 membership there
    (models/org.py: a helper may belong to several halls)."""
    members = await Membership.filter(position=Position.helper,
                                      hall__code=hall_code).values_list("user_id", flat=True)
    return Q(hall_code=hall_code) | Q(user_id__in=[int(m) for m in members])  # type: ignore[call-overload]


def _serves(profile: HelperProfile, case: Case) -> bool:
    scope = profile.scope
    return case.department in scope.get("departments", []) or (
        bool(case.theme) and case.theme in scope.get("themes", [])
    )


async def _pick(case: Case, *, exclude: set[int]) -> int | None:
    """On duty, at the case's hall, serving its department or theme, fewest open cases."""
    profiles = await HelperProfile.filter(
        await serving_hall(case.hall_code), on_duty=True, user__is_active=True
    ).exclude(user_id__in=list(exclude) or [0])
    candidates = [p for p in profiles if _serves(p, case)]
    if not candidates:
        return None
    loads = await _open_loads([p.user_id for p in candidates])  # type: ignore[attr-defined]
    best = min(candidates, key=lambda p: (loads.get(p.user_id, 0), p.id))  # type: ignore[attr-defined]
    return int(best.user_id)  # type: ignore[attr-defined]


async def _offer(case_id: int, *, preferred: int | None = None,
                 note: str = "") -> HelperAssignment | None:
    """Offer the case to the next helper, unless it already has an active one."""
    now = clock.now()
    async with in_transaction() as conn:
        case = await Case.filter(id=case_id).select_for_update().using_db(conn).first()
        if case is None or case.status in TERMINAL or case.help_requested_at is None:
            return None
        active = await HelperAssignment.filter(active_case_id=case.id).using_db(conn).first()
        if active is not None:
            return active
        tried = set(
            await HelperAssignment.filter(case_id=case.id).using_db(conn).values_list(
                "helper_id", flat=True
            )
        )
        helper_id = preferred if preferred is not None else await _pick(
            case, exclude={int(t) for t in tried}  # type: ignore[call-overload]
        )
        if helper_id is None:
            return None
        assignment = await HelperAssignment.create(
            case_id=case.id, helper_id=helper_id, status=H.offered, active_case_id=case.id,
            offered_at=now, note=note[:500], using_db=conn,
        )
        await CaseEvent.create(
            case_id=case.id, actor_id=None, actor_kind="system",
            action="helper_offered",
            from_status=case.status, to_status=case.status, note=note[:500], using_db=conn,
        )
        await _notify_offer(assignment, case, using_db=conn)
    return assignment


async def assign(*, case_id: int, preferred: int | None = None,
                 note: str = "") -> HelperAssignment | None:
    try:
        assignment = await _offer(case_id, preferred=preferred, note=note)
    except IntegrityError:
        # Lost a race on the unique active slot: whoever won is the answer.
        return await HelperAssignment.filter(active_case_id=case_id).first()
    return assignment


async def _notify_offer(a: HelperAssignment, case: Case, *, using_db: BaseDBAsyncClient) -> None:
    """Promised in the offer's transaction (the outbox sends it after commit); keyed by the
    assignment, so finding the same active offer again (a retry, the sweep) doesn't message
    twice."""
    until = offer_expires_at(a)
    deadline = clock.local(until).strftime("%Y-%m-%d %H:%M") if until else ""
    await notifications.notify_after_commit(
        using_db=using_db,
        user_id=a.helper_id,  # type: ignore[attr-defined]
        template="helper_offered",
        data={"thing1": case.title[:20], "thing2": case.department[:20], "time3": deadline},
        dedup_key=f"helper_offer:{a.id}",
        hall_code=case.hall_code, department=case.department,
        page=f"pages/helper/offer?assignment_id={a.id}",
        action_path=f"/api/v1/helper/assignments/{a.id}/accept",
        body=f"新的帮办任务：{case.title}（{case.department}）。请在{deadline}前接单，逾时将转派他人。",
    )


async def _notify_assigned(a: HelperAssignment, case: Case, *,
                           using_db: BaseDBAsyncClient) -> None:
    """Tell the resident who took their case and how to reach them — masked, and in-app.
    Promised in the acceptance's transaction."""
    helper = await User.get(id=a.helper_id).select_related("person")  # type: ignore[attr-defined]
    name = helper.person.name_masked if helper.person else (helper.nickname or "帮办员")
    phone = helper.phone_masked or ""
    reach = f"联系电话{phone}，" if phone else ""
    await notifications.notify_after_commit(
        using_db=using_db,
        user_id=case.applicant_id,  # type: ignore[attr-defined]
        template="helper_assigned",
        data={"thing1": case.title[:20], "name2": name[:10], "phone_number3": phone or "-"},
        dedup_key=f"helper_assigned:{a.id}",
        hall_code=case.hall_code, department=case.department,
        page=f"pages/cases/detail?id={case.id}",
        body=f"帮办员{name}已接手您的办件“{case.title}”。{reach}"
             "也可在办件详情页与帮办员联系。",
    )


@dataclass
class HelpResult:
    case: Case
    assignment: HelperAssignment | None  # its helper loaded


async def request_help(*, actor: Principal, case_id: int, note: str = "") -> HelpResult:
    case = await access_case(actor, case_id)
    is_filer = case.submitted_by_id == actor.user_id  # type: ignore[attr-defined]
    if case.applicant_id != actor.user_id and not is_filer:  # type: ignore[attr-defined]
        raise forbidden("只有申请人或代为提交的社区工作者可以申请帮办")
    if case.status in TERMINAL:
        raise AppError(ErrorCode.illegal_transition, "办件已结束，无需帮办")
    if case.help_requested_at is None:
        await Case.filter(id=case.id, help_requested_at=None).update(
            help_requested_at=clock.now(), help_note=note.strip()[:500]
        )
        await CaseEvent.create(case_id=case.id, actor_id=actor.user_id,
                               actor_kind="applicant" if not is_filer else "helper",
                               action="help_requested", from_status=case.status,
                               to_status=case.status, note=note.strip()[:500])
    assignment = await assign(case_id=case.id)
    if assignment is not None:
        await assignment.fetch_related("helper")  # the answer names the helper
    await case.refresh_from_db()
    return HelpResult(case=case, assignment=assignment)


async def _my_assignment(actor: Principal, assignment_id: int) -> HelperAssignment:
    a = await HelperAssignment.get_or_none(id=assignment_id, helper_id=actor.user_id)
    if a is None:
        raise not_found("帮办任务")
    return a


async def _respond(actor: Principal, assignment_id: int, *, frm: tuple[H, ...], to: H,
                   note: str) -> HelperAssignment:
    a = await _my_assignment(actor, assignment_id)
    fields: dict[str, Any] = {"status": to, "responded_at": clock.now()}
    if to is not H.accepted:
        fields["active_case_id"] = None
    if note:
        fields["note"] = note.strip()[:500]
    async with in_transaction() as conn:
        # Conditional: an offer that just timed out can't also be accepted.
        changed = await HelperAssignment.filter(id=a.id, status__in=frm).using_db(conn).update(
            **fields)
        if not changed:
            raise AppError(ErrorCode.assignment_state)
        await a.refresh_from_db(using_db=conn)
        case = await Case.get(id=a.case_id).using_db(conn)  # type: ignore[attr-defined]
        await CaseEvent.create(case_id=case.id, actor_id=actor.user_id, actor_kind="helper",
                               action=f"helper_{to}", from_status=case.status,
                               to_status=case.status, note=note.strip()[:500], using_db=conn)
        if to is H.accepted:
            await _notify_assigned(a, case, using_db=conn)
    return a


async def accept(*, actor: Principal, assignment_id: int) -> HelperAssignment:
    return await _respond(actor, assignment_id, frm=(H.offered,), to=H.accepted, note="")


async def decline(*, actor: Principal, assignment_id: int, reason: str) -> HelperAssignment:
    a = await _respond(actor, assignment_id, frm=(H.offered,), to=H.declined, note=reason)
    await assign(case_id=a.case_id)  # type: ignore[attr-defined]
    return a


@dataclass
class TransferResult:
    transferred: HelperAssignment  # the helper's own assignment, now ``transferred``
    next: HelperAssignment | None  # the new offer, its helper loaded; None: nobody free yet


async def transfer(*, actor: Principal, assignment_id: int, note: str,
                   to_helper_user_id: int | None = None) -> TransferResult:
    """Hand the case on: the old assignment as it now stands and the new offer (None if
    nobody is free: the sweep retries)."""
    a = await _my_assignment(actor, assignment_id)
    if to_helper_user_id is not None:
        case = await Case.get(id=a.case_id)  # type: ignore[attr-defined]
        same_hall = await HelperProfile.filter(
            await serving_hall(case.hall_code), user_id=to_helper_user_id, on_duty=True
        ).exists()
        if not same_hall or to_helper_user_id == actor.user_id:
            raise AppError(ErrorCode.validation_failed, "接手人须为同一大厅在岗的帮办人员",
                           fields={"to_helper_user_id": "不可转交给该人员"})
    old = await _respond(actor, assignment_id, frm=(H.offered, H.accepted), to=H.transferred,
                         note=note)
    nxt = await assign(case_id=a.case_id, preferred=to_helper_user_id,  # type: ignore[attr-defined]
                       note=note)
    if nxt is not None:
        await nxt.fetch_related("helper")  # the answer names who took it over
    return TransferResult(transferred=old, next=nxt)


async def expire_offers(*, now: datetime | None = None) -> int:
    """Offers nobody answered in time move on; cases still waiting for help get another try."""
    now = now or clock.now()
    cutoff = now - timedelta(minutes=get_settings().helper_offer_timeout_minutes)
    moved = 0
    stale = await HelperAssignment.filter(status=H.offered, offered_at__lt=cutoff).limit(500)
    for a in stale:
        n = await HelperAssignment.filter(id=a.id, status=H.offered).update(
            status=H.expired, active_case_id=None, responded_at=now
        )
        if n:
            moved += 1
            case = await Case.get(id=a.case_id)  # type: ignore[attr-defined]
            await CaseEvent.create(case_id=case.id, actor_id=None, actor_kind="system",
                                   action="helper_expired", from_status=case.status,
                                   to_status=case.status, note="")
            await assign(case_id=case.id)
    waiting = await Case.filter(
        help_requested_at__not_isnull=True, status__not_in=list(TERMINAL)
    ).order_by("id").limit(500)
    if waiting:
        served = set(
            await HelperAssignment.filter(
                active_case_id__in=[c.id for c in waiting]
            ).values_list("active_case_id", flat=True)
        )
        for case in waiting:
            if case.id not in served:
                await assign(case_id=case.id)
    return moved


@jobs.periodic("helpers.offer_timeouts", every_seconds=60)
async def _sweep_offers() -> None:
    n = await expire_offers()
    if n:
        log.info("helper offers expired", extra={"count": n})


async def worklist(*, actor: Principal) -> list[HelperAssignment]:
    """My open assignments, soonest due first; cases without a due time last."""
    rows = await HelperAssignment.filter(
        helper_id=actor.user_id, status__in=ACTIVE_ASSIGNMENT
    ).select_related("case", "case__person").limit(500)
    far = datetime.max.replace(tzinfo=clock.SHANGHAI)
    rows.sort(key=lambda a: (a.case.due_at or far, a.offered_at, a.id))
    return rows


def masked_help_note(a: HelperAssignment) -> str:
    """The applicant's 求助说明 as a helper sees it on the work list: through ``scrub_public``
    with the applicant's name masked, since an offer reaches helpers the applicant never chose
    (an offer that is declined or times out moves on to the next). Who the applicant is and how
    to reach them: the audited reveal. ``a.case.person`` must be loaded (``worklist``)."""
    return scrub_public(a.case.help_note, names=people.names_to_mask(a.case.person))


def offer_expires_at(a: HelperAssignment) -> datetime | None:
    if a.status is not H.offered:
        return None
    return a.offered_at + timedelta(minutes=get_settings().helper_offer_timeout_minutes)


# ---------------------------------------------------------------------------------------------
# Proxy authorisation (代办授权)


async def grant_proxy(*, actor: Principal, helper_user_id: int, scopes: list[ProxyScope],
                      days: int, case_id: int | None = None) -> ProxyAuthorization:
    await require_verified(actor)  # only the proven person may hand out powers over them
    if helper_user_id == actor.user_id:
        raise AppError(ErrorCode.validation_failed, fields={"helper_user_id": "不能授权给自己"})
    if case_id is not None and not await Case.exists(id=case_id, applicant_id=actor.user_id):
        raise not_found("办件")
    async with in_transaction():
        # The helper's account row, as a role revocation takes it: a grant can't slip in
        # between the revocation's check and its end of the helper's authorisations.
        helper = await User.select_for_update().get_or_none(id=helper_user_id)
        if helper is None or not await UserRole.exists(user_id=helper_user_id,
                                                       role__in=HELPER_ROLES):
            raise not_found("帮办人员")
        return await ProxyAuthorization.create(
            grantor_id=actor.user_id, helper_id=helper_user_id,
            scope={"scopes": sorted({str(s) for s in scopes})}, case_id=case_id,
            expires_at=clock.now() + timedelta(days=days),
        )


async def end_helper_powers(user_id: int) -> list[int]:
    """A proxy who lost the role (inside the caller's transaction): the authorisations they
    hold are revoked, they go off duty, and their open assignments are withdrawn. Returns the
    cases to offer to someone else after commit."""
    now = clock.now()
    await ProxyAuthorization.filter(helper_id=user_id, revoked_at=None).update(revoked_at=now)
    await HelperProfile.filter(user_id=user_id).update(on_duty=False)
    open_ = await HelperAssignment.filter(helper_id=user_id, status__in=ACTIVE_ASSIGNMENT)
    for a in open_:
        await HelperAssignment.filter(id=a.id).update(status=H.transferred, active_case_id=None,
                                                      responded_at=now)
        case = await Case.get(id=a.case_id)  # type: ignore[attr-defined]
        await CaseEvent.create(case_id=case.id, actor_id=None, actor_kind="system",
                               action="helper_role_revoked", from_status=case.status,
                               to_status=case.status, note="帮办人员角色已撤销，另行派单")
    return [int(a.case_id) for a in open_]  # type: ignore[attr-defined]


async def after_helper_powers_ended(case_ids: list[int]) -> None:
    """Offer the withdrawn cases now; the offer sweep (``expire_offers``) is the durable path
    that picks up any case this misses."""
    for case_id in case_ids:
        try:
            await assign(case_id=case_id)
        except Exception:
            log.exception("re-offer after role revocation failed", extra={"case_id": case_id})


async def my_grants(*, actor: Principal) -> list[ProxyAuthorization]:
    return await ProxyAuthorization.filter(grantor_id=actor.user_id).order_by("-id").limit(200)


async def revoke_proxy(*, actor: Principal, authorization_id: int) -> ProxyAuthorization:
    row = await ProxyAuthorization.get_or_none(id=authorization_id, grantor_id=actor.user_id)
    if row is None:
        raise not_found("授权")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        await row.save(update_fields=["revoked_at"])
    return row


@dataclass(frozen=True)
class RevealedApplicant:
    person_id: int
    name: str
    id_number: str
    phone: str | None
    birth_date: date


async def reveal_applicant(*, actor: Principal, case_id: int, reason: str,
                           request_id: str = "") -> RevealedApplicant:
    """Unmasked applicant data for the helper doing the case, with the resident's
    view_personal authorisation; written to the audit log before anything is decrypted."""
    reason = reason.strip()
    if len(reason) < 4:
        raise AppError(ErrorCode.validation_failed, "查看完整个人信息须说明事由",
                       fields={"reason": "请填写查看事由（至少4个字）"})
    case = await Case.get_or_none(id=case_id)
    if case is None or not await HelperAssignment.exists(
        case_id=case_id, helper_id=actor.user_id, status=H.accepted
    ):
        raise not_found("办件")
    await onbehalf.may_act_for(actor, scope=ProxyScope.view_personal,
                               user_id=case.applicant_id,  # type: ignore[attr-defined]
                               case_id=case.id)
    person = await Person.get_or_none(id=case.person_id) if case.person_id else None  # type: ignore[attr-defined]
    if person is None:
        raise not_found("申请人")
    shown = ["name", "id_number"] + (["phone"] if person.phone_enc else [])
    await audit.record(actor=actor, person_id=person.id, action="case.applicant.reveal",
                       fields_read=shown, reason=f"case {case.id}: {reason}",
                       request_id=request_id)
    return RevealedApplicant(
        person_id=person.id,
        name=pii.decrypt(person.name_enc, purpose=P_NAME),
        id_number=pii.decrypt(person.id_number_enc, purpose=P_ID),
        phone=pii.decrypt(person.phone_enc, purpose=P_PHONE) if person.phone_enc else None,
        birth_date=person.birth_date,
    )
