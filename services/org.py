"""Managing the organisation (admins only): regions, departments, staff and helper memberships,
and which region each hall serves. Every change bumps the scope generation
(``services.scope.changed``) so cached scopes are rebuilt."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet

from models.catalogue import Hall
from models.org import Department, Membership, Position, Region, RegionLevel
from models.users import Role, User, UserRole
from services import scope
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found

# The code's length says its level (GB/T 2260 to the county; 9 and 12 digits below, as the
# statistical division codes extend it).
_CODE_LENGTH = {RegionLevel.city: 6, RegionLevel.county: 6, RegionLevel.township: 9,
                RegionLevel.community: 12}
_CHILD_LEVEL = {RegionLevel.city: RegionLevel.county, RegionLevel.county: RegionLevel.township,
                RegionLevel.township: RegionLevel.community}
# Where each position is held, and the account role it needs to mean anything.
UNIT_OF = {Position.clerk: "hall", Position.hall_manager: "hall", Position.helper: "hall",
           Position.approver: "department", Position.supervisor: "region"}
ROLE_OF = {Position.clerk: Role.staff, Position.hall_manager: Role.staff,
           Position.approver: Role.staff, Position.supervisor: Role.staff,
           Position.helper: Role.helper}
_UNIT_FIELDS = {"hall": ("hall_code", "大厅"), "department": ("department_id", "部门"),
                "region": ("region_code", "行政区划")}


def _admin(actor: Principal) -> None:
    if not actor.has(Role.admin):
        raise forbidden()


def _name(name: str) -> str:
    clean = name.strip()
    if not clean:
        raise AppError(ErrorCode.validation_failed, fields={"name": "必填"})
    return clean


# --- regions -----------------------------------------------------------------------------


async def region_by_code(code: str) -> Region:
    region = await Region.get_or_none(code=code) if len(code) <= 12 else None
    if region is None:
        raise not_found("行政区划")
    return region


def parent_code_of(region: Region) -> str | None:
    """The parent's code, read off the region's path ("/621000/621002/" -> "621000"): the
    path holds every ancestor's code, so no query is needed."""
    codes = [c for c in region.path.split("/") if c]
    return codes[-2] if len(codes) > 1 else None


async def list_regions(*, actor: Principal, parent_code: str | None) -> list[Region]:
    _admin(actor)
    if parent_code:
        parent = await region_by_code(parent_code)
        return await Region.filter(parent_id=parent.id).order_by("code")
    return await Region.all().order_by("path").limit(2000)


async def create_region(*, actor: Principal | None, code: str, name: str, level: RegionLevel,
                        parent_code: str | None) -> Region:
    if actor is not None:
        _admin(actor)
    if not re.fullmatch(r"\d+", code) or len(code) != _CODE_LENGTH[level]:
        raise AppError(ErrorCode.validation_failed,
                       fields={"code": f"{_CODE_LENGTH[level]}位数字行政区划代码"})
    parent: Region | None = None
    if level is RegionLevel.city:
        if parent_code:
            raise AppError(ErrorCode.validation_failed, fields={"parent_code": "地级市没有上级"})
    else:
        if not parent_code:
            raise AppError(ErrorCode.validation_failed, fields={"parent_code": "必填"})
        parent = await Region.get_or_none(code=parent_code)
        if parent is None:
            raise AppError(ErrorCode.validation_failed, fields={"parent_code": "上级区划不存在"})
        if _CHILD_LEVEL.get(parent.level) is not level:
            raise AppError(ErrorCode.validation_failed, fields={"level": "与上级区划的层级不符"})
        if not code.startswith(parent.code[:4] if level is RegionLevel.county else parent.code):
            raise AppError(ErrorCode.validation_failed, fields={"code": "代码与上级区划不符"})
    path = f"{parent.path if parent else '/'}{code}/"
    try:
        region = await Region.create(code=code, name=_name(name), level=level, parent=parent,
                                     path=path)
    except IntegrityError as exc:
        raise AppError(ErrorCode.org_conflict, "该行政区划代码已存在",
                       fields={"code": "已存在"}) from exc
    await scope.changed()
    return region


async def rename_region(*, actor: Principal, code: str, name: str) -> Region:
    _admin(actor)
    region = await region_by_code(code)
    region.name = _name(name)
    await region.save(update_fields=["name"])
    return region


