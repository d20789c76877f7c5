"""`python manage.py jobs`: background work in a process of its own (docs/foundation.md "Jobs").
A notice promised in a transaction here is delivered by that separate process, which shares only
the database and Redis with us; SIGTERM stops it cleanly; on the embedded default it refuses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from models.messages import Message
from models.outbox import OutboxMessage
from models.users import User
from services import notifications
from tests.conftest import REDIS_URL, Backend

ROOT = Path(__file__).resolve().parents[2]


def _jobs(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "manage.py", "jobs"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


@pytest.mark.mysql
async def test_a_job_process_delivers_what_a_transaction_promised(backend: Backend) -> None:
    user = await User.create(openid="jobs-process-resident")
    async with in_transaction() as conn:
        await notifications.notify_after_commit(
            user_id=user.id, template="appointment_booked", data={"thing1": "大厅"},
            dedup_key="jobs-process:1", using_db=conn)
    proc = _jobs({"XQ_DATABASE_URL": backend.database_url, "XQ_REDIS_URL": REDIS_URL,
                  "XQ_WECHAT_MODE": "stub", "XQ_OUTBOX_POLL_SECONDS": "0.2"})
    try:
        deadline = time.monotonic() + 30
        while not await Message.filter(user_id=user.id).exists():
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the job process delivered nothing in 30 s"
            await asyncio.sleep(0.2)
        row = await OutboxMessage.get(dedup_key="notify:jobs-process:1")
        assert row.status == "delivered"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
    assert code == 0


def test_the_embedded_default_runs_its_jobs_in_the_server() -> None:
    proc = _jobs({"XQ_REDIS_URL": "memory://"})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 78
    assert b"shared Redis" in out
