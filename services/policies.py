"""政策推送: staff publish policies for residents or enterprises; residents see the ones that
fit them; publishing pushes one subscribe message to each matching, subscribed user.

The push runs as a background job (``policy_push``) after the publishing transaction commits.
Exactly once per user and policy comes from ``notifications.notify``'s unique dedup key
``policy:{policy_id}:user:{user_id}``: a retried job, a second worker running the same job, or
staff pressing "publish" twice all collapse on that row.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.enterprises import Enterprise, EnterpriseAgent
from models.notifications import SubscriptionBalance
from models.policies import Audience, Policy, PolicyStatus, PolicyThemeMute
from models.users import Person, User
from services import clock, notifications, outbox, people
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.verification import verified_person_of

log = logging.getLogger(__name__)

TEMPLATE = "policy_published"
PUSH_JOB = "policy_push"
_BATCH = 500

# Tags and enum-like values are short snake_case words (disabled, child_under_3, catering).
Tag = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
Word = Annotated[str, Field(min_length=1, max_length=32)]


class PersonCriteria(BaseModel):
    """Who a person-audience policy is for. All given conditions must hold."""

    model_config = ConfigDict(extra="forbid")

    # Strict: a JSON false must not become age 0.
    min_age: StrictInt | None = Field(default=None, ge=0, le=150, description="最低年龄（含）")
    max_age: StrictInt | None = Field(default=None, ge=0, le=150, description="最高年龄（含）")
    tags: list[Tag] = Field(default_factory=list, max_length=10,
                            description="须同时具备的标签，如 disabled、graduate、veteran")


class EnterpriseCriteria(BaseModel):
    """Who an enterprise-audience policy is for. Lists match any value; all given keys hold."""

    model_config = ConfigDict(extra="forbid")

    size: list[Tag] = Field(default_factory=list, max_length=10,
                            description="企业规模之一：micro / small / medium / large")
    industry: list[Tag] = Field(default_factory=list, max_length=20, description="行业之一")
    tags: list[Tag] = Field(default_factory=list, max_length=10, description="须同时具备的标签")
    county: list[Word] = Field(default_factory=list, max_length=20, description="所在县区之一")
    max_layoff_rate: float | None = Field(default=None, ge=0, le=1, strict=True,
                                          description="上年度裁员率上限（未知裁员率的企业不匹配）")


def parse_criteria(audience: Audience, raw: dict[str, Any]) -> dict[str, Any]:
    """Validate criteria for the audience and return them normalised (no empty keys)."""
    model: type[BaseModel] = PersonCriteria if audience is Audience.person else EnterpriseCriteria
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        fields = {"criteria." + ".".join(str(p) for p in e["loc"]): str(e["msg"])[:120]
                  for e in exc.errors()}
        raise AppError(ErrorCode.validation_failed, "匹配条件不正确", fields=fields) from exc
    if isinstance(parsed, PersonCriteria) and parsed.min_age is not None \
            and parsed.max_age is not None and parsed.min_age > parsed.max_age:
        raise AppError(ErrorCode.validation_failed, "匹配条件不正确",
                       fields={"criteria.max_age": "不能小于 min_age"})
    return {k: v for k, v in parsed.model_dump().items() if v not in (None, [], "")}


def person_matches(criteria: dict[str, Any], *, age: int, tags: Sequence[str]) -> bool:
    if criteria.get("min_age") is not None and age < criteria["min_age"]:
        return False
    if criteria.get("max_age") is not None and age > criteria["max_age"]:
        return False
    return set(criteria.get("tags", [])) <= set(tags)


def enterprise_matches(criteria: dict[str, Any], ent: Enterprise) -> bool:
    """Every condition given must hold: the one rule for "this enterprise policy fits", used by
    the push, "for me" and an enterprise code's scan by its agent (services/codes/scan.py).

    A list matches any of its values, a bare value reads as a one-item list (never as a
    substring: "西峰" is not "西峰区"), and an empty one is no condition — as
    ``parse_criteria`` stores criteria. A key we don't know is a rule we can't evaluate, so
    the policy is not claimed to match."""
    facts = {"size": ent.size, "industry": ent.industry, "county": ent.county}
    for key, wanted in criteria.items():
        if wanted is None or wanted == [] or wanted == "":
            continue
        listed = wanted if isinstance(wanted, list) else [wanted]
        if key in facts:
            if facts[key] not in listed:
                return False
        elif key == "tags":
            if not set(listed) <= set(ent.tags or []):
                return False
        elif key == "max_layoff_rate":
            # An unknown layoff rate doesn't qualify: better to miss a push than promise a
            # refund.
            if ent.layoff_rate is None or ent.layoff_rate > float(wanted):
                return False
        else:
            return False
    return True


# --- staff ----------------------------------------------------------------------------------
_MAX_ID = 2**63 - 1


def _id_ok(policy_id: int) -> bool:
    # Path ids are unbounded integers; one past BIGINT would be a database error, not a 404.
    return 1 <= policy_id <= _MAX_ID


def _require_staff(actor: Principal) -> None:
    if not actor.is_staff:
        raise forbidden()


async def create_policy(
    *, actor: Principal, code: str, title: str, department: str, theme: str,
    audience: Audience, criteria: dict[str, Any], summary: str, url: str = "",
) -> Policy:
    _require_staff(actor)
    clean = parse_criteria(audience, criteria)
    try:
        return await Policy.create(code=code, title=title, department=department, theme=theme,
                                   audience=audience, criteria=clean, summary=summary, url=url,
                                   created_by_id=actor.user_id)
    except IntegrityError as exc:
        raise AppError(ErrorCode.conflict, "政策编号已存在", fields={"code": "已存在"}) from exc


async def update_policy(
    *, actor: Principal, policy_id: int, title: str, department: str, theme: str,
    audience: Audience, criteria: dict[str, Any], summary: str, url: str = "",
) -> Policy:
    """Edit a draft. A published policy's audience is fixed: widening it after the push would
    leave the new audience unnotified, so staff withdraw and publish a new one instead."""
    _require_staff(actor)
    clean = parse_criteria(audience, criteria)
    async with in_transaction():
        policy = (await Policy.select_for_update().get_or_none(id=policy_id)
                  if _id_ok(policy_id) else None)
        if policy is None:
            raise not_found("政策")
        if policy.status is not PolicyStatus.draft and (
            audience is not policy.audience or clean != policy.criteria
        ):
            raise AppError(ErrorCode.conflict, "已发布的政策不能修改适用对象，请撤回后重新发布")
        policy.update_from_dict({"title": title, "department": department, "theme": theme,
                                 "audience": audience, "criteria": clean, "summary": summary,
                                 "url": url})
        await policy.save()
    return policy


async def publish(*, actor: Principal, policy_id: int) -> Policy:
    """Publish (idempotent). The push is promised in the outbox in the same transaction, so a
    published policy always reaches its subscribers, Redis or not; publishing again promises
    nothing new (same dedup key)."""
    _require_staff(actor)
    async with in_transaction() as conn:
        policy = (await Policy.select_for_update().using_db(conn).get_or_none(id=policy_id)
                  if _id_ok(policy_id) else None)
        if policy is None:
            raise not_found("政策")
        if policy.status is PolicyStatus.withdrawn:
            raise AppError(ErrorCode.conflict, "已撤回的政策不能再发布")
        if policy.status is PolicyStatus.draft:
            policy.status = PolicyStatus.published
            policy.published_at = clock.now()
            await policy.save(update_fields=["status", "published_at", "updated_at"],
                              using_db=conn)
        await outbox.add(PUSH_JOB, {"policy_id": policy.id}, f"{PUSH_JOB}:{policy.id}",
                         using_db=conn)
    return policy


async def withdraw(*, actor: Principal, policy_id: int) -> Policy:
    _require_staff(actor)
    policy = await Policy.get_or_none(id=policy_id) if _id_ok(policy_id) else None
    if policy is None:
        raise not_found("政策")
    policy.status = PolicyStatus.withdrawn
    await policy.save(update_fields=["status", "updated_at"])
    return policy


async def list_all(*, status: PolicyStatus | None = None, after: int | None = None,
                   limit: int = 50) -> tuple[list[Policy], int | None]:
    qs = Policy.all().order_by("-id")
    if status is not None:
        qs = qs.filter(status=status)
    if after:
        qs = qs.filter(id__lt=after)
    rows = list(await qs.limit(limit + 1))
    page = rows[:limit]
    return page, page[-1].id if len(rows) > limit else None


async def get_for_staff(*, actor: Principal, policy_id: int) -> Policy:
    _require_staff(actor)
    policy = await Policy.get_or_none(id=policy_id) if _id_ok(policy_id) else None
    if policy is None:
        raise not_found("政策")
    return policy


# --- residents ------------------------------------------------------------------------------
async def get_published(policy_id: int) -> Policy:
    policy = (await Policy.get_or_none(id=policy_id, status=PolicyStatus.published)
              if _id_ok(policy_id) else None)
    if policy is None:
        raise not_found("政策")
    return policy


@dataclass(frozen=True)
class Match:
    policy: Policy
    for_person: bool
    enterprises: list[Enterprise]


async def for_me(*, user_id: int) -> list[Match]:
    """Published policies that fit the caller's own profile or any enterprise they act for."""
    # A person's facts (age, disability, ...) show through matches: only to its proven account.
    person = await verified_person_of(user_id)
    agencies = await EnterpriseAgent.filter(user_id=user_id).select_related("enterprise")
    ents = [a.enterprise for a in agencies]
    qs = Policy.filter(status=PolicyStatus.published).order_by("-published_at", "-id")
    out: list[Match] = []
    for policy in await qs:
        if policy.audience is Audience.person:
            if person is not None and person_matches(
                policy.criteria, age=people.age_of(person), tags=person.tags
            ):
                out.append(Match(policy=policy, for_person=True, enterprises=[]))
        else:
            hits = [e for e in ents if enterprise_matches(policy.criteria, e)]
            if hits:
                out.append(Match(policy=policy, for_person=False, enterprises=hits))
    return out