async def delete_region(*, actor: Principal, code: str) -> None:
    _admin(actor)
    region = await region_by_code(code)
    # Refused rather than cascaded: a region with halls, departments, people or children
    # under it is a mistake to delete, and the rows below would lose their scope silently.
    if (await Region.exists(parent_id=region.id) or await Department.exists(region_id=region.id)
            or await Hall.exists(region_id=region.id)
            or await Membership.exists(region_id=region.id)):
        raise AppError(ErrorCode.org_in_use, "该区划下仍有下级区划、部门、大厅或人员，不能删除")
    await region.delete()
    await scope.changed()


async def set_hall_region(*, actor: Principal | None, hall_code: str, region_code: str) -> Hall:
    if actor is not None:
        _admin(actor)
    hall = await Hall.get_or_none(code=hall_code) if len(hall_code) <= 32 else None
    if hall is None:
        raise not_found("大厅")
    region = await Region.get_or_none(code=region_code)
    if region is None:
        raise AppError(ErrorCode.validation_failed, fields={"region_code": "行政区划不存在"})
    hall.region = region
    await hall.save(update_fields=["region_id"])
    await scope.changed()
    return hall


# --- departments -------------------------------------------------------------------------


async def list_departments(*, actor: Principal, region_code: str | None) -> list[Department]:
    _admin(actor)
    q = Department.all().select_related("region")
    if region_code:
        q = q.filter(region_id=(await region_by_code(region_code)).id)
    return await q.order_by("region_id", "name").limit(2000)


async def get_department(department_id: int) -> Department:
    dept = await Department.get_or_none(id=department_id).select_related("region")
    if dept is None:
        raise not_found("部门")
    return dept


async def create_department(*, actor: Principal | None, region_code: str,
                            name: str) -> Department:
    if actor is not None:
        _admin(actor)
    region = await Region.get_or_none(code=region_code)
    if region is None:
        raise AppError(ErrorCode.validation_failed, fields={"region_code": "行政区划不存在"})
    try:
        dept = await Department.create(region=region, name=_name(name))
    except IntegrityError as exc:
        raise AppError(ErrorCode.org_conflict, "该区划下已有同名部门",
                       fields={"name": "已存在"}) from exc
    await scope.changed()
    return await get_department(dept.id)


async def rename_department(*, actor: Principal, department_id: int, name: str) -> Department:
    _admin(actor)
    dept = await get_department(department_id)
    dept.name = _name(name)
    try:
        await dept.save(update_fields=["name"])
    except IntegrityError as exc:
        raise AppError(ErrorCode.org_conflict, "该区划下已有同名部门",
                       fields={"name": "已存在"}) from exc
    # The name is what records match on, so scopes change with it.
    await scope.changed()
    return dept


async def delete_department(*, actor: Principal, department_id: int) -> None:
    _admin(actor)
    dept = await get_department(department_id)
    if await Membership.exists(department_id=dept.id):
        raise AppError(ErrorCode.org_in_use, "该部门仍有人员，请先移除")
    await dept.delete()
    await scope.changed()


# --- memberships -------------------------------------------------------------------------


def memberships() -> QuerySet[Membership]:
    return Membership.all().select_related("user", "hall", "department__region", "region")


async def list_memberships(*, actor: Principal, user_id: int | None, hall_code: str | None,
                           department_id: int | None, region_code: str | None,
                           position: Position | None, cursor: int | None,
                           limit: int) -> tuple[list[Membership], int | None]:
    _admin(actor)
    q = memberships()
    if user_id:
        q = q.filter(user_id=user_id)
    if hall_code:
        q = q.filter(hall__code=hall_code)
    if department_id:
        q = q.filter(department_id=department_id)
    if region_code:
        q = q.filter(region__code=region_code)
    if position:
        q = q.filter(position=position)
    if cursor:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def _unit(position: Position, *, hall_code: str | None, department_id: int | None,
                region_code: str | None) -> dict[str, Any]:
    unit = UNIT_OF[position]
    given = {"hall": hall_code, "department": department_id, "region": region_code}
    extra = [k for k, v in given.items() if v and k != unit]
    if extra or not given[unit]:
        field, label = _UNIT_FIELDS[unit]
        raise AppError(ErrorCode.validation_failed, "岗位须且只须指定一个所属单位",
                       fields={field: f"该岗位须指定{label}"})
    if unit == "hall":
        hall = await Hall.get_or_none(code=str(hall_code)) if len(str(hall_code)) <= 32 else None
        if hall is None:
            raise AppError(ErrorCode.validation_failed, fields={"hall_code": "大厅不存在"})
        return {"hall": hall, "unit_key": f"hall:{hall.id}"}
    if unit == "department":
        dept = await Department.get_or_none(id=int(department_id or 0))
        if dept is None:
            raise AppError(ErrorCode.validation_failed, fields={"department_id": "部门不存在"})
        return {"department": dept, "unit_key": f"department:{dept.id}"}
    region = await Region.get_or_none(code=str(region_code))
    if region is None:
        raise AppError(ErrorCode.validation_failed, fields={"region_code": "行政区划不存在"})
    return {"region": region, "unit_key": f"region:{region.id}"}


