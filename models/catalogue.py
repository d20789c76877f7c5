"""The 办事指南 catalogue and the government map: halls, windows, self-service points, service
items with their guide elements, and 一件事 bundles."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.org import Region


class HallLevel(StrEnum):
    city = "city"
    county = "county"
    township = "township"


class WindowKind(StrEnum):
    comprehensive = "comprehensive"
    assisted = "assisted"
    unresolved = "unresolved"
    cross_province = "cross_province"
    enterprise = "enterprise"
    social_security = "social_security"
    real_estate = "real_estate"


class Hall(Model):
    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=128)
    level = fields.CharEnumField(HallLevel, max_length=16)
    county = fields.CharField(max_length=32, db_index=True)
    address = fields.CharField(max_length=255, default="")
    # GCJ-02, what the mini program's <map> uses.
    lat = fields.FloatField()
    lng = fields.FloatField()
    phone = fields.CharField(max_length=32, default="")
    # {"weekdays": [1..7], "periods": [["09:00","12:00"], ...]} or "24h"
    hours: fields.JSONField[Any] = fields.JSONField()
    self_service_24h = fields.BooleanField(default=False)
    is_active = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)
    # The administrative region the hall serves (models/org.py); data scope follows it.
    region: fields.ForeignKeyNullableRelation[Region] = fields.ForeignKeyField(
        "models.Region", related_name="halls", null=True, on_delete=fields.SET_NULL
    )

    windows: fields.ReverseRelation[Window]

    class Meta:
        table = "halls"


class Window(Model):
    id = fields.BigIntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="windows", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=64)
    kind = fields.CharEnumField(WindowKind, max_length=32)

    class Meta:
        table = "windows"
        unique_together = (("hall", "kind"),)


class ServicePoint(Model):
    """24 h self-service terminals and similar points that are not staffed halls."""

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=128)
    county = fields.CharField(max_length=32, db_index=True)
    kind = fields.CharField(max_length=32, default="self_service_terminal")
    lat = fields.FloatField()
    lng = fields.FloatField()
    hours: fields.JSONField[Any] = fields.JSONField()
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "service_points"


class ServiceItem(Model):
    """One 事项 with the guide elements of the national 办事指南 standard."""

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=128)
    department = fields.CharField(max_length=64, db_index=True)
    # 行政许可 / 行政确认 / 行政给付 / 公共服务 / 其他行政权力 ...
    kind = fields.CharField(max_length=32)
    subject = fields.CharField(max_length=16)  # person | enterprise
    theme = fields.CharField(max_length=32, db_index=True)
    legal_basis = fields.TextField(default="")
    conditions: fields.JSONField[list[str]] = fields.JSONField(default=list)
    refusal_cases: fields.JSONField[list[str]] = fields.JSONField(default=list)
    # [{"name","form","copies","source","required","note","blank_form_url","sample_url"}]
    materials: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list)
    steps: fields.JSONField[list[str]] = fields.JSONField(default=list)
    legal_limit_days = fields.IntField(default=0)  # working days
    promised_limit_days = fields.IntField(default=0)  # working days; 0 = 即办件
    visits = fields.IntField(default=1)
    online = fields.CharField(max_length=16, default="offline")  # full | pre | offline
    fee = fields.CharField(max_length=128, default="不收费")
    fee_basis = fields.CharField(max_length=255, default="")
    window_kind = fields.CharEnumField(WindowKind, max_length=32)
    hall_codes: fields.JSONField[list[str]] = fields.JSONField(default=list)
    consult_phone = fields.CharField(max_length=32, default="")
    complaint_phone = fields.CharField(max_length=32, default="12345")
    keywords: fields.JSONField[list[str]] = fields.JSONField(default=list)
    faq: fields.JSONField[list[dict[str, str]]] = fields.JSONField(default=list)  # [{"q","a"}]
    is_active = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "service_items"


class Bundle(Model):
    """一件事: several items applied for together with one set of materials."""

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=128)
    subject = fields.CharField(max_length=16)
    item_codes: fields.JSONField[list[str]] = fields.JSONField(default=list)
    description = fields.TextField(default="")
    is_active = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "bundles"
