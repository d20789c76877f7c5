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
