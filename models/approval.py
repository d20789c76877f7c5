"""综窗 behind the scenes and at the result window: one approval task per department a case
needs (后台分类审批, 并联审批 for 一件事), and how the result leaves the hall (统一窗口出件).

Rules: ``services/approval/``. Ratings tied to the staff who served: ``models/ratings.py``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.cases import Case
    from models.users import Person, User


class TaskStatus(StrEnum):
    pending = "pending"  # in the department's queue, nobody has taken it
    claimed = "claimed"  # an approver took it
    approved = "approved"
    rejected = "rejected"
    returned = "returned"  # sent back to the window with a reason; back in the queue on resend


TASK_STATUS_LABELS: dict[str, str] = {
    TaskStatus.pending: "待审批",
    TaskStatus.claimed: "审批中",
    TaskStatus.approved: "已批准",
    TaskStatus.rejected: "不予批准",
    TaskStatus.returned: "已退回窗口",
}
OPEN_TASK = (TaskStatus.pending, TaskStatus.claimed)
DECIDED_TASK = (TaskStatus.approved, TaskStatus.rejected)


class CaseTask(Model):
    """One department's part of a case: a single item has one, a 一件事 bundle one per
    department its items belong to, run in parallel (并联审批)."""

    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="tasks", on_delete=fields.CASCADE
    )
    # The approving department's name, as items and scope carry it (models/org.py).
    department = fields.CharField(max_length=64, db_index=True)
    # The case's hall, copied so the queue filters with Scope.q without a join.
    hall_code = fields.CharField(max_length=32, db_index=True)
    # {"codes": [...]}: the bundle's items this department decides.
    items: fields.JSONField[dict[str, Any]] = fields.JSONField()
    status = fields.CharEnumField(TaskStatus, max_length=16, default=TaskStatus.pending)
    # The slowest of its items, fixed when routed (a catalogue edit can't move a promise).
    promised_days = fields.IntField(default=0)
    # 限时办结 per sub-task: from the case's acceptance, paused like the case while a
    # supplement is open (NULL then).
    due_at = fields.DatetimeField(null=True, db_index=True)
    claimed_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    claimed_at = fields.DatetimeField(null=True)
    decided_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    decided_at = fields.DatetimeField(null=True)
    opinion = fields.CharField(max_length=500, default="")
    # Claims and decisions are conditional on it: two approvers can't both take one task.
    version = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "case_tasks"
        unique_together = (("case", "department"),)
        indexes = (("department", "status"),)


class ReleaseMethod(StrEnum):
    window = "window"  # 窗口领取
    mail = "mail"  # EMS 寄递


class CaseRelease(Model):
    """统一窗口出件: how the applicant takes the result, and who handed it over."""

    id = fields.BigIntField(primary_key=True)
    case: fields.OneToOneRelation[Case] = fields.OneToOneField(
        "models.Case", related_name="release", on_delete=fields.CASCADE
    )
    method = fields.CharEnumField(ReleaseMethod, max_length=16)
    # EMS: the address the applicant gave, encrypted (services/pii) and masked for lists.
    address_enc = fields.TextField(null=True)
    address_masked = fields.CharField(max_length=128, default="")
    recipient_phone_masked = fields.CharField(max_length=16, default="")
    recipient_phone_enc = fields.TextField(null=True)
    chosen_at = fields.DatetimeField()
    tracking_no = fields.CharField(max_length=32, null=True)
    # Window: the person whose code or ID card the clerk checked, and the clerk.
    collected_person: fields.ForeignKeyNullableRelation[Person] = fields.ForeignKeyField(
        "models.Person", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    verified_by = fields.CharField(max_length=16, default="")  # person_code | id_card
    released_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    released_at = fields.DatetimeField(null=True)

    class Meta:
        table = "case_releases"