# --- per-theme muting -----------------------------------------------------------------------
async def muted_themes(*, user_id: int) -> list[str]:
    rows = await PolicyThemeMute.filter(user_id=user_id).order_by("theme").values("theme")
    return [str(r["theme"]) for r in rows]


async def set_theme_muted(*, user_id: int, theme: str, muted: bool) -> list[str]:
    """Mute or unmute pushes about one theme; idempotent both ways."""
    if muted:
        # A concurrent identical request may win the insert; muted is muted.
        with contextlib.suppress(IntegrityError):
            await PolicyThemeMute.get_or_create(user_id=user_id, theme=theme)
    else:
        await PolicyThemeMute.filter(user_id=user_id, theme=theme).delete()
    return await muted_themes(user_id=user_id)


# --- push -----------------------------------------------------------------------------------
async def _subscribers(after: int) -> list[int]:
    """Users who can receive the template now, by user id, one batch."""
    rows = await SubscriptionBalance.filter(
        Q(long_term=True) | Q(balance__gt=0), template=TEMPLATE, muted=False, user_id__gt=after
    ).order_by("user_id").limit(_BATCH).values("user_id")
    return [int(r["user_id"]) for r in rows]


async def _matching(policy: Policy, user_ids: list[int]) -> list[int]:
    if policy.theme:
        muted = {int(r["user_id"]) for r in await PolicyThemeMute.filter(
            user_id__in=user_ids, theme=policy.theme).values("user_id")}
        user_ids = [u for u in user_ids if u not in muted]
        if not user_ids:
            return []
    if policy.audience is Audience.person:
        users = await User.filter(id__in=user_ids, is_active=True, person_id__isnull=False) \
            .select_related("person")
        return [u.id for u in users if isinstance(u.person, Person) and person_matches(
            policy.criteria, age=people.age_of(u.person), tags=u.person.tags)]
    agencies = await EnterpriseAgent.filter(user_id__in=user_ids, user__is_active=True) \
        .select_related("enterprise")
    return sorted({a.user_id for a in agencies  # type: ignore[attr-defined]
                   if enterprise_matches(policy.criteria, a.enterprise)})


