"""The migrations build the schema from zero on this run's backend (SQLite or MySQL), the demo
data loads into it, and the models agree with the migrations.

Runs ``manage.py`` in subprocesses: migrating re-initialises the ORM, which must not disturb
the connection this test session shares.
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services import db
from tests.conftest import BACKEND, MYSQL_URL

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XQ_DATABASE_URL": database_url, "XQ_REDIS_URL": "memory://",
           "XQ_ENV": "test"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
async def empty_database(tmp_path):
    if BACKEND == "real":
        name = f"xq_mig_{uuid.uuid4().hex[:8]}"
        url = await db.create_database(MYSQL_URL, name)
        try:
            yield url
        finally:
            await db.drop_database(MYSQL_URL, name)
    else:
        yield f"sqlite://{tmp_path / 'fresh.sqlite3'}"


async def test_migrations_apply_from_zero_and_take_the_demo_data(empty_database):
    migrated = _manage("migrate", database_url=empty_database)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    seeded = _manage("seed", database_url=empty_database)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    again = _manage("migrate", database_url=empty_database)  # nothing left to apply
    assert again.returncode == 0, again.stdout + again.stderr


def test_models_and_migrations_agree():
    result = _manage("check-migrations", database_url="sqlite://:memory:")
    assert result.returncode == 0, result.stdout + result.stderr
