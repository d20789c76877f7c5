"""The one place that knows how the ORM is configured and opened."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

import pymysql  # type: ignore[import-untyped]
from tortoise import Tortoise, connections
from tortoise.backends.base.client import (
    PoolConnectionWrapper,
    TransactionalDBClient,
    TransactionContextPooled,
)
from tortoise.connection import get_connections
from tortoise.exceptions import DBConnectionError, OperationalError
from tortoise.models import Model

from models import MODEL_MODULES
from services import breaker
from services.settings import Settings, get_settings

TIMEZONE = "Asia/Shanghai"
T = TypeVar("T")
M = TypeVar("M", bound=Model)
log = logging.getLogger(__name__)


def tortoise_config(database_url: str | None = None, *, bounded: bool = False) -> dict[str, Any]:
    """``bounded`` (the serving app) adds the connect timeout and MariaDB's per-statement
    limit; migrations and tests run without them (an ALTER may rightly take minutes)."""
    url = database_url or get_settings().database_url
    if url.startswith("mysql://") and "charset=" not in url:
        # utf8mb4: residents' names include characters outside the BMP.
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    if bounded and url.startswith("mysql://"):
        s = get_settings()
        if "connect_timeout=" not in url:
            url += f"&connect_timeout={s.db_connect_timeout_seconds:g}"
        if s.db_statement_timeout_seconds > 0 and "init_command=" not in url:
            # MariaDB's max_statement_time: a runaway query on a live server is stopped by the
            # server itself (MySQL proper names it max_execution_time: set the setting to 0
            # there). A server that does not answer at all is bounded client-side: the
            # request deadline and the pool-acquire timeout (install_guards).
            url += "&init_command=" + quote(
                f"SET SESSION max_statement_time={s.db_statement_timeout_seconds:g}")
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
    install_guards()
    await Tortoise.init(config=tortoise_config(settings.database_url, bounded=True),
                        _enable_global_fallback=True)
    # Connect now rather than lazily on the first query: requests start arriving while the
    # after-start listeners still run, and two first queries racing to open the lazy
    # connection hung the worker for good (reproduced under a readiness probe).
    await connections.get("default").execute_query("SELECT 1")


async def close_db() -> None:
    await Tortoise.close_connections()


async def ping() -> bool:
    """The readiness probe's question: does the database answer a trivial query now?"""
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:
        return False
    return True


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


def for_update(conn: Any) -> str:
    """The locking clause of hand-written SQL: InnoDB locks the rows read; SQLite has no row
    locks (a writing transaction holds the whole file), so nothing."""
    return "" if conn.capabilities.dialect == "sqlite" else " FOR UPDATE"


def columns(model: type[Model], alias: str, conn: Any, *, prefix: str = "",
            only: tuple[str, ...] | None = None) -> str:
    """Columns of ``model`` for hand-written SQL — all, or ``only`` these — as
    ``alias.col AS <prefix>col``, quoted for the dialect; ``instance`` builds the model from
    the row. Name only what the caller uses: every column costs the driver a metadata packet
    to parse (a slot and its hall in full were most of a booking's first read)."""
    return _columns(model, alias, conn.capabilities.dialect, prefix, only)


@functools.cache
def _columns(model: type[Model], alias: str, dialect: str, prefix: str,
             only: tuple[str, ...] | None) -> str:
    q = '"' if dialect == "sqlite" else "`"
    return ", ".join(f"{alias}.{q}{c}{q} AS {q}{prefix}{c}{q}"
                     for c in (only or sorted(model._meta.db_fields)))


@functools.cache
def _blank(model: type[Model]) -> dict[str, None]:
    return dict.fromkeys(model._meta.db_fields)


def instance(model: type[M], row: dict[str, Any]) -> M:
    """A model instance from a hand-written row, values through the fields' own converters
    (as the ORM reads them). From some columns only, the rest are None and the instance is
    *partial*: Tortoise refuses to save it whole, so a half-read row can't overwrite one."""
    whole = len(row) >= len(model._meta.db_fields)
    obj = model._init_from_db(**(row if whole else {**_blank(model), **row}))
    obj._partial = not whole
    return obj


def has_model(name: str) -> bool:
    """Whether the ORM knows this model (a deployment may run without some domains)."""
    apps = Tortoise.apps
    return apps is not None and any(label == "models" and name in models
                                    for label, models in apps.items())


# --- Bounded waits on MySQL ----------------------------------------------------------------------
# aiomysql bounds only the TCP connect; a frozen server (SIGSTOP, a hung host) still accepts the
# connection in the kernel and then never answers the handshake or a query, and the pool waits
# without limit for a free connection. These guards put every pool acquisition (plain queries and
# transactions alike) under the database breaker and a timeout, and make sure a connection whose
# query was abandoned (the request deadline cancelled it, or the server dropped it) is closed
# rather than returned to the pool with an unread reply on it.

