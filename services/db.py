"""The one place that knows how the ORM is configured and opened."""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import urlparse

from tortoise import Tortoise, connections

from models import MODEL_MODULES
from services.settings import Settings, get_settings

TIMEZONE = "Asia/Shanghai"


def tortoise_config(database_url: str | None = None) -> dict[str, Any]:
    url = database_url or get_settings().database_url
    if url.startswith("mysql://") and "charset=" not in url:
        # utf8mb4: residents' names include characters outside the BMP.
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    if url.startswith("sqlite://") and url != "sqlite://:memory:" and "synchronous=" not in url:
        # WAL (Tortoise's default) with synchronous=NORMAL: commits don't wait for fsync; a
        # power cut can lose the last commits but never corrupts the file. The embedded default
        # is for laptops and demos, where a stalled commit costs more than that.
        url += ("&" if "?" in url else "?") + "synchronous=NORMAL"
    return {
        "connections": {"default": url},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "migrations",
            }
        },
        "use_tz": True,
        "timezone": TIMEZONE,
    }


# For Tortoise's own CLI: `tortoise -c services.db.TORTOISE_ORM migrate`. Made on access, not
# at import: importing the app must not read the settings, so a refused start is reported by
# the app factory (a clean message and a non-zero exit), not as a crash inside an import.
def __getattr__(name: str) -> Any:
    if name == "TORTOISE_ORM":
        return tortoise_config()
    raise AttributeError(name)


async def open_db(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    _ensure_sqlite_folder(settings.database_url)
    # The global fallback: Sanic runs listeners and requests in different tasks, and
    # Tortoise 1.x otherwise keeps its context per task.
    await Tortoise.init(config=tortoise_config(settings.database_url),
                        _enable_global_fallback=True)
    # Connect now rather than lazily on the first query: requests start arriving while the
    # after-start listeners still run, and two first queries racing to open the lazy
    # connection hung the worker for good (reproduced under a readiness probe).
    await connections.get("default").execute_query("SELECT 1")


async def close_db() -> None:
    await Tortoise.close_connections()


def patch_sqlite_migration_comments() -> None:
    """Tortoise 1.1's SQLite schema editor splits DDL on every ";" — including one inside a
    table comment taken from a model docstring — and then fails on the fragment. Comments are
    documentation only, so a full-width "；" keeps them readable and the DDL whole."""
    from tortoise.migrations.schema_editor.sqlite import SqliteSchemaEditor

    if getattr(SqliteSchemaEditor, "_xq_patched", False):
        return
    original = SqliteSchemaEditor._escape_comment

    def escape(self: SqliteSchemaEditor, comment: str) -> str:
        return str(original(self, comment.replace(";", "；")))

    SqliteSchemaEditor._escape_comment = escape  # type: ignore[method-assign,assignment]
    SqliteSchemaEditor._xq_patched = True  # type: ignore[attr-defined]


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite://") and url != "sqlite://:memory:":
        from pathlib import Path

        Path(url.removeprefix("sqlite://")).parent.mkdir(parents=True, exist_ok=True)


# --- Throwaway MySQL databases: tests, benchmarks and the live journey runner ------------------

_DB_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def server_reachable(url: str, default_port: int) -> bool:
    """Whether something listens at the URL's host and port (MariaDB, Redis) right now."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1",
                                       parsed.port or default_port), timeout=0.5):
            return True
    except OSError:
        return False


async def _mysql_admin(server_url: str, sql: str) -> None:
    import aiomysql

    p = urlparse(server_url)
    conn = await aiomysql.connect(host=p.hostname or "127.0.0.1", port=p.port or 3306,
                                  user=p.username or "root", password=p.password or "")
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
        await conn.commit()
    finally:
        conn.close()


async def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the MySQL server and return its Tortoise URL."""
    if not _DB_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    await _mysql_admin(server_url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                                   "COLLATE utf8mb4_unicode_ci")
    return f"{server_url.rstrip('/')}/{name}"


async def drop_database(server_url: str, name: str) -> None:
    if not _DB_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    await _mysql_admin(server_url, f"DROP DATABASE IF EXISTS `{name}`")


def placeholder(conn: Any) -> str:
    """The parameter marker of hand-written SQL on this connection: sqlite3 takes ``?``,
    aiomysql ``%s``."""
    return "?" if conn.capabilities.dialect == "sqlite" else "%s"


def has_model(name: str) -> bool:
    """Whether the ORM knows this model (a deployment may run without some domains)."""
    apps = Tortoise.apps
    return apps is not None and any(label == "models" and name in models
                                    for label, models in apps.items())
