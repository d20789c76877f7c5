"""Subscribe messages: the balance a user granted per template, and sending exactly once.

``notify`` claims a unique ``dedup_key`` row before sending, so a retried job, a second worker
or a replayed event can't message the same user twice about the same thing. A send that fails
(no balance, muted theme, user refused, WeChat down) never fails the caller; the row records why.
"""

from __future__ import annotations

import logging
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from models.notifications import Notification, SubscriptionBalance
from models.users import User
from services import clock, outbox
from services.settings import get_settings
from services.wechat import wechat

log = logging.getLogger(__name__)


def template_id(template: str) -> str:
    return get_settings().wechat_templates.get(template, template)


async def record_subscription(
    *, user_id: int, template: str, accepted: bool, long_term: bool = False
) -> SubscriptionBalance:
    """What wx.requestSubscribeMessage answered: each acceptance of a one-time template is
    worth one message."""
    row, _ = await SubscriptionBalance.get_or_create(user_id=user_id, template=template)
    if accepted:
        if long_term:
            row.long_term = True
        else:
            await SubscriptionBalance.filter(id=row.id).update(balance=F("balance") + 1)
        row.muted = False
        await row.save(update_fields=["long_term", "muted", "updated_at"])
    await row.refresh_from_db()
    return row


async def set_muted(*, user_id: int, template: str, muted: bool) -> SubscriptionBalance:
    row, _ = await SubscriptionBalance.get_or_create(user_id=user_id, template=template)
    row.muted = muted
    await row.save(update_fields=["muted", "updated_at"])
    return row


async def _spend(user_id: int, template: str) -> str | None:
    """Take one message from the user's balance; return why not if we can't."""
    row = await SubscriptionBalance.get_or_none(user_id=user_id, template=template)
    if row is None:
        return "not_subscribed"
    if row.muted:
        return "muted"
    if row.long_term:
        return None
    # Conditional decrement: two senders can't both spend the last unit.
    spent = await SubscriptionBalance.filter(id=row.id, balance__gt=0).update(
        balance=F("balance") - 1
    )
    return None if spent else "no_balance"


async def notify(
    *, user_id: int, template: str, data: dict[str, Any], dedup_key: str, page: str = ""
) -> Notification | None:
    """Send once per ``dedup_key``. Returns the new record, or None if it was already handled."""
    try:
        note = await Notification.create(
            user_id=user_id, template=template, dedup_key=dedup_key[:191], data=data, page=page
        )
    except IntegrityError:
        return None
    skipped = await _spend(user_id, template)
    if skipped:
        note.status, note.detail = "skipped", skipped
        await note.save(update_fields=["status", "detail"])
        return note
    user = await User.get(id=user_id)
    outcome = await wechat().send_subscribe_message(
        openid=user.openid, template_id=template_id(template), data=data, page=page or None
    )
    note.status = "sent" if outcome.ok else "failed"
    note.detail = outcome.detail
    note.sent_at = clock.now() if outcome.ok else None
    await note.save(update_fields=["status", "detail", "sent_at"])
    if not outcome.ok:
        log.info("subscribe message not delivered", extra={"errcode": outcome.errcode})
    return note


SEND = "notifications.send"


async def notify_after_commit(
    *, user_id: int, template: str, data: dict[str, Any], dedup_key: str, page: str = "",
    using_db: BaseDBAsyncClient | None = None,
) -> None:
    """Promise ``notify(...)`` in the caller's transaction (pass its connection): the outbox
    sends it once the transaction has committed, and never if it rolls back. This is how a
    request sends a subscribe message; ``notify`` itself is what the outbox (and sweeps that
    already run after their commits) call."""
    await outbox.add(SEND, {"user_id": user_id, "template": template, "data": data,
                            "dedup_key": dedup_key, "page": page},
                     f"notify:{dedup_key}", using_db=using_db)


@outbox.handler(SEND)
async def _send_promised(payload: dict[str, Any]) -> None:
    await notify(user_id=int(payload["user_id"]), template=str(payload["template"]),
                 data=dict(payload["data"]), dedup_key=str(payload["dedup_key"]),
                 page=str(payload.get("page", "")))