_OUTAGE_CODES = {2002, 2003, 2006, 2013, 2055}  # can't connect / gone away / lost during query
_guards_installed = False


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable (as opposed to refusing a statement)."""
    if isinstance(exc, DBConnectionError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, pymysql.err.InterfaceError):  # the driver's "connection already closed"
        return True
    if isinstance(exc, pymysql.err.OperationalError):  # raw, from the pool's connect
        return bool(exc.args) and exc.args[0] in _OUTAGE_CODES
    if isinstance(exc, OperationalError):
        inner = exc.args[0] if exc.args else None
        code = inner.args[0] if isinstance(inner, Exception) and inner.args else None
        return code in _OUTAGE_CODES
    return False


def is_deadlock(exc: BaseException) -> bool:
    """InnoDB chose this transaction as a deadlock victim (1213) or its lock wait timed out
    (1205); SQLite says the file is locked. All are safe to run again from the start."""
    if not isinstance(exc, OperationalError):
        return False
    inner = exc.args[0] if exc.args else None
    code = inner.args[0] if isinstance(inner, Exception) and inner.args else None
    return code in (1213, 1205) or "database is locked" in str(exc)


def in_transaction_now(connection_name: str = "default") -> bool:
    """Whether this task already runs inside a transaction (an outer caller opened one)."""
    return isinstance(connections.get(connection_name), TransactionalDBClient)


async def retrying(fn: Callable[[], Awaitable[T]], *, attempts: int = 8) -> T:
    """Run a whole transaction again when the database resolved a lock cycle by rolling it
    back. Inside an outer transaction there is nothing to retry here (the rollback undid the
    outer work too): the outermost ``retrying`` does it."""
    if in_transaction_now():
        return await fn()
    for attempt in range(attempts):
        try:
            return await fn()
        except OperationalError as exc:
            if not is_deadlock(exc) or attempt == attempts - 1:
                raise
            log.info("transaction retried after deadlock", extra={"attempt": attempt})
            # Jittered back-off: two victims retrying in lockstep would collide again.
            await asyncio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise AssertionError("unreachable")


def _abandon(conn: Any) -> None:
    """Close a connection whose reply we stopped waiting for; the pool drops closed ones and
    the server rolls back whatever it had open."""
    with contextlib.suppress(Exception):  # a dead socket may refuse to close; it's gone anyway
        conn.close()


def install_guards() -> None:
    global _guards_installed
    if _guards_installed:
        return
    _guards_installed = True
    plain_enter, plain_exit = PoolConnectionWrapper.__aenter__, PoolConnectionWrapper.__aexit__
    tx_exit = TransactionContextPooled.__aexit__

    async def bounded(enter: Callable[[], Awaitable[T]]) -> T:
        # asyncio.timeout, not wait_for: entering a transaction sets Tortoise's context
        # variable, which must happen in this task, not in a helper task wait_for would make.
        b = breaker.database
        b.check()
        try:
            async with asyncio.timeout(get_settings().db_acquire_timeout_seconds):
                return await enter()
        except Exception as exc:
            if is_outage(exc):
                b.failure()
                raise breaker.DatabaseUnavailable(
                    f"database unavailable: {type(exc).__name__}") from exc
            raise

    def settle(exc: BaseException | None) -> bool:
        """Feed the breaker; True when the connection must not be reused: the server is
        unreachable, or the caller was cancelled (deadline, client gone) mid-reply."""
        if exc is not None and is_outage(exc):
            breaker.database.failure()
            return True
        if isinstance(exc, asyncio.CancelledError):
            return True
        breaker.database.success()
        return False

    async def guarded_plain_enter(self: PoolConnectionWrapper[Any]) -> Any:
        return await bounded(lambda: plain_enter(self))

    async def guarded_plain_exit(self: PoolConnectionWrapper[Any], exc_type: Any,
                                 exc: Any, tb: Any) -> None:
        if settle(exc) and self.connection is not None:
            _abandon(self.connection)
        await plain_exit(self, exc_type, exc, tb)

    async def acquire_for(self: TransactionContextPooled) -> None:
        await self.ensure_connection()
        self.client._connection = await self.client._parent._pool.acquire()

    async def guarded_tx_enter(self: TransactionContextPooled) -> Any:
        # Tortoise's __aenter__ with each wait bounded, and no half-entered transaction left
        # behind: if BEGIN fails, the context variable is reset and the connection dropped.
        await bounded(lambda: acquire_for(self))
        self.token = get_connections().set(self.connection_name, self.client)
        try:
            await bounded(self.client.begin)
        except BaseException:
            get_connections().reset(self.token)
            _abandon(self.client._connection)
            self.client._parent._pool.release(self.client._connection)
            raise
        return self.client

    async def guarded_tx_exit(self: TransactionContextPooled, exc_type: Any, exc: Any,
                              tb: Any) -> None:
        if settle(exc):
            # No ROLLBACK round trip to a server that isn't answering: closing the connection
            # rolls the transaction back server-side, and the pool drops the closed connection.
            _abandon(self.client._connection)
            self.client._finalized = True
        await tx_exit(self, exc_type, exc, tb)

    PoolConnectionWrapper.__aenter__ = guarded_plain_enter  # type: ignore[method-assign]
    PoolConnectionWrapper.__aexit__ = guarded_plain_exit  # type: ignore[method-assign,assignment]
    TransactionContextPooled.__aenter__ = guarded_tx_enter  # type: ignore[method-assign]
    TransactionContextPooled.__aexit__ = guarded_tx_exit  # type: ignore[method-assign,assignment]


def reset_breaker() -> None:
    breaker.database.reset()
