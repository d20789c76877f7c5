"""办件: cases with their timeline, 一次性告知 supplement requests, overdue alerts, and the
帮办代办 helpers (profiles, assignments, the resident's proxy authorisation)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.enterprises import Enterprise
    from models.users import Person, User


class CaseStatus(StrEnum):
    submitted = "submitted"
    accepted = "accepted"
    under_review = "under_review"
    supplement_requested = "supplement_requested"
    resubmitted = "resubmitted"
    approved = "approved"
    rejected = "rejected"
    result_delivered = "result_delivered"
    closed = "closed"
    withdrawn = "withdrawn"
    # 综窗 at the window (issue 12 front half): before acceptance.
    materials_pending = "materials_pending"  # 一次性告知 given on a submitted case: 待补齐
    not_accepted = "not_accepted"  # 不予受理, with the ground and a printed 告知书
    # 综窗 (issue 12, services/approval): an approver sent it back to the window with a reason.
    returned = "returned"


class Case(Model):
    id = fields.BigIntField(primary_key=True)
    # Null for a walk-in whose person has no verified account yet: the case belongs to the
    # person, and their account adopts it once it is face-verified (services/window/intake.py).
    applicant: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="cases", null=True, on_delete=fields.RESTRICT
    )
    person: fields.ForeignKeyNullableRelation[Person] = fields.ForeignKeyField(
        "models.Person", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    enterprise: fields.ForeignKeyNullableRelation[Enterprise] = fields.ForeignKeyField(
        "models.Enterprise", related_name="cases", null=True, on_delete=fields.SET_NULL
    )
    submitted_by: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="submitted_cases", on_delete=fields.RESTRICT
    )
    item_code = fields.CharField(max_length=32, null=True, db_index=True)
    bundle_code = fields.CharField(max_length=32, null=True, db_index=True)
    # A snapshot: the catalogue may rename an item after the case was opened.
    title = fields.CharField(max_length=128, default="")
    department = fields.CharField(max_length=64, db_index=True)
    # The catalogue theme (养老服务, 残疾人服务 ...): helpers are matched by department or theme.
    theme = fields.CharField(max_length=32, default="")
    hall_code = fields.CharField(max_length=32, db_index=True)
    status = fields.CharEnumField(CaseStatus, max_length=32, default=CaseStatus.submitted)
    # Working days promised at opening; kept so a later catalogue edit can't move a due time.
    promised_days = fields.IntField(default=0)
    accepted_at = fields.DatetimeField(null=True)
    # Null before acceptance and while a supplement pause is running (补正期间不计时).
    due_at = fields.DatetimeField(null=True, db_index=True)
    closed_at = fields.DatetimeField(null=True)
    reopen_count = fields.IntField(default=0)
    # Set when the applicant asked for 帮办; the sweep keeps offering the case until a helper
    # takes it or the case ends.
    help_requested_at = fields.DatetimeField(null=True)
    help_note = fields.CharField(max_length=500, default="")
    # Bumped by every transition; transitions update WHERE version = seen, so two staff
    # clicking at once can't both move the case.
    version = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    events: fields.ReverseRelation[CaseEvent]
    supplements: fields.ReverseRelation[SupplementRequest]

    class Meta:
        table = "cases"
        indexes = (("status", "due_at"),)


class CaseEvent(Model):
    """One line of the timeline: who did what, when, with what note."""

    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="events", on_delete=fields.CASCADE
    )
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # applicant | helper | staff | system
    actor_kind = fields.CharField(max_length=16)
    action = fields.CharField(max_length=32)
    from_status = fields.CharField(max_length=32, null=True)
    to_status = fields.CharField(max_length=32)
    note = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "case_events"


class SupplementRequest(Model):
    """一次性告知: everything missing, listed at once. ``resolved_at`` closes the pause."""

    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="supplements", on_delete=fields.CASCADE
    )
    requested_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    sequence = fields.IntField()
    # {"items": [{"material": "...", "reason": "..."}]}
    items: fields.JSONField[dict[str, Any]] = fields.JSONField()
    # Required from the second request on: why this was not in the first notice.
    new_requirement_reason = fields.CharField(max_length=500, null=True)
    requested_at = fields.DatetimeField()
    resolved_at = fields.DatetimeField(null=True)

    class Meta:
        table = "case_supplements"
        unique_together = (("case", "sequence"),)


class CaseAlertLevel(StrEnum):
    due_soon = "due_soon"
    overdue = "overdue"
    # 容缺受理: a material the applicant promised to bring later is past its deadline.
    materials_late = "materials_late"


class CaseAlert(Model):
    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="alerts", on_delete=fields.CASCADE
    )
    level = fields.CharEnumField(CaseAlertLevel, max_length=16)
    due_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "case_alerts"
        # Once per case per level, even when two sweeps race.
        unique_together = (("case", "level"),)


class HelperProfile(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "models.User", related_name="helper_profile", on_delete=fields.CASCADE
    )
    hall_code = fields.CharField(max_length=32, db_index=True)
    # {"departments": [...], "themes": [...]}
    scope: fields.JSONField[dict[str, Any]] = fields.JSONField()
    on_duty = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "helper_profiles"


class HelperAssignmentStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"
    transferred = "transferred"
    done = "done"


ACTIVE_ASSIGNMENT = (HelperAssignmentStatus.offered, HelperAssignmentStatus.accepted)


class HelperAssignment(Model):
    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="helper_assignments", on_delete=fields.CASCADE
    )
    helper: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="helper_assignments", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(
        HelperAssignmentStatus, max_length=16, default=HelperAssignmentStatus.offered
    )
    # Equals case_id while the assignment is active (offered/accepted), NULL after. The unique
    # index makes "one active helper per case" a database fact, not a hope: MySQL and SQLite
    # both allow any number of NULLs in a unique index.
    active_case_id = fields.BigIntField(null=True, unique=True)
    note = fields.CharField(max_length=500, default="")
    offered_at = fields.DatetimeField()
    responded_at = fields.DatetimeField(null=True)

    class Meta:
        table = "helper_assignments"


class ProxyScope(StrEnum):
    """What a resident lets a helper do for them (代办授权)."""

    apply = "apply"  # open a case in the resident's name
    supplement = "supplement"  # resubmit materials
    withdraw = "withdraw"
    view_personal = "view_personal"  # read unmasked personal data (audited)
    book = "book"  # book, move and cancel appointments in the resident's name (代预约)


class ProxyAuthorization(Model):
    id = fields.BigIntField(primary_key=True)
    grantor: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="proxy_grants", on_delete=fields.CASCADE
    )
    helper: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="proxy_authorizations", on_delete=fields.CASCADE
    )
    # {"scopes": ["apply", ...]}
    scope: fields.JSONField[dict[str, Any]] = fields.JSONField()
    # Null: any case of the grantor; otherwise only this one.
    case: fields.ForeignKeyNullableRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name=False, null=True, on_delete=fields.CASCADE
    )
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "proxy_authorizations"
