"""好差评: residents rate a finished case or a checked-in appointment; staff work the
rectification tasks that bad ratings open."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints
from sanic import Blueprint, Request

from api.endpoint import endpoint
from models.ratings import (
    LEVEL_LABELS,
    Rating,
    RectificationStatus,
    RectificationTask,
    TargetType,
    VisitResult,
)
from models.users import Role
from services import clock
from services import ratings as service
from services.auth import Principal

bp = Blueprint("ratings", url_prefix="/api/v1/ratings")
admin_bp = Blueprint("admin_ratings", url_prefix="/api/v1/admin/rectifications")

STAFF = [Role.staff, Role.admin]
Target = Literal["case", "appointment"]
TaskStatus = Literal["open", "replied", "closed"]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=16)]


class RateIn(BaseModel):
    target_type: Target = Field(description="case 办件（一事一评）/ appointment 预约（一次一评）")
    target_id: int = Field(ge=1, le=2**63 - 1)
    level: int = Field(ge=1, le=5, description="5 非常满意 4 满意 3 基本满意 2 不满意 1 非常不满意")
    tags: list[Tag] = Field(default_factory=list, max_length=10, description="评价标签")
    text: str = Field(default="", max_length=500, description="文字评价（经内容安全检查）")

    model_config = {"extra": "forbid"}


class RectificationBrief(BaseModel):
    id: int
    status: TaskStatus
    due_at: datetime
    reply: str | None
    replied_at: datetime | None


class RatingOut(BaseModel):
    id: int
    target_type: Target
    target_id: int
    level: int
    label: str
    tags: list[str]
    text: str
    department: str
    hall_code: str
    created_at: datetime
    rectification: RectificationBrief | None = Field(description="差评整改进度")


class RatingListOut(BaseModel):
    ratings: list[RatingOut]
    next_cursor: int | None


class LevelOut(BaseModel):
    level: int
    label: str


class LevelsOut(BaseModel):
    levels: list[LevelOut]


class RatingMineQuery(BaseModel):
    cursor: int | None = Field(default=None, ge=1, le=2**63 - 1)
    limit: int = Field(default=20, ge=1, le=100)


class TaskQuery(RatingMineQuery):
    status: TaskStatus | None = None
    department: str | None = Field(default=None, min_length=1, max_length=64)
    escalated: bool | None = Field(default=None, description="true 只看已督办（超期升级）的")


class RaterBrief(BaseModel):
    user_id: int
    person_id: int | None = Field(
        description="回访需完整电话时，凭此调用 /admin/persons/{id}/reveal（留审计记录）")
    name: str | None = Field(description="脱敏姓名")
    phone: str | None = Field(description="脱敏手机号")


class TaskOut(BaseModel):
    id: int
    rating_id: int
    target_type: Target
    target_id: int
    level: int
    label: str
    rating_text: str = Field(description="评价内容（待人工审核的内容不显示）")
    tags: list[str]
    rater: RaterBrief
    department: str
    hall_code: str
    status: TaskStatus
    due_at: datetime = Field(description="整改时限（15个工作日）")
    overdue: bool
    escalated: bool
    escalation_level: int = Field(description="督办等级，0 未超期")
    escalated_at: datetime | None
    reply: str | None
    replied_at: datetime | None
    visit_result: Literal["satisfied", "unsatisfied", "unreachable"] | None
    visit_note: str | None
    visited_at: datetime | None
    created_at: datetime


class TaskListOut(BaseModel):
    tasks: list[TaskOut]
    next_cursor: int | None


class TaskReplyIn(BaseModel):
    text: str = Field(min_length=2, max_length=2000, description="整改情况说明")

    model_config = {"extra": "forbid"}


class FollowUpIn(BaseModel):
    result: Literal["satisfied", "unsatisfied", "unreachable"] = Field(description="回访结果")
    note: str = Field(min_length=2, max_length=1000, description="回访记录")

    model_config = {"extra": "forbid"}


def _local(dt: datetime | None) -> datetime | None:
    return clock.local(dt) if dt else None


def rating_out(r: Rating, task: RectificationTask | None) -> RatingOut:
    return RatingOut(
        id=r.id, target_type=r.target_type.value, target_id=r.target_id, level=r.level,
        label=r.label, tags=list(r.tags.get("tags", [])), text=r.text, department=r.department,
        hall_code=r.hall_code, created_at=clock.local(r.created_at),
        rectification=RectificationBrief(
            id=task.id, status=task.status.value, due_at=clock.local(task.due_at),
            reply=task.reply, replied_at=_local(task.replied_at)) if task else None)


def task_out(t: RectificationTask) -> TaskOut:
    r = t.rating
    user = r.rater
    person = user.person
    now = clock.now()
    shown = service.masked_task_text(t)
    return TaskOut(
        id=t.id, rating_id=r.id, target_type=r.target_type.value, target_id=r.target_id,
        level=r.level, label=r.label, rating_text=shown.rating_text,
        tags=list(r.tags.get("tags", [])),
        rater=RaterBrief(user_id=user.id, person_id=person.id if person else None,
                         name=person.name_masked if person else None, phone=user.phone_masked),
        department=t.department, hall_code=t.hall_code, status=t.status.value,
        due_at=clock.local(t.due_at), overdue=service.task_overdue(t, now=now),
        escalated=t.escalated, escalation_level=t.escalation_level,
        escalated_at=_local(t.escalated_at), reply=shown.reply, replied_at=_local(t.replied_at),
        visit_result=t.visit_result.value if t.visit_result else None,
        visit_note=shown.visit_note,
        visited_at=_local(t.visited_at), created_at=clock.local(t.created_at))


def _next(rows: list[Rating] | list[RectificationTask], limit: int) -> int | None:
    return rows[limit - 1].id if len(rows) > limit else None


@bp.get("/levels")
@endpoint(response=LevelsOut, public=True, summary="好差评五个等级", tag="ratings")
async def levels(_request: Request) -> LevelsOut:
    return LevelsOut(levels=[LevelOut(level=lv, label=label)
                             for lv, label in sorted(LEVEL_LABELS.items(), reverse=True)])


@bp.post("")
@endpoint(body=RateIn, response=RatingOut, status=201, errors=(503,),
          summary="评价已办结的办件或已签到的预约（一事一评）", tag="ratings")
async def rate(_request: Request, body: RateIn, principal: Principal) -> RatingOut:
    rating = await service.rate(actor=principal, target_type=TargetType(body.target_type),
                                target_id=body.target_id, level=body.level, tags=body.tags,
                                text=body.text)
    return rating_out(rating, await service.task_of(rating))


@bp.get("")
@endpoint(query=RatingMineQuery, response=RatingListOut, summary="我的评价及差评整改进度",
          tag="ratings")
async def mine(_request: Request, query: RatingMineQuery, principal: Principal) -> RatingListOut:
    rows = await service.list_mine(actor=principal, cursor=query.cursor, limit=query.limit)
    page = rows[: query.limit]
    tasks = await service.tasks_of(page)
    return RatingListOut(ratings=[rating_out(r, tasks.get(r.id)) for r in page],
                         next_cursor=_next(rows, query.limit))


@admin_bp.get("")
@endpoint(query=TaskQuery, response=TaskListOut, roles=STAFF,
          summary="差评整改任务（含超期督办）", tag="admin")
async def tasks(_request: Request, query: TaskQuery, principal: Principal) -> TaskListOut:
    rows = await service.list_tasks(
        actor=principal, status=RectificationStatus(query.status) if query.status else None,
        department=query.department, escalated=query.escalated, cursor=query.cursor,
        limit=query.limit)
    return TaskListOut(tasks=[task_out(t) for t in rows[: query.limit]],
                       next_cursor=_next(rows, query.limit))


@admin_bp.get("/<task_id:int>")
@endpoint(response=TaskOut, roles=STAFF, summary="整改任务详情", tag="admin")
async def task(_request: Request, task_id: int, principal: Principal) -> TaskOut:
    return task_out(await service.get_task(actor=principal, task_id=task_id))


@admin_bp.post("/<task_id:int>/reply")
@endpoint(body=TaskReplyIn, response=TaskOut, roles=STAFF,
          summary="答复整改情况（通知评价人）", tag="admin")
async def reply(_request: Request, task_id: int, body: TaskReplyIn,
                principal: Principal) -> TaskOut:
    return task_out(await service.reply_task(actor=principal, task_id=task_id, text=body.text))


@admin_bp.post("/<task_id:int>/follow-up")
@endpoint(body=FollowUpIn, response=TaskOut, roles=STAFF, summary="记录回访（办结整改任务）",
          tag="admin")
async def follow_up(_request: Request, task_id: int, body: FollowUpIn,
                    principal: Principal) -> TaskOut:
    return task_out(await service.follow_up(actor=principal, task_id=task_id,
                                            result=VisitResult(body.result), note=body.note))
