"""Demo logins, one per role, for the stub platform: log in with the code and you are them.

Only meaningful with the stub WeChat platform, whose openid for a code is known in advance.
"""

from __future__ import annotations

from tortoise.expressions import Q

from miniprogram_stub.platform import FakeWeChatPlatform
from models.catalogue import Hall
from models.enterprises import Enterprise, EnterpriseAgent
from models.org import Department, Membership, Position, Region
from models.users import IdentityLevel, Person, Role, User, UserRole
from services import clock, people

# code -> (roles, ID number of the person bound to the account, or None)
ACCOUNTS: dict[str, tuple[tuple[Role, ...], str | None]] = {
    "demo-admin": ((Role.admin, Role.staff), None),
    "demo-staff": ((Role.staff,), None),
    "demo-helper": ((Role.helper,), None),
    "demo-helper2": ((Role.helper,), None),
    "demo-worker": ((Role.community_worker,), None),
    "demo-agent": ((Role.enterprise_agent,), "62100219850412031X"),  # 陈志强
    # The organisation (models/org.py): positions are in POSITIONS below.
    "demo-staff2": ((Role.staff,), None),
    "demo-manager": ((Role.staff,), None),
    "demo-approver": ((Role.staff,), None),
    "demo-supervisor": ((Role.staff,), None),
    "zhang": ((), "621002194103050316"),  # 张建国, 85, elderly
    "li": ((), "621021197508120426"),  # 李秀兰, disabled
    "wang": ((), "621002200302170132"),  # 王小明, graduate
    "zhao": ((), "621026199206300246"),  # 赵丽, child under 3
    # 综窗 (issue 12): approvers of the two departments of 企业注销登记一件事 (YJS-06).
    "demo-approver-sj": ((Role.staff,), None),
    "demo-approver-sw": ((Role.staff,), None),
    "demo-approver-gjj": ((Role.staff,), None),  # 市住房公积金中心 (the online journey's item)
}
# code -> positions (position, hall code / department name (a city department) / region code)
POSITIONS: dict[str, list[tuple[Position, str]]] = {
    "demo-admin": [(Position.clerk, "H-QY-000")],  # sees everything; scans at the city hall
    "demo-staff": [(Position.clerk, "H-XF-000")],  # 西峰区政务服务中心 综窗
    "demo-staff2": [(Position.clerk, "H-QC-000")],  # 庆城县: another hall, to show scope
    "demo-manager": [(Position.hall_manager, "H-XF-000")],
    "demo-approver": [(Position.approver, "市民政局")],
    "demo-supervisor": [(Position.supervisor, "621002")],  # 西峰区 and its 街道/乡镇
    "demo-helper": [(Position.helper, "H-XF-000")],
    # A helper may serve several halls: the district centre and 北街街道.
    "demo-helper2": [(Position.helper, "H-XF-000"), (Position.helper, "H-XF-101")],
    "demo-approver-sj": [(Position.approver, "市市场监管局")],
    "demo-approver-sw": [(Position.approver, "市税务局")],
    "demo-approver-gjj": [(Position.approver, "市住房公积金中心")],
}
# Every other hall gets a clerk, a manager and a helper of its own (login code
# "<position>@<hall code>", e.g. clerk@H-HX-000), so every hall is staffed in the demo.
STAFFED_BY_DEMO_ACCOUNTS = "H-XF-000"
AGENT_ENTERPRISE = "91621000MA700QY00N"
GRID_WORKER = "demo-worker"
GRID = {"county": "西峰区", "community": "长庆社区", "contact_name": "长庆社区网格员",
        "contact_phone": "0934-8212345"}


async def seed(appid: str) -> None:
    platform = FakeWeChatPlatform(appid=appid)
    created_now: set[str] = set()
    for code, (roles, id_number) in ACCOUNTS.items():
        user, created = await User.get_or_create(openid=platform.openid_for(code),
                                                 defaults={"nickname": code})
        if not created:
            # Set up once: an admin may since have revoked a role, ended a grid assignment or
            # a position, and seeding again on the next start must not hand it back.
            continue
        created_now.add(code)
        for role in roles:
            await UserRole.get_or_create(user=user, role=role)
        if id_number and user.person_id is None:  # type: ignore[attr-defined]
            person = await Person.get(id_number_hash=people.id_lookup_hash(id_number))
            if not await User.filter(person=person).exists():
                # Demo residents come face-verified (their faces are the stub platform's
                # DEMO_FACES), so the 人码 and everything else needing proof works at once.
                user.person = person
                user.identity_level = IdentityLevel.face
                user.identity_verified_at = clock.now()
                await user.save(update_fields=["person_id", "identity_level",
                                               "identity_verified_at"])
        if Role.enterprise_agent in roles:
            ent = await Enterprise.get_or_none(uscc=AGENT_ENTERPRISE)
            if ent is not None:
                await EnterpriseAgent.get_or_create(enterprise=ent, user=user)
        if code == GRID_WORKER:
            # 一码通: the demo community worker looks after the 长庆社区 grid (plate D-XF-0001).
            from services.onbehalf import assign_grid_worker

            await assign_grid_worker(user_id=user.id, **GRID)
        from services.helpers import DEMO_PROFILES, ensure_profile

        if code in DEMO_PROFILES:
            # 帮办: both demo helpers sit at the 西峰区 hall, so "ask for help" has someone.
            await ensure_profile(user_id=user.id, **DEMO_PROFILES[code])
    for code, held in POSITIONS.items():
        if code not in created_now:
            continue
        user = await User.get(openid=platform.openid_for(code))
        for position, unit in held:
            await _hold(user, position, unit)
    await _staff_every_hall(platform)


async def _hold(user: User, position: Position, unit: str) -> None:
    from services import org

    if await Membership.filter(user=user, position=position).filter(
            Q(hall__code=unit) | Q(department__name=unit) | Q(region__code=unit)).exists():
        return
    if org.UNIT_OF[position] == "hall":
        if await Hall.exists(code=unit):
            await org.add_membership(actor=None, user_id=user.id, position=position,
                                     hall_code=unit)
    elif org.UNIT_OF[position] == "department":
        dept = await Department.get_or_none(name=unit, region__code="621000")
        if dept is not None:
            await org.add_membership(actor=None, user_id=user.id, position=position,
                                     department_id=dept.id)
    elif await Region.exists(code=unit):  # like halls and departments: only if seeded
        await org.add_membership(actor=None, user_id=user.id, position=position,
                                 region_code=unit)


_HALL_TEAM = ((Position.clerk, "综窗受理员"), (Position.hall_manager, "大厅负责人"),
              (Position.helper, "帮办员"))


async def _staff_every_hall(platform: FakeWeChatPlatform) -> None:
    from services.helpers import ensure_profile

    departments = sorted(set(await Department.filter(region__code="621000").values_list(
        "name", flat=True)))
    for hall in await Hall.filter(is_active=True).order_by("code"):
        if hall.code == STAFFED_BY_DEMO_ACCOUNTS:
            continue
        for position, title in _HALL_TEAM:
            code = f"{position.value}@{hall.code}"
            user, created = await User.get_or_create(
                openid=platform.openid_for(code), defaults={"nickname": f"{hall.name}{title}"})
            if not created:
                continue  # set up once, like the named demo accounts
            await _hold(user, position, hall.code)
            if position is Position.helper:
                await ensure_profile(user_id=user.id, hall_code=hall.code,
                                     departments=[str(d) for d in departments],
                                     themes=["养老服务", "残疾人服务"])
