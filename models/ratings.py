"""好差评: one rating per case or appointment, and the rectification a bad rating opens."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.users import User


class TargetType(StrEnum):
    case = "case"
    appointment = "appointment"


# The national 好差评 scale, stored as 5..1.
LEVEL_LABELS: dict[int, str] = {
    5: "非常满意",
    4: "满意",
    3: "基本满意",
    2: "不满意",
    1: "非常不满意",
}
BAD_LEVELS = (1, 2)


class Rating(Model):
    id = fields.BigIntField(primary_key=True)
    target_type = fields.CharEnumField(TargetType, max_length=16)
    target_id = fields.BigIntField()
    rater: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="ratings", on_delete=fields.CASCADE
    )
    level = fields.SmallIntField()
    label = fields.CharField(max_length=8)
    # {"tags": ["态度好", ...]}
    tags: fields.JSONField[dict[str, Any]] = fields.JSONField()
    text = fields.CharField(max_length=500, default="")
    # The text is shown to staff only when WeChat's check passed or a human approved it.
    text_visible = fields.BooleanField(default=True)
    # Snapshots of who was responsible, so figures by hall/department are plain GROUP BYs.
    department = fields.CharField(max_length=64, db_index=True)
    hall_code = fields.CharField(max_length=32, db_index=True)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "ratings"
        # 一事一评 / 一次一评, as a database fact: concurrent submissions can't both land.
        unique_together = (("target_type", "target_id"),)


class RectificationStatus(StrEnum):
    open = "open"  # waiting for the department's rectification reply
    replied = "replied"  # rectified; waiting for the 回访
    closed = "closed"  # follow-up visit recorded


class VisitResult(StrEnum):
    satisfied = "satisfied"
    unsatisfied = "unsatisfied"
    unreachable = "unreachable"


class RectificationTask(Model):
    id = fields.BigIntField(primary_key=True)
    rating: fields.OneToOneRelation[Rating] = fields.OneToOneField(
        "models.Rating", related_name="rectification", on_delete=fields.CASCADE
    )
    department = fields.CharField(max_length=64, db_index=True)
    hall_code = fields.CharField(max_length=32, db_index=True)
    status = fields.CharEnumField(RectificationStatus, max_length=16,
                                  default=RectificationStatus.open)
    due_at = fields.DatetimeField(db_index=True)
    reply = fields.TextField(null=True)
    replied_at = fields.DatetimeField(null=True)
    replied_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    visit_note = fields.TextField(null=True)
    visit_result = fields.CharEnumField(VisitResult, max_length=16, null=True)
    visited_at = fields.DatetimeField(null=True)
    visited_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    escalated = fields.BooleanField(default=False)
    escalation_level = fields.SmallIntField(default=0)
    escalated_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "rectification_tasks"
        indexes = (("status", "due_at"),)


# --- 好差评 that reaches people (issue 12): who served, and the review of a bad rating ---------


class ServedAs(StrEnum):
    clerk = "clerk"  # received the case at the window / handed the result over
    approver = "approver"  # decided a department's part of it
    helper = "helper"  # 帮办员 who took it


class RatingStaff(Model):
    """A staff member the rating is about: one rating reaches everyone who served the case."""

    id = fields.BigIntField(primary_key=True)
    rating: fields.ForeignKeyRelation[Rating] = fields.ForeignKeyField(
        "models.Rating", related_name="staff", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    served_as = fields.CharEnumField(ServedAs, max_length=16)
    # Where they served (their department for an approver, else the case's), for scoped figures.
    department = fields.CharField(max_length=64, db_index=True)
    hall_code = fields.CharField(max_length=32, db_index=True)

    class Meta:
        table = "rating_staff"
        unique_together = (("rating", "user", "served_as"),)


class ReviewVerdict(StrEnum):
    valid = "valid"  # 差评属实: counts against the staff who served
    invalid = "invalid"  # 不属实 (恶意、与服务无关 …): does not count


class RatingReview(Model):
    """差评核实: a supervisor's verdict on a bad rating, and one appeal (申诉复核) by a rated staff
    member decided by a different supervisor. The rectification task stays either way."""

    id = fields.BigIntField(primary_key=True)
    rating: fields.OneToOneRelation[Rating] = fields.OneToOneField(
        "models.Rating", related_name="review", on_delete=fields.CASCADE
    )
    verdict = fields.CharEnumField(ReviewVerdict, max_length=16)
    reason = fields.CharField(max_length=500)
    reviewed_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    reviewed_at = fields.DatetimeField()
    appeal_reason = fields.CharField(max_length=500, null=True)
    appealed_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    appealed_at = fields.DatetimeField(null=True)
    # The appeal's outcome replaces ``verdict`` for the figures once decided.
    final_verdict = fields.CharEnumField(ReviewVerdict, max_length=16, null=True)
    final_reason = fields.CharField(max_length=500, null=True)
    final_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    final_at = fields.DatetimeField(null=True)
    # Conditional updates on it: two supervisors deciding at once can't both land.
    version = fields.IntField(default=0)

    class Meta:
        table = "rating_reviews"
