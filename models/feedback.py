"""投诉建议 and 办不成事: what a resident reported, who handles it, the reply, and how it ended."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.catalogue import Hall
    from models.users import User


class FeedbackKind(StrEnum):
    complaint = "complaint"  # 投诉
    suggestion = "suggestion"  # 建议
    unresolved = "unresolved"  # 办不成事


class FeedbackStatus(StrEnum):
    submitted = "submitted"  # waiting for a reply
    replied = "replied"  # waiting for the resident's satisfaction answer
    reopened = "reopened"  # the resident was unsatisfied and asked again (once)
    closed = "closed"


class Moderation(StrEnum):
    passed = "passed"  # WeChat's check passed: public at once
    review = "review"  # WeChat asked for human review: hidden until staff decide
    approved = "approved"
    hidden = "hidden"


class CloseReason(StrEnum):
    satisfied = "satisfied"
    unsatisfied = "unsatisfied"
    timeout = "timeout"


class Feedback(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="feedback", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(FeedbackKind, max_length=16)
    text = fields.TextField()
    # {"refs": ["wxfile://...", ...]}: the upload domain owns the files, we keep references.
    photos: fields.JSONField[dict[str, Any]] = fields.JSONField()
    # What it is about, all optional. The case is an id, not a foreign key, so a report stays
    # readable even if the case is archived elsewhere.
    case_id = fields.BigIntField(null=True, db_index=True)
    hall: fields.ForeignKeyNullableRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    item_code = fields.CharField(max_length=32, null=True)
    moderation = fields.CharEnumField(Moderation, max_length=16)
    is_public = fields.BooleanField(default=False)
    # The resident's choice: false keeps the report off the public board whatever moderation
    # says (chosen at submission, withdrawable later). Public copies are scrubbed either way.
    publish = fields.BooleanField(default=True)
    department = fields.CharField(max_length=64, db_index=True)
    handler: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    status = fields.CharEnumField(FeedbackStatus, max_length=16,
                                  default=FeedbackStatus.submitted)
    due_at = fields.DatetimeField(db_index=True)
    reply = fields.TextField(null=True)
    replied_at = fields.DatetimeField(null=True)
    replied_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    reopen_count = fields.IntField(default=0)
    satisfied = fields.BooleanField(null=True)
    satisfaction_note = fields.CharField(max_length=500, default="")
    close_reason = fields.CharEnumField(CloseReason, max_length=16, null=True)
    closed_at = fields.DatetimeField(null=True)
    # Bumped by every transition, which updates WHERE version = seen: a reply and a reopen
    # racing can't both win.
    version = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    updated_at = fields.DatetimeField(auto_now=True)

    events: fields.ReverseRelation[FeedbackEvent]

    class Meta:
        table = "feedback"
        indexes = (("status", "replied_at"),)


class FeedbackEvent(Model):
    """History of a report: a reopen overwrites the current reply, this keeps the first one."""

    id = fields.BigIntField(primary_key=True)
    feedback: fields.ForeignKeyRelation[Feedback] = fields.ForeignKeyField(
        "models.Feedback", related_name="events", on_delete=fields.CASCADE
    )
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # submitted | assigned | moderated | replied | satisfied | unsatisfied | reopened | timeout
    action = fields.CharField(max_length=16)
    note = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "feedback_events"
