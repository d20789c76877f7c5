"""The organisation (组织机构): administrative regions, departments, and who holds which position
where (memberships). Halls link to their region in ``models/catalogue.py``; windows sit in halls.

Data scope (数据权限) is derived from memberships in ``services/scope.py``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.catalogue import Hall
    from models.users import User


class RegionLevel(StrEnum):
    city = "city"  # 地级市
    county = "county"  # 县/区
    township = "township"  # 街道/乡镇
    community = "community"  # 社区/村


class Region(Model):
    """An administrative division by its GB/T 2260 code (6 digits to county level; 9 for a
    街道/乡镇 and 12 for a 社区/村, as the statistical division codes extend it)."""

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=12, unique=True)
    name = fields.CharField(max_length=64)
    level = fields.CharEnumField(RegionLevel, max_length=16)
    parent: fields.ForeignKeyNullableRelation[Region] = fields.ForeignKeyField(
        "models.Region", related_name="children", null=True, on_delete=fields.RESTRICT
    )
    # "/621000/621002/621002001/": the ancestors' codes and its own, so "this region and
    # below" is one indexed prefix match instead of a recursive walk.
    path = fields.CharField(max_length=128, db_index=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    children: fields.ReverseRelation[Region]
    halls: fields.ReverseRelation[Hall]

    class Meta:
        table = "org_regions"


class Department(Model):
    """A 部门 of a region's government. ``name`` is what catalogue items, cases, complaints and
    ratings carry in their ``department`` column (市人社局 ...), so scope matches on it."""

    id = fields.BigIntField(primary_key=True)
    region: fields.ForeignKeyRelation[Region] = fields.ForeignKeyField(
        "models.Region", related_name="departments", on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "org_departments"
        unique_together = (("region", "name"),)


class Position(StrEnum):
    clerk = "clerk"  # 综窗受理员, at a hall
    hall_manager = "hall_manager"  # 大厅负责人, at a hall
    approver = "approver"  # 审批人员, in a department
    supervisor = "supervisor"  # 督查, for a region and everything below it
    helper = "helper"  # 帮办员, at a hall (a helper may hold several)


class Membership(Model):
    """A user holds a position in exactly one unit: a hall, a department or a region."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="memberships", on_delete=fields.CASCADE
    )
    position = fields.CharEnumField(Position, max_length=16)
    hall: fields.ForeignKeyNullableRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="memberships", null=True, on_delete=fields.CASCADE
    )
    department: fields.ForeignKeyNullableRelation[Department] = fields.ForeignKeyField(
        "models.Department", related_name="memberships", null=True, on_delete=fields.CASCADE
    )
    region: fields.ForeignKeyNullableRelation[Region] = fields.ForeignKeyField(
        "models.Region", related_name="memberships", null=True, on_delete=fields.CASCADE
    )
    # "hall:12" / "department:3" / "region:7": the unit as one non-null column, so the unique
    # constraint below holds (MySQL lets NULLs repeat in a unique index).
    unit_key = fields.CharField(max_length=40)
    granted_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "org_memberships"
        unique_together = (("user", "position", "unit_key"),)
