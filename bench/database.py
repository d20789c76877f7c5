"""The throwaway database a benchmark runs against: MariaDB when reachable, else SQLite."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tortoise import Tortoise

from services import cache, db

MYSQL_URL = os.environ.get("XQ_BENCH_MYSQL_URL", "mysql://root:@127.0.0.1:3306")


@asynccontextmanager
async def bench_database(*, pool: int, sqlite: bool = False) -> AsyncIterator[str]:
    """Open the ORM on a fresh schema and yield a label naming the backend; drop it after."""
    use_mysql = db.server_reachable(MYSQL_URL, 3306) and not sqlite
    name = f"xq_bench_{uuid.uuid4().hex[:8]}"
    if use_mysql:
        await db.create_database(MYSQL_URL, name)
        url = f"{MYSQL_URL.rstrip('/')}/{name}?maxsize={pool}"
    else:
        url = f"sqlite://{tempfile.mkdtemp()}/bench.sqlite3"
    cache.use(cache.connect("memory://"))
    try:
        await Tortoise.init(config=db.tortoise_config(url))
        await Tortoise.generate_schemas()
        yield f"MySQL/MariaDB, pool {pool}" if use_mysql else "SQLite"
    finally:
        await Tortoise.close_connections()
        if use_mysql:
            await db.drop_database(MYSQL_URL, name)