async def add_membership(*, actor: Principal | None, user_id: int, position: Position,
                         hall_code: str | None = None, department_id: int | None = None,
                         region_code: str | None = None) -> Membership:
    """Give a user a position in a unit, and the account role the position needs (a role
    takes effect at the user's next token refresh)."""
    if actor is not None:
        _admin(actor)
    unit = await _unit(position, hall_code=hall_code, department_id=department_id,
                       region_code=region_code)
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise AppError(ErrorCode.validation_failed, fields={"user_id": "用户不存在"})
    granted_by = actor.user_id if actor else None
    role = ROLE_OF[position]
    if not await UserRole.exists(user_id=user.id, role=role):
        # INSERT IGNORE: a concurrent grant of the same role is the same outcome, and unlike
        # get_or_create's select-then-insert transaction it can't deadlock against it.
        await UserRole.bulk_create([UserRole(user_id=user.id, role=role,
                                             granted_by_id=granted_by)], ignore_conflicts=True)
    try:
        row = await Membership.create(user=user, position=position, granted_by_id=granted_by,
                                      **unit)
    except IntegrityError as exc:
        raise AppError(ErrorCode.org_conflict, "该人员已在此单位担任该岗位") from exc
    await scope.changed()
    return await memberships().get(id=row.id)


async def get_membership(membership_id: int) -> Membership:
    row = await memberships().get_or_none(id=membership_id)
    if row is None:
        raise not_found("岗位")
    return row


async def move_membership(*, actor: Principal, membership_id: int, hall_code: str | None,
                          department_id: int | None, region_code: str | None) -> Membership:
    """Transfer the position to another unit of the same kind (a clerk moves hall)."""
    _admin(actor)
    row = await get_membership(membership_id)
    unit = await _unit(row.position, hall_code=hall_code, department_id=department_id,
                       region_code=region_code)
    try:
        await Membership.filter(id=row.id).update(**unit)
    except IntegrityError as exc:
        raise AppError(ErrorCode.org_conflict, "该人员已在此单位担任该岗位") from exc
    await scope.changed()
    return await get_membership(row.id)


async def remove_membership(*, actor: Principal, membership_id: int) -> None:
    _admin(actor)
    row = await get_membership(membership_id)
    await row.delete()
    await scope.changed()


async def helper_hall_codes(user_id: int) -> list[str]:
    """The halls a helper serves, by their 帮办员 memberships."""
    rows = await Membership.filter(user_id=user_id, position=Position.helper).values_list(
        "hall__code", flat=True)
    return sorted(str(c) for c in rows if c)


# --- demo seed ---------------------------------------------------------------------------

ORG_FILE = Path(__file__).resolve().parent.parent / "seed" / "qingyang_org.json"


async def seed_org(data: dict[str, Any]) -> None:
    """The demo organisation (``seed/qingyang_org.json``): regions, departments, and each
    seeded hall's region. Idempotent. People's positions are the demo accounts' business
    (``miniprogram_stub/demo_accounts.py``): the seed creates no accounts. Like every seeder
    it only adds what is missing and never overwrites what an admin changed."""
    org = data.get("organisation") or json.loads(ORG_FILE.read_text(encoding="utf-8"))
    for r in org["regions"]:  # parents come first in the file
        parent = await Region.get(code=r["parent"]) if r["parent"] else None
        path = f"{parent.path if parent else '/'}{r['code']}/"
        # get_or_create: only what is missing, an admin's rename survives the next start.
        await Region.get_or_create(
            code=r["code"], defaults={"name": r["name"], "level": RegionLevel(r["level"]),
                                      "parent": parent, "path": path})
    for d in org["departments"]:
        region = await Region.get(code=d["region"])
        await Department.get_or_create(region=region, name=d["name"])
    for hall_code, region_code in org["hall_regions"].items():
        region = await Region.get(code=region_code)
        await Hall.filter(code=hall_code, region_id=None).update(region_id=region.id)
    await scope.changed()
