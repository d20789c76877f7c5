"""办件: opening a case, moving it through its states, 一次性告知, 限时办结 and overdue alerts.

The state machine is the ``TRANSITIONS`` table: ``(state, action) -> Rule(next state, who may)``.
Anything not in the table is refused with ``illegal_transition`` (409). Every move is one
transaction that locks the case row, writes the new state and a timeline event together, and
only after commit sends the applicant a subscribe message (deduplicated per event).

Due time (限时办结): ``promised_days`` working days counted from acceptance by
``workcalendar.due_with_pauses``; each supplement request is a pause from the request until
the resubmission, so 补正期间不计时. While a pause is open the case has no due time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from models.approval import CaseRelease, CaseTask
from models.cases import (
    ACTIVE_ASSIGNMENT,
    Case,
    CaseAlert,
    CaseAlertLevel,
    CaseEvent,
    CaseStatus,
    HelperAssignment,
    HelperAssignmentStatus,
    ProxyAuthorization,
    ProxyScope,
    SupplementRequest,
)
from models.catalogue import Bundle, Hall, ServiceItem
from models.enterprises import EnterpriseAgent
from models.online import ApplicationDraft
from models.users import User
from services import clock, deskview, jobs, notifications, people, workcalendar
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.scope import scope_of
from services.scrub import scrub_public
from services.settings import get_settings

log = logging.getLogger(__name__)

S = CaseStatus


class Action(StrEnum):
    accept = "accept"
    start_review = "start_review"
    request_supplement = "request_supplement"
    resubmit = "resubmit"
    approve = "approve"
    reject = "reject"
    deliver = "deliver"
    close = "close"
    withdraw = "withdraw"
    reopen = "reopen"
    refuse = "refuse"  # 不予受理 (services/window/refusal.py)
    # 综窗 (issue 12): an approver sends the case back to the window with a reason.
    return_to_window = "return_to_window"


class ActorKind(StrEnum):
    applicant = "applicant"
    helper = "helper"  # an authorised proxy: assigned helper or the community worker who filed
    staff = "staff"


@dataclass(frozen=True)
class Rule:
    to: CaseStatus
    actors: frozenset[ActorKind]


_STAFF = frozenset({ActorKind.staff})
_APPLICANT_SIDE = frozenset({ActorKind.applicant, ActorKind.helper})
_WITHDRAWABLE = (S.submitted, S.accepted, S.under_review, S.supplement_requested, S.resubmitted)

TRANSITIONS: dict[tuple[CaseStatus, Action], Rule] = {
    (S.submitted, Action.accept): Rule(S.accepted, _STAFF),
    (S.accepted, Action.start_review): Rule(S.under_review, _STAFF),
    (S.resubmitted, Action.start_review): Rule(S.under_review, _STAFF),
    (S.accepted, Action.request_supplement): Rule(S.supplement_requested, _STAFF),
    (S.under_review, Action.request_supplement): Rule(S.supplement_requested, _STAFF),
    (S.resubmitted, Action.request_supplement): Rule(S.supplement_requested, _STAFF),
    (S.supplement_requested, Action.resubmit): Rule(S.resubmitted, _APPLICANT_SIDE),
    (S.under_review, Action.approve): Rule(S.approved, _STAFF),
    (S.under_review, Action.reject): Rule(S.rejected, _STAFF),
    (S.approved, Action.deliver): Rule(S.result_delivered, _STAFF),
    (S.rejected, Action.deliver): Rule(S.result_delivered, _STAFF),
    (S.result_delivered, Action.close): Rule(S.closed, _STAFF),
    **{(s, Action.withdraw): Rule(S.withdrawn, _APPLICANT_SIDE) for s in _WITHDRAWABLE},
    (S.closed, Action.reopen): Rule(
        S.under_review, frozenset({ActorKind.applicant, ActorKind.staff})
    ),
    # --- 综窗 at the window (issue 12, front half; services/window/) -------------------------
    # 一次性告知 before acceptance: the case waits for the materials without a clock running;
    # handing them in (the applicant online, or the clerk taking them at the desk) puts it
    # back to submitted. Accepting from here is 容缺/承诺 acceptance (services/window/
    # acceptance.py checks that only tolerable or promised materials are still missing).
    (S.submitted, Action.request_supplement): Rule(S.materials_pending, _STAFF),
    (S.materials_pending, Action.resubmit): Rule(S.submitted, _APPLICANT_SIDE | _STAFF),
    (S.materials_pending, Action.accept): Rule(S.accepted, _STAFF),
    (S.materials_pending, Action.withdraw): Rule(S.withdrawn, _APPLICANT_SIDE),
    # 不予受理: never silent, always with a ground from the item (services/window/refusal.py).
    (S.submitted, Action.refuse): Rule(S.not_accepted, _STAFF),
    (S.materials_pending, Action.refuse): Rule(S.not_accepted, _STAFF),
    # --- end 综窗 ------------------------------------------------------------------------------
    # --- 综窗 behind the scenes (issue 12, services/approval) -------------------------------
    # An approver sends the case back to the window (a reason is required); the window clears
    # it up and sends it on (start_review), asks the applicant for materials, or the applicant
    # withdraws. While returned the promised clock keeps its due time but raises no alerts.
    (S.accepted, Action.return_to_window): Rule(S.returned, _STAFF),
    (S.under_review, Action.return_to_window): Rule(S.returned, _STAFF),
    (S.resubmitted, Action.return_to_window): Rule(S.returned, _STAFF),
    (S.returned, Action.start_review): Rule(S.under_review, _STAFF),
    (S.returned, Action.request_supplement): Rule(S.supplement_requested, _STAFF),
    (S.returned, Action.withdraw): Rule(S.withdrawn, _APPLICANT_SIDE),
}

# What a proxy needs in the resident's authorisation to take each applicant-side action.
PROXY_SCOPE: dict[Action, ProxyScope] = {
    Action.resubmit: ProxyScope.supplement,
    Action.withdraw: ProxyScope.withdraw,
}

TERMINAL = (S.closed, S.withdrawn, S.not_accepted)
# The other case-state sets, here once so figures and alerts can't miss a state a new rule adds.
DECIDED = (S.approved, S.rejected, S.result_delivered)
UNFINISHED = tuple(s for s in S if s not in TERMINAL and s not in DECIDED)
# States in which the promised time is running (alerts are raised only for these).
CLOCK_RUNNING = (S.accepted, S.under_review, S.resubmitted)

STATUS_LABELS: dict[CaseStatus, str] = {
    S.submitted: "已提交",
    S.accepted: "已受理",
    S.under_review: "审查中",
    S.supplement_requested: "待补正",
    S.resubmitted: "已补正",
    S.approved: "已批准",
    S.rejected: "不予批准",
    S.result_delivered: "结果已送达",
    S.closed: "已办结",
    S.withdrawn: "已撤回",
    S.materials_pending: "待补齐材料",
    S.not_accepted: "不予受理",
    S.returned: "已退回窗口",
}

ACTION_LABELS: dict[Action, str] = {
    Action.accept: "受理",
    Action.start_review: "开始审查",
    Action.request_supplement: "一次性告知补正",
    Action.resubmit: "补正材料",
    Action.approve: "批准",
    Action.reject: "不予批准",
    Action.deliver: "送达结果",
    Action.close: "办结",
    Action.withdraw: "撤回",
    Action.reopen: "重新办理",
    Action.refuse: "不予受理",
    Action.return_to_window: "退回窗口",
}

_ACTOR_ORDER = (ActorKind.applicant, ActorKind.helper, ActorKind.staff)


def rule_for(status: CaseStatus, action: Action) -> Rule:
    """The table lookup, or ``illegal_transition``."""
    rule = TRANSITIONS.get((status, action))
    if rule is None:
        raise AppError(
            ErrorCode.illegal_transition,
            f"办件当前为“{STATUS_LABELS[status]}”，不能{ACTION_LABELS[action]}",
        )
    return rule


# ---------------------------------------------------------------------------------------------
# Who is the caller to this case


@dataclass(frozen=True)
class Access:
    can_view: bool
    kinds: frozenset[ActorKind]
    proxy_scopes: frozenset[ProxyScope] = field(default_factory=frozenset)


async def proxy_scopes(*, grantor_id: int, helper_id: int, case_id: int | None) -> set[ProxyScope]:
    """Scopes the resident has granted this helper, valid now, for this case (or any case)."""
    q = ProxyAuthorization.filter(
        grantor_id=grantor_id, helper_id=helper_id, revoked_at=None, expires_at__gt=clock.now()
    )
    q = q.filter(Q(case_id=None) | Q(case_id=case_id)) if case_id else q.filter(case_id=None)
    scopes: set[ProxyScope] = set()
    for row in await q:
        for s in row.scope.get("scopes", []):
            if s in ProxyScope.__members__:
                scopes.add(ProxyScope(s))
    return scopes


async def access(actor: Principal, case: Case) -> Access:
    kinds: set[ActorKind] = set()
    view = False
    if actor.is_staff and (await scope_of(actor)).covers(hall_code=case.hall_code,
                                                         department=case.department):
        # Staff act on the cases of their hall, department or region only (services/scope.py).
        kinds.add(ActorKind.staff)
        view = True
    if case.applicant_id is None and case.person_id is not None:  # type: ignore[attr-defined]
        # A walk-in opened at the window before the person had a verified account: theirs
        # once they bind (face-verified), never by a typed-in identity.
        from services.window import intake

        if await intake.adopt_walk_ins(actor.user_id, case_id=case.id):
            case.applicant_id = actor.user_id
    if case.applicant_id == actor.user_id:  # type: ignore[attr-defined]
        kinds.add(ActorKind.applicant)
        view = True
    scopes: set[ProxyScope] = set()
    if actor.user_id != case.applicant_id:  # type: ignore[attr-defined]
        statuses = {
            a.status
            for a in await HelperAssignment.filter(case_id=case.id, helper_id=actor.user_id)
        }
        assigned = HelperAssignmentStatus.accepted in statuses
        filed = case.submitted_by_id == actor.user_id  # type: ignore[attr-defined]
        if filed or any(
            s in (HelperAssignmentStatus.offered, HelperAssignmentStatus.accepted,
                  HelperAssignmentStatus.done)
            for s in statuses
        ):
            view = True
        if assigned or filed:
            scopes = await proxy_scopes(
                grantor_id=case.applicant_id,  # type: ignore[attr-defined]
                helper_id=actor.user_id,
                case_id=case.id,
            )
            if scopes:
                kinds.add(ActorKind.helper)
    return Access(can_view=view, kinds=frozenset(kinds), proxy_scopes=frozenset(scopes))


def allowed_kind(acc: Access, action: Action, rule: Rule) -> ActorKind:
    for kind in _ACTOR_ORDER:
        if kind not in acc.kinds or kind not in rule.actors:
            continue
        if kind is ActorKind.helper:
            needed = PROXY_SCOPE.get(action)
            if needed is None or needed not in acc.proxy_scopes:
                continue
        return kind
    if ActorKind.helper in rule.actors and not acc.kinds & {ActorKind.applicant, ActorKind.staff}:
        # A helper or community worker acting without the resident's say-so.
        raise AppError(ErrorCode.proxy_authorization_required)
    raise forbidden()


def available_actions(status: CaseStatus, acc: Access) -> list[Action]:
    out = []
    for (s, action), rule in TRANSITIONS.items():
        if s != status:
            continue
        try:
            allowed_kind(acc, action, rule)
        except AppError:
            continue
        out.append(action)
    return out


async def case_and_access(actor: Principal, case_id: int, *, for_change: bool = False,
                          lock: bool = False) -> tuple[Case, Access]:
    """``access_case`` that also says what the caller is to the case (applicant, helper,
    staff), for rules that differ by side (the online application's views and reviews).
    ``lock``: SELECT ... FOR UPDATE, inside the caller's ``in_transaction()`` (Tortoise routes
    the query to it through the context)."""
    q = Case.filter(id=case_id)
    case = await (q.select_for_update() if lock else q).first()
    if case is None:
        raise not_found("办件")
    acc = await access(actor, case)
    if not acc.can_view:
        raise not_found("办件")
    if for_change and not acc.kinds:
        raise AppError(ErrorCode.proxy_authorization_required)
    return case, acc


async def access_case(actor: Principal, case_id: int, *, for_change: bool = False,
                      lock: bool = False) -> Case:
    """The one decision on who sees a case: the applicant, whoever filed it, a helper it was
    offered or assigned to, staff whose scope covers its hall or department; anyone else gets
    not_found (absent and not-yours look the same). ``for_change``: the caller must also be
    able to act on it (applicant, staff in scope, or a helper holding the applicant's proxy
    authorization), else proxy_authorization_required."""
    case, _ = await case_and_access(actor, case_id, for_change=for_change, lock=lock)
    return case


# ---------------------------------------------------------------------------------------------
# Opening


@dataclass(frozen=True)
class _Subject:
    title: str
    department: str
    theme: str
    subject: str
    promised_days: int
    halls: set[str]
    materials: list[str]


async def _items_of_bundle(bundle: Bundle) -> list[ServiceItem]:
    codes = [str(c) for c in bundle.item_codes]
    items = {i.code: i for i in await ServiceItem.filter(code__in=codes)}
    return [items[c] for c in codes if c in items]


def _material_names(items: Sequence[ServiceItem]) -> list[str]:
    # A bundle's merged list: one 居民身份证 even when every item asks for it.
    seen: dict[str, None] = {}
    for it in items:
        for m in it.materials:
            name = m.get("name") if isinstance(m, dict) else None
            if isinstance(name, str) and name:
                seen.setdefault(name, None)
    return list(seen)


async def _subject(item_code: str | None, bundle_code: str | None) -> _Subject:
    if (item_code is None) == (bundle_code is None):
        raise AppError(ErrorCode.validation_failed, "请选择一个事项或一件事",
                       fields={"item_code": "事项与一件事二选一"})
    if item_code is not None:
        item = await ServiceItem.get_or_none(code=item_code, is_active=True)
        if item is None:
            raise AppError(ErrorCode.validation_failed, fields={"item_code": "事项不存在"})
        return _Subject(item.name, item.department, item.theme, item.subject,
                        item.promised_limit_days, set(item.hall_codes), _material_names([item]))
    bundle = await Bundle.get_or_none(code=bundle_code, is_active=True)
    items = await _items_of_bundle(bundle) if bundle else []
    if bundle is None or not items:
        raise AppError(ErrorCode.validation_failed, fields={"bundle_code": "一件事不存在"})
    return _Subject(
        bundle.name,
        items[0].department,
        items[0].theme,
        bundle.subject,
        # One case, one promise: the slowest item sets it.
        max(it.promised_limit_days for it in items),
        # 一窗受理: the bundle is received wherever its lead item is, and passed on from there.
        set(items[0].hall_codes),
        _material_names(items),
    )


async def materials_of(case: Case) -> list[str]:
    return await material_names(item_code=case.item_code, bundle_code=case.bundle_code)


async def material_names(*, item_code: str | None, bundle_code: str | None) -> list[str]:
    """The material list an application for this item or bundle follows (a bundle: merged)."""
    if item_code:
        item = await ServiceItem.get_or_none(code=item_code)
        return _material_names([item]) if item else []
    bundle = await Bundle.get_or_none(code=bundle_code)
    return _material_names(await _items_of_bundle(bundle)) if bundle else []


async def open_case(
    *,
    actor: Principal,
    hall_code: str,
    item_code: str | None = None,
    bundle_code: str | None = None,
    applicant_user_id: int | None = None,
    enterprise_id: int | None = None,
    note: str = "",
    attach: Callable[[Case, BaseDBAsyncClient], Awaitable[None]] | None = None,
) -> Case:
    """``attach`` runs inside the opening transaction (全程网办: the form and the materials
    land with the case or not at all)."""
    subj = await _subject(item_code, bundle_code)
    if hall_code not in subj.halls or not await Hall.exists(code=hall_code, is_active=True):
        raise AppError(ErrorCode.validation_failed, "所选大厅不办理该事项",
                       fields={"hall_code": "该大厅不办理此事项"})
    kind = ActorKind.applicant
    applicant_id = actor.user_id
    if applicant_user_id is not None and applicant_user_id != actor.user_id:
        # Filing in someone else's name needs their recorded authorisation (and the proxy
        # role); checked before looking the user up so an id without one reveals nothing.
        # Imported here: services.onbehalf reads this module's proxy_scopes.
        from services import onbehalf

        await onbehalf.may_act_for(actor, scope=ProxyScope.apply, user_id=applicant_user_id)
        kind = ActorKind.helper
        applicant_id = applicant_user_id
    applicant = await User.get_or_none(id=applicant_id, is_active=True)
    if applicant is None:
        raise not_found("申请人")
    person_id = applicant.person_id  # type: ignore[attr-defined]
    if subj.subject == "enterprise":
        if enterprise_id is None:
            raise AppError(ErrorCode.validation_failed, "企业事项须选择办理的企业",
                           fields={"enterprise_id": "必填"})
        if not await EnterpriseAgent.exists(enterprise_id=enterprise_id, user_id=applicant_id):
            raise not_found("企业")
    else:
        if person_id is None:
            raise AppError(ErrorCode.identity_required)
        enterprise_id = None
    async with in_transaction() as conn:
        case = await Case.create(
            applicant_id=applicant_id,
            person_id=person_id,
            enterprise_id=enterprise_id,
            submitted_by_id=actor.user_id,
            item_code=item_code,
            bundle_code=bundle_code,
            title=subj.title,
            department=subj.department,
            theme=subj.theme,
            hall_code=hall_code,
            status=S.submitted,
            promised_days=subj.promised_days,
            using_db=conn,
        )
        event = await CaseEvent.create(case=case, actor_id=actor.user_id, actor_kind=kind,
                                       action="submit", from_status=None, to_status=S.submitted,
                                       note=note[:500], using_db=conn)
        if attach is not None:
            await attach(case, conn)
        await _notify(case, event, using_db=conn)
    await deskview.changed(case.person_id)  # type: ignore[attr-defined]
    return case


# ---------------------------------------------------------------------------------------------
# Moving


async def pauses_of(case: Case,
                    conn: object | None = None) -> list[tuple[datetime, datetime | None]]:
    """The supplement pauses since the case was (last) accepted: 补正期间不计时."""
    q = SupplementRequest.filter(case_id=case.id, requested_at__gte=case.accepted_at)
    rows = await (q.using_db(conn) if conn else q).order_by("requested_at")  # type: ignore[arg-type]
    return [(r.requested_at, r.resolved_at) for r in rows]


async def _due(case: Case, conn: object | None = None) -> datetime | None:
    if case.accepted_at is None:
        return None
    pauses = await pauses_of(case, conn)
    return workcalendar.due_with_pauses(case.accepted_at, case.promised_days, pauses)


@dataclass(frozen=True)
class Moved:
    """What a move hook sees: the case already carrying its new state (not yet written)."""

    case: Case
    action: Action
    before: CaseStatus
    actor: Principal
    now: datetime
    note: str
    # The move's transaction: a hook's writes pass it (docs/conventions.md).
    conn: BaseDBAsyncClient
    # True when services/approval decided the move itself (a task's outcome), so the hook
    # must not send it back through the department check it already made.
    by_approval: bool


# Hooks run inside the move's transaction, after the table allowed it and before the row is
# written; raising refuses the move and rolls everything back. services/approval registers
# the back office here (route on accept, keep sub-tasks in step, decide through departments).
MOVE_HOOKS: list[Callable[[Moved], Awaitable[None]]] = []


# The moves a person must act on or has waited for get their own template (and, when WeChat
# can't deliver them, an SMS: services.messages.KINDS says which matter).
_EVENT_TEMPLATES = {S.supplement_requested: "case_supplement", S.approved: "case_result",
                    S.rejected: "case_result",
                    # 综窗: a notice before acceptance must be acted on; a refusal is a decision.
                    S.materials_pending: "case_supplement", S.not_accepted: "case_result"}


async def _notify(case: Case, event: CaseEvent, *, using_db: BaseDBAsyncClient) -> None:
    if case.applicant_id is None:  # type: ignore[attr-defined]
        return  # a walk-in without an account yet: they read it at the desk and on paper
    to = S(event.to_status)
    await notifications.notify_after_commit(
        using_db=using_db,
        user_id=case.applicant_id,  # type: ignore[attr-defined]
        template=_EVENT_TEMPLATES.get(to, "case_status"),
        data={
            "case_id": case.id,
            "title": case.title,
            "status": STATUS_LABELS[to],
            "note": event.note[:20],
        },
        dedup_key=f"case:{case.id}:event:{event.id}",
        hall_code=case.hall_code, department=case.department,
        page=f"pages/cases/detail?id={case.id}",
    )
    if to in (S.approved, S.rejected):
        await notifications.notify_after_commit(
            using_db=using_db,
            user_id=case.applicant_id,  # type: ignore[attr-defined]
            template="rating_invite",
            data={"thing1": case.title[:20], "thing2": "请为本次办理评价"},
            # 一事一评: one invitation per case, however often it is reopened and decided.
            dedup_key=f"rating_invite:case:{case.id}",
            hall_code=case.hall_code, department=case.department,
            page=f"pages/ratings/new?case_id={case.id}",
            body=f"“{case.title}”已办理完毕，欢迎对本次服务作出评价（好差评）。")


async def _move(
    *,
    actor: Principal,
    case_id: int,
    action: Action,
    note: str,
    expected_version: int | None = None,
    supplement: tuple[list[dict[str, str]], str | None] | None = None,
    reopen_reason: str | None = None,
    deliver: Callable[[Case, SupplementRequest, BaseDBAsyncClient], Awaitable[None]] | None = None,
    on_locked: Callable[[Case, BaseDBAsyncClient], Awaitable[None]] | None = None,
    by_approval: bool = False,
) -> Case:
    """``on_locked``: the window's extra rule for this move (容缺/承诺 acceptance, refusal),
    run after the table and the caller are checked, inside the transaction and the lock, so
    its rows commit or roll back with the move."""
    # Imported here: services.window reads this module.
    from services.window import ownership, release

    now = clock.now()
    async with in_transaction() as conn:
        if by_approval:
            # services/approval already decided who may (an approver of the task's department,
            # which for a bundle need not be the case's own department).
            found = await Case.filter(id=case_id).select_for_update().first()
            if found is None:
                raise not_found("办件")
            case = found
            rule = rule_for(case.status, action)
            kind = ActorKind.staff
        else:
            case, acc = await case_and_access(actor, case_id, lock=True)
            rule = rule_for(case.status, action)
            kind = allowed_kind(acc, action, rule)
        if expected_version is not None and expected_version != case.version:
            raise AppError(ErrorCode.case_changed)
        before = case.status
        if on_locked is not None:
            await on_locked(case, conn)
        elif (action is Action.accept and before is S.materials_pending) or (
                action is Action.refuse):
            # Only the window's own paths may accept with materials missing or refuse: they
            # record what is missing or the ground. A bare transition would skip that.
            raise AppError(ErrorCode.validation_failed, "请通过综窗受理或不予受理办理",
                           fields={"action": "请使用 /api/v1/window 接口"})
        if action is Action.deliver:
            blockers = await release.result_release_blockers(case)
            if blockers:
                raise AppError(ErrorCode.window_result_blocked, "；".join(blockers))
        if kind is ActorKind.staff:
            # 首问负责: the first staff member to act on a request owns it.
            await ownership.first_receiver(case, actor.user_id, using_db=conn)
        if action is Action.accept:
            case.accepted_at = now
        elif action is Action.request_supplement:
            assert supplement is not None
            items, new_reason = supplement
            seq = await SupplementRequest.filter(case_id=case.id).using_db(conn).count() + 1
            if seq > 1 and not (new_reason or "").strip():
                # 一次性告知: the first notice must have listed everything; a second one has to
                # say why this is a new requirement, and supervisors see it.
                raise AppError(
                    ErrorCode.validation_failed,
                    "已一次性告知过补正材料，再次要求补正须说明新增要求的理由",
                    fields={"new_requirement_reason": "再次补正须说明理由"},
                )
            await SupplementRequest.create(
                case_id=case.id, requested_by_id=actor.user_id, sequence=seq,
                items={"items": items},
                new_requirement_reason=(new_reason or "").strip()[:500] if seq > 1 else None,
                requested_at=now, using_db=conn,
            )
        elif action is Action.resubmit:
            if deliver is None and await ApplicationDraft.filter(case_id=case.id).using_db(
                    conn).exists():
                # An online application is supplemented online, with exactly the materials
                # the notice named (services/online.py), not by a bare state change.
                raise AppError(ErrorCode.materials_mismatch,
                               "网上申请的办件请上传补正告知所列的材料",
                               fields={"action": "请使用在线补正接口上传材料"})
            if deliver is not None:
                # 全程网办: the materials answering the open notice, in this same transaction.
                open_sup = await SupplementRequest.filter(
                    case_id=case.id, resolved_at=None).using_db(conn).order_by("-sequence").first()
                if open_sup is not None:
                    await deliver(case, open_sup, conn)
            await SupplementRequest.filter(case_id=case.id, resolved_at=None).using_db(
                conn
            ).update(resolved_at=now)
        elif action in (Action.close, Action.withdraw):
            case.closed_at = now
            await HelperAssignment.filter(case_id=case.id, status__in=ACTIVE_ASSIGNMENT).using_db(
                conn
            ).update(status=HelperAssignmentStatus.done, active_case_id=None, responded_at=now)
        elif action is Action.reopen:
            assert reopen_reason is not None
            closed_at = case.closed_at or now
            window = timedelta(days=get_settings().case_reopen_days)
            if now > closed_at + window:
                raise AppError(ErrorCode.reopen_window_closed)
            case.closed_at = None
            case.reopen_count += 1
            # A reopened case is accepted afresh: a new promised period from today.
            case.accepted_at = now
            note = reopen_reason
            # The old alerts and help request belonged to the first round; ask again if needed.
            case.help_requested_at = None
            await CaseAlert.filter(case_id=case.id).using_db(conn).delete()
        case.status = rule.to
        case.due_at = await _due(case, conn)
        for hook in MOVE_HOOKS:
            await hook(Moved(case=case, action=action, before=before, actor=actor, now=now,
                             note=note, by_approval=by_approval, conn=conn))
        update = {
            "status": case.status, "accepted_at": case.accepted_at, "due_at": case.due_at,
            "closed_at": case.closed_at, "reopen_count": case.reopen_count,
            "help_requested_at": case.help_requested_at,
            "version": case.version + 1, "updated_at": now,
        }
        # Conditional on the version we read: the row lock makes this always match on
        # MySQL; it is the guard where the backend has no row locks.
        moved = await Case.filter(id=case.id, version=case.version).using_db(conn).update(
            **update
        )
        if not moved:
            raise AppError(ErrorCode.case_changed)
        case.version += 1
        event = await CaseEvent.create(
            case_id=case.id, actor_id=actor.user_id, actor_kind=kind, action=action,
            from_status=before, to_status=case.status, note=note.strip()[:500], using_db=conn,
        )
        await _notify(case, event, using_db=conn)
    await deskview.changed(case.person_id)  # type: ignore[attr-defined]
    return case


async def move_decided(*, actor: Principal, case_id: int, action: Action, note: str = "") -> Case:
    """A move services/approval has already authorised (a department's decision on its task,
    a release checked against the applicant's identity): the table still decides whether the
    case can make it, and the timeline names ``actor``."""
    return await _move(actor=actor, case_id=case_id, action=action, note=note, by_approval=True)


async def transition(
    *,
    actor: Principal,
    case_id: int,
    action: Action,
    note: str = "",
    expected_version: int | None = None,
) -> Case:
    if action is Action.request_supplement:
        raise AppError(ErrorCode.validation_failed, "补正请使用一次性告知接口，列明全部材料",
                       fields={"action": "请使用 supplement-requests 接口"})
    if action is Action.reopen:
        raise AppError(ErrorCode.validation_failed, "重新办理须说明理由",
                       fields={"action": "请使用 reopen 接口"})
    if action is Action.return_to_window and len(note.strip()) < 4:
        raise AppError(ErrorCode.validation_failed, "退回窗口须说明理由",
                       fields={"note": "请填写退回理由（至少4个字）"})
    return await _move(actor=actor, case_id=case_id, action=action, note=note,
                       expected_version=expected_version)


async def resubmit(
    *,
    actor: Principal,
    case_id: int,
    note: str,
    deliver: Callable[[Case, SupplementRequest, BaseDBAsyncClient], Awaitable[None]],
) -> Case:
    """补正 with the materials themselves: ``deliver`` attaches them inside the move."""
    return await _move(actor=actor, case_id=case_id, action=Action.resubmit, note=note,
                       deliver=deliver)


async def request_supplement(
    *,
    actor: Principal,
    case_id: int,
    items: Sequence[tuple[str, str]],
    new_requirement_reason: str | None = None,
    note: str = "",
) -> Case:
    """一次性告知: every missing or wrong material, each with its reason, in one notice."""
    case = await access_case(actor, case_id)
    known = set(await materials_of(case))
    errors: dict[str, str] = {}
    seen: set[str] = set()
    clean: list[dict[str, str]] = []
    for i, (material, reason) in enumerate(items):
        material, reason = material.strip(), reason.strip()
        if material not in known:
            errors[f"items.{i}.material"] = "不在该事项的材料清单中"
        elif material in seen:
            errors[f"items.{i}.material"] = "重复列出"
        if len(reason) < 2:
            errors[f"items.{i}.reason"] = "请说明缺少或不符合的原因"
        seen.add(material)
        clean.append({"material": material, "reason": reason})
    if not clean:
        errors["items"] = "至少列出一项材料"
    if errors:
        raise AppError(ErrorCode.validation_failed, "补正告知须列明材料及原因", fields=errors)
    return await _move(actor=actor, case_id=case_id, action=Action.request_supplement,
                       note=note, supplement=(clean, new_requirement_reason))


async def reopen(*, actor: Principal, case_id: int, reason: str) -> Case:
    reason = reason.strip()
    if len(reason) < 4:
        raise AppError(ErrorCode.validation_failed, "重新办理须说明理由",
                       fields={"reason": "请填写理由（至少4个字）"})
    return await _move(actor=actor, case_id=case_id, action=Action.reopen, note=reason,
                       reopen_reason=reason)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class CaseView:
    case: Case
    access: Access
    events: list[CaseEvent]
    supplements: list[SupplementRequest]
    missing: list[dict[str, str]]
    actions: list[Action]
    helper: HelperAssignment | None
    reopen_until: datetime | None
    # 综窗 (issue 12): each approving department's progress, and how the result leaves.
    tasks: list[CaseTask] = field(default_factory=list)
    release: CaseRelease | None = None


def timeline_notes(view: CaseView) -> list[str]:
    """The notes on a case's timeline as this viewer may read them: whole for the applicant
    (their own case), through ``scrub_public`` with the applicant's name masked for everyone
    else — a helper the applicant never chose, staff — since an applicant's note or a clerk's
    ("已电话联系张建国13812345678") repeats what the masked fields hide. ``view.case.person``
    is loaded by ``case_view``."""
    if ActorKind.applicant in view.access.kinds:
        return [e.note for e in view.events]
    names = people.names_to_mask(view.case.person)
    return [scrub_public(e.note, names=names) for e in view.events]


async def supplements_of(case_id: int) -> list[SupplementRequest]:
    """A case's 补正 notices in the order they were sent (read after its access check)."""
    return await SupplementRequest.filter(case_id=case_id).order_by("sequence")


async def get_case(*, actor: Principal, case_id: int) -> CaseView:
    case, acc = await case_and_access(actor, case_id)
    await case.fetch_related("person", "enterprise")
    events = await CaseEvent.filter(case_id=case.id).order_by("id")
    sups = await supplements_of(case.id)
    open_sup = next((s for s in sups if s.resolved_at is None), None)
    missing = list(open_sup.items.get("items", [])) if open_sup else []
    helper = (
        await HelperAssignment.filter(case_id=case.id, status__in=ACTIVE_ASSIGNMENT)
        .select_related("helper")
        .first()
    )
    reopen_until = None
    if case.status is S.closed and case.closed_at is not None:
        reopen_until = case.closed_at + timedelta(days=get_settings().case_reopen_days)
    return CaseView(case=case, access=acc, events=events, supplements=sups, missing=missing,
                    actions=available_actions(case.status, acc), helper=helper,
                    reopen_until=reopen_until,
                    tasks=await CaseTask.filter(case_id=case.id).order_by("id"),
                    release=await CaseRelease.get_or_none(case_id=case.id))


async def my_cases(
    *, actor: Principal, status: CaseStatus | None, cursor: int | None, limit: int
) -> tuple[list[Case], int | None]:
    """Cases I applied for, and those I filed for someone else."""
    from services.window import intake

    await intake.adopt_walk_ins(actor.user_id)
    q = Case.filter(Q(applicant_id=actor.user_id) | Q(submitted_by_id=actor.user_id))
    return await _page(q, status=status, cursor=cursor, limit=limit)


async def staff_cases(
    *,
    actor: Principal,
    status: CaseStatus | None,
    hall_code: str | None,
    overdue: bool | None,
    cursor: int | None,
    limit: int,
) -> tuple[list[Case], int | None]:
    if not actor.is_staff:
        raise forbidden()
    q = Case.filter((await scope_of(actor)).q(hall_code="hall_code", department="department"))
    if hall_code:
        q = q.filter(hall_code=hall_code)
    if overdue is not None:
        late = Q(status__in=CLOCK_RUNNING, due_at__lt=clock.now())
        q = q.filter(late) if overdue else q.filter(~late)
    return await _page(q, status=status, cursor=cursor, limit=limit)


async def _page(q: QuerySet[Case], *, status: CaseStatus | None, cursor: int | None,
                limit: int) -> tuple[list[Case], int | None]:
    if status is not None:
        q = q.filter(status=status)
    if cursor is not None:
        q = q.filter(id__lt=cursor)
    rows: list[Case] = await q.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def repeat_supplements(
    *, actor: Principal, cursor: int | None, limit: int
) -> tuple[list[SupplementRequest], int | None]:
    """Second and later notices on one case, for supervisors: each should be rare."""
    if not actor.is_staff:
        raise forbidden()
    in_scope = (await scope_of(actor)).q(hall_code="case__hall_code",
                                         department="case__department")
    q = SupplementRequest.filter(in_scope, sequence__gte=2).select_related("case")
    if cursor is not None:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


# ---------------------------------------------------------------------------------------------
# Overdue alerts


async def raise_due_alerts(*, now: datetime | None = None) -> int:
    """One alert per case per level; re-running (or two sweepers racing) adds nothing."""
    now = now or clock.now()
    soon = now + timedelta(hours=get_settings().case_due_soon_hours)
    created = 0
    levels = (
        (CaseAlertLevel.overdue, Q(due_at__lt=now)),
        (CaseAlertLevel.due_soon, Q(due_at__gte=now, due_at__lte=soon)),
    )
    for level, cond in levels:
        rows = await Case.filter(cond, status__in=CLOCK_RUNNING).values_list("id", "due_at")
        if not rows:
            continue
        have = set(
            await CaseAlert.filter(case_id__in=[r[0] for r in rows], level=level).values_list(
                "case_id", flat=True
            )
        )
        for case_id, due_at in rows:
            if case_id in have:
                continue
            try:
                await CaseAlert.create(case_id=case_id, level=level, due_at=due_at)
                created += 1
            except IntegrityError:
                pass  # another sweeper got there first
    return created


@jobs.periodic("cases.due_alerts", every_seconds=300)
async def _sweep_due_alerts() -> None:
    n = await raise_due_alerts()
    if n:
        log.info("case alerts raised", extra={"count": n})


async def list_alerts(
    *, actor: Principal, level: CaseAlertLevel | None, cursor: int | None, limit: int
) -> tuple[list[CaseAlert], int | None]:
    if not actor.is_staff:
        raise forbidden()
    in_scope = (await scope_of(actor)).q(hall_code="case__hall_code",
                                         department="case__department")
    q = CaseAlert.filter(in_scope).select_related("case")
    if level is not None:
        q = q.filter(level=level)
    if cursor is not None:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
