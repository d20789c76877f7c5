"""Demo logins, one per role, for the stub platform: log in with the code and you are them.

Only meaningful with the stub WeChat platform, whose openid for a code is known in advance.
"""

from __future__ import annotations

from miniprogram_stub.platform import FakeWeChatPlatform
from models.enterprises import Enterprise, EnterpriseAgent
from models.users import Person, Role, User, UserRole
from services import people

# code -> (roles, ID number of the person bound to the account, or None)
ACCOUNTS: dict[str, tuple[tuple[Role, ...], str | None]] = {
    "demo-admin": ((Role.admin, Role.staff), None),
    "demo-staff": ((Role.staff,), None),
    "demo-helper": ((Role.helper,), None),
    "demo-helper2": ((Role.helper,), None),
    "demo-worker": ((Role.community_worker,), None),
    "demo-agent": ((Role.enterprise_agent,), None),
    "zhang": ((), "621002194103050316"),  # 张建国, 85, elderly
    "li": ((), "621021197508120426"),  # 李秀兰, disabled
    "wang": ((), "621002200302170132"),  # 王小明, graduate
    "zhao": ((), "621026199206300246"),  # 赵丽, child under 3
}
AGENT_ENTERPRISE = "91621000MA700QY00N"
GRID_WORKER = "demo-worker"
GRID = {"county": "西峰区", "community": "长庆社区", "contact_name": "长庆社区网格员",
        "contact_phone": "0934-8212345"}


async def seed(appid: str) -> None:
    platform = FakeWeChatPlatform(appid=appid)
    for code, (roles, id_number) in ACCOUNTS.items():
        user, created = await User.get_or_create(openid=platform.openid_for(code),
                                                 defaults={"nickname": code})
        if not created:
            # Set up once: an admin may since have revoked a role or ended a grid assignment,
            # and seeding again on the next start must not hand it back.
            continue
        for role in roles:
            await UserRole.get_or_create(user=user, role=role)
        if id_number and user.person_id is None:  # type: ignore[attr-defined]
            person = await Person.get(id_number_hash=people.id_lookup_hash(id_number))
            if not await User.filter(person=person).exists():
                user.person = person
                await user.save(update_fields=["person_id"])
        if Role.enterprise_agent in roles:
            ent = await Enterprise.get_or_none(uscc=AGENT_ENTERPRISE)
            if ent is not None:
                await EnterpriseAgent.get_or_create(enterprise=ent, user=user)
        if code == GRID_WORKER:
            # 一码通: the demo community worker looks after the 长庆社区 grid (plate D-XF-0001).
            from services.codes import assign_grid_worker

            await assign_grid_worker(user_id=user.id, **GRID)
        from services.helpers import DEMO_PROFILES, ensure_profile

        if code in DEMO_PROFILES:
            # 帮办: both demo helpers sit at the 西峰区 hall, so "ask for help" has someone.
            await ensure_profile(user_id=user.id, **DEMO_PROFILES[code])
