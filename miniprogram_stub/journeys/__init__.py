"""User journeys the scripted client walks against a live server.

Each domain module defines ``async def journey_<name>(j: Journeys) -> None`` functions and
lists them in its ``JOURNEYS``; ``ALL`` gathers them. Run them with
``python -m miniprogram_stub.journeys --base-url http://127.0.0.1:8000``.
Journeys use the demo accounts (``miniprogram_stub.demo_accounts``), so the server must run
with the stub WeChat platform and the demo data loaded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from miniprogram_stub.client import Journeys
from miniprogram_stub.journeys import appointments as appointment_journeys
from miniprogram_stub.journeys import approval as approval_journeys
from miniprogram_stub.journeys import cases, foundation
from miniprogram_stub.journeys import codes as code_journeys
from miniprogram_stub.journeys import feedback as feedback_journeys
from miniprogram_stub.journeys import guide as guide_journeys
from miniprogram_stub.journeys import identity as identity_journeys
from miniprogram_stub.journeys import messages as message_journeys
from miniprogram_stub.journeys import online as online_journeys
from miniprogram_stub.journeys import org as org_journeys
from miniprogram_stub.journeys import window as window_journeys

Journey = Callable[[Journeys], Awaitable[None]]

ALL: list[Journey] = [
    *foundation.JOURNEYS,
    *cases.JOURNEYS,
    *feedback_journeys.JOURNEYS,
    *guide_journeys.JOURNEYS,
    *appointment_journeys.JOURNEYS,
    *code_journeys.JOURNEYS,
    *identity_journeys.JOURNEYS,
    *message_journeys.JOURNEYS,
    *org_journeys.JOURNEYS,
    *online_journeys.JOURNEYS,
    *window_journeys.JOURNEYS,
    *approval_journeys.JOURNEYS,
]
