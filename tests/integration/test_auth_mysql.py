"""Refresh rotation under concurrency: one refresh token, many simultaneous uses."""

import asyncio

import pytest

from models.users import RefreshToken, User
from services import auth
from services.errors import AppError, ErrorCode


@pytest.mark.mysql
async def test_concurrent_refresh_of_one_token_rotates_exactly_once(app):
    user = await User.create(openid="o-concurrent")
    pair = await auth._pair(user, "fam-1", is_new=False)

    async def use():
        try:
            return await auth.refresh(refresh_token=pair.refresh_token)
        except AppError as exc:
            return exc.code

    results = await asyncio.gather(*(use() for _ in range(20)))
    winners = [r for r in results if isinstance(r, auth.TokenPair)]
    losers = [r for r in results if not isinstance(r, auth.TokenPair)]
    # The row lock lets exactly one caller rotate; every other caller is a replay, and the
    # replay detection revokes the family (the winner's new token included); callers that
    # arrive after that find a revoked token.
    assert len(winners) == 1
    assert ErrorCode.refresh_reused in losers
    assert set(losers) <= {ErrorCode.refresh_reused, ErrorCode.invalid_token}
    assert await RefreshToken.filter(family="fam-1", revoked_at=None).count() == 0
