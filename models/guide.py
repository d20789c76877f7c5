"""精准导办 state: the catalogue version every worker compares its caches against, and the
data-driven guided Q&A flows staff edit without a deploy."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class CatalogueVersion(Model):
    """One row (id 1). ``token`` changes on every catalogue edit; workers rebuild their
    in-memory search index and the Redis GEO index when the token they built from differs.

    A random token rather than a counter: a counter can come back to a value a worker has
    already seen (a restored backup, a wiped test database), a fresh uuid cannot.
    """

    id = fields.BigIntField(primary_key=True)
    token = fields.CharField(max_length=36)
    changed_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "catalogue_versions"


class GuidedFlow(Model):
    """A 导办 decision tree: ``graph`` is ``{"start": qid, "questions": {qid: {"text",
    "options": [{"label", "next" | "item" | "bundle"}]}}}``, validated on every write."""

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    title = fields.CharField(max_length=64)
    theme = fields.CharField(max_length=32, db_index=True)
    graph: fields.JSONField[dict[str, Any]] = fields.JSONField()
    revision = fields.IntField(default=1)
    updated_by_id = fields.BigIntField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "guided_flows"