def message_data(policy: Policy) -> dict[str, Any]:
    published: datetime = clock.local(policy.published_at or clock.now())
    # Flat values (the gateway wraps them); "thing" values are capped at 20 characters.
    return {"thing1": policy.title[:20], "thing2": (policy.department or "庆阳市")[:20],
            "time3": f"{published:%Y-%m-%d}"}


async def push_policy(policy_id: int) -> int:
    """Notify every matching subscriber once. Returns how many notifications this run created
    (a retry or a concurrent run creates only what is still missing)."""
    policy = await Policy.get_or_none(id=policy_id)
    if policy is None or policy.status is not PolicyStatus.published:
        return 0
    data = message_data(policy)
    created = 0
    after = 0
    while True:
        batch = await _subscribers(after)
        if not batch:
            break
        after = batch[-1]
        for uid in await _matching(policy, batch):
            note = await notifications.notify(
                user_id=uid, template=TEMPLATE, data=data,
                dedup_key=f"policy:{policy.id}:user:{uid}",
                page=f"pages/policy/detail?id={policy.id}",
                # City-wide content: no hall; its department's approvers count it.
                department=policy.department)
            if note is not None:
                created += 1
    log.info("policy pushed", extra={"policy_id": policy.id, "notified": created})
    return created


@outbox.handler(PUSH_JOB)
async def _push_job(payload: dict[str, Any]) -> None:
    await push_policy(int(payload["policy_id"]))


