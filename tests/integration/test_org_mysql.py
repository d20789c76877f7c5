"""Memberships under concurrency: the same appointment made twice at once holds once."""

import asyncio

import pytest

from models.catalogue import Hall
from models.org import Membership, Position
from models.users import Role, User, UserRole
from services import org, scope
from services.auth import Principal
from services.errors import AppError, ErrorCode


@pytest.mark.mysql
async def test_concurrent_identical_appointments_hold_once(app):
    hall = await Hall.create(code="H-T-1", name="测试大厅", level="county", county="西峰区",
                             lat=35.7, lng=107.6, hours={"always": True})
    user = await User.create(openid="o-org-concurrent")
    admin_user = await User.create(openid="o-org-admin")
    admin = Principal(admin_user.id, frozenset({"admin"}))

    async def appoint():
        try:
            return await org.add_membership(actor=admin, user_id=user.id,
                                            position=Position.clerk, hall_code=hall.code)
        except AppError as exc:
            return exc.code

    results = await asyncio.gather(*(appoint() for _ in range(12)))
    made = [r for r in results if isinstance(r, Membership)]
    assert len(made) == 1
    assert set(r for r in results if not isinstance(r, Membership)) <= {ErrorCode.org_conflict}
    assert await Membership.filter(user_id=user.id).count() == 1
    assert await UserRole.filter(user_id=user.id, role=Role.staff).count() == 1
    clerk = Principal(user.id, frozenset({"resident", "staff"}))
    assert (await scope.scope_of(clerk)).hall_codes == {"H-T-1"}