# --- seed -----------------------------------------------------------------------------------
# The demo policies carry no theme; these follow the themes of the items they relate to, so
# per-theme muting has something to act on in the demo.
_DEMO_THEMES = {"P-001": "养老服务", "P-002": "残疾人服务", "P-003": "生育收养",
                "P-004": "就业创业", "P-005": "就业创业", "P-006": "就业创业",
                "P-007": "税费办理", "P-008": "税费办理", "P-009": "市场主体",
                "P-010": "优抚安置"}


async def seed_policies(data: dict[str, Any]) -> None:
    """Demo policies, already published (seeding never messages anyone). Existing policies are
    left as staff last saved them. Enterprises whose demo facts imply a tag get it."""
    now = clock.now()
    created = False
    for p in data.get("policies", []):
        p = {"theme": _DEMO_THEMES.get(p["code"], ""), **p}
        if await Policy.exists(code=p["code"]):
            continue
        audience = Audience(p["audience"])
        try:
            await Policy.create(
                code=p["code"], title=p["title"], department=p.get("department", ""),
                theme=p.get("theme", ""), audience=audience,
                criteria=parse_criteria(audience, p.get("criteria", {})),
                summary=p.get("summary", ""), status=PolicyStatus.published, published_at=now)
            created = True
        except IntegrityError:
            continue  # seeded concurrently
    if not created:
        return  # tagged when the demo policies first arrived; staff may have untagged since
    for ent in await Enterprise.filter(industry__in=["software"]):
        # A small software firm in the demo is the 科技型中小企业 the P-008 example targets.
        if ent.size in ("micro", "small", "medium") and "tech_sme" not in (ent.tags or []):
            ent.tags = sorted({*(ent.tags or []), "tech_sme"})
            await ent.save(update_fields=["tags"])
