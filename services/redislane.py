"""The hot lane: one pipelined Redis connection per client for the busiest call (the scan's
script), used only through ``services.cache`` (``GuardedRedis.hot``, ``run_script``).

Why. Under load a serving process has several scans in flight; with redis-py each one takes
a pooled connection and pays its own ``send``, its own wake-up for the reply, and the
client's machinery around the command (redis-py 8: pool lock and probe, observability hooks,
a task per send for the write timeout: ~70 µs of CPU around a GET that costs ~30 µs). Here
the commands issued during one turn of the event loop leave in one ``write``, and the replies,
which Redis sends in order, are matched to their callers in order as they arrive. Measured
with the scan bench: docs/codes.md "Speed".

What it keeps. The breaker and the one retry after a ConnectionError are the caller's
(``GuardedRedis.hot``). Each call's wait is bounded by the client's socket timeout
(``services.deadlines``); a call that times out resets the connection, failing the calls
behind it with a ConnectionError, since a Redis that stops answering one command answers no
other on that socket. A call cancelled otherwise (its request's deadline, a client gone)
leaves its reply to be read and dropped: the command may still run, as it may with any
client once written. Only commands that answer at once belong here — a blocking one (BLPOP)
would hold up every call behind it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services import deadlines


def pack(args: Sequence[Any]) -> bytes:
    """A command in RESP: text, bytes and numbers are all the lane sends (UTF-8, like the
    client's encoder). A third of redis-py's ``pack_command``, which checks every argument's
    type a dozen ways and cuts large values into chunks; byte-for-byte the same (tested)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if a is None or isinstance(a, bool):
            raise TypeError(f"not a Redis argument: {a!r}")  # as redis-py refuses them
        b = a.encode() if isinstance(a, str) else a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


class Lane:
    def __init__(self, make_connection: Any, *, timeout: float | None) -> None:
        self._make = make_connection
        self._conn: Connection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: list[tuple[bytes, asyncio.Future[Any]]] = []  # not written yet
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._flush_soon = False
        self._timeout = timeout
        self._closing: set[asyncio.Task[None]] = set()  # disconnects under way (kept alive)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def call(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((pack(args), fut))
        if not self._flush_soon:
            self._flush_soon = True
            loop.call_soon(self._flush)
        bound = deadlines.arm(self._timeout) if self._timeout else None
        try:
            return await fut
        except asyncio.CancelledError as exc:
            if bound is not None and deadlines.disarm(bound):
                self._reset(RedisConnectionError("an earlier command on this connection "
                                                 "timed out"))
                raise RedisTimeoutError("Timeout reading from Redis (hot lane)") from exc
            raise
        finally:
            if bound is not None:
                deadlines.disarm(bound)

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """A client used from another event loop than before (tests run one per test): the
        old loop's connection and tasks can't be touched from here; start afresh."""
        if self._conn is not None:
            with contextlib.suppress(Exception):  # its loop may be closed already
                self._conn._close()  # type: ignore[no-untyped-call]
        self._loop = loop
        self._conn, self._connecting, self._reader = None, None, None
        self._pending, self._flush_soon = [], False
        self._waiting.clear()

    def _flush(self) -> None:
        self._flush_soon = False
        conn = self._conn
        if conn is None or not conn.is_connected or self._reader is None:
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return  # written once connected
        batch = [(cmd, fut) for cmd, fut in self._pending if not fut.done()]
        self._pending = []
        if not batch:
            return
        writer = conn._writer
        if writer is None or writer.transport.is_closing():
            self._reset(RedisConnectionError("connection closed"), batch=batch)
            return
        # Queued before the write, so a reply can never find its caller missing.
        self._waiting.extend(fut for _, fut in batch)
        writer.write(b"".join(cmd for cmd, _ in batch))

    async def _connect(self) -> None:
        try:
            conn = self._make()
            await conn.connect()
        except BaseException as exc:
            self._connecting = None
            error = exc if isinstance(exc, Exception) else RedisConnectionError(str(exc))
            for _, fut in self._pending:
                if not fut.done():
                    fut.set_exception(error)
            self._pending = []
            if not isinstance(exc, Exception):
                raise
            return
        self._conn = conn
        self._reader = asyncio.get_running_loop().create_task(self._read(conn))
        self._connecting = None
        self._flush()

    async def _read(self, conn: Connection) -> None:
        """Replies in order, each to the oldest caller still waiting (or dropped, if that
        caller gave up). A reply with no caller means the stream is out of step: reset."""
        try:
            while True:
                reply = await conn._read_response_from_parser(disable_decoding=False)
                if not self._waiting:
                    raise RedisConnectionError("a reply nobody asked for")
                fut = self._waiting.popleft()
                if fut.done():
                    continue
                if isinstance(reply, ResponseError):
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # closed, reset, or out of step: the connection is done
            if self._conn is conn:
                self._reset(exc if isinstance(exc, RedisConnectionError)
                            else RedisConnectionError(f"{type(exc).__name__}: {exc}"))

    def _reset(self, error: Exception,
               batch: list[tuple[bytes, asyncio.Future[Any]]] | None = None) -> None:
        """Drop the connection; every call written on it and not answered fails with
        ``error`` (their callers retry once on a new one)."""
        conn, reader = self._conn, self._reader
        self._conn, self._reader = None, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        failed = list(self._waiting) + [fut for _, fut in batch or []]
        self._waiting.clear()
        for fut in failed:
            if not fut.done():
                fut.set_exception(error)
        loop = asyncio.get_running_loop()
        if conn is not None:
            closing = loop.create_task(conn.disconnect(nowait=True))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        if self._pending and not self._flush_soon:
            self._flush_soon = True  # calls not yet written go out on a new connection
            loop.call_soon(self._flush)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)  # what it held belonged to another loop: dropped, not awaited
            return
        reader, conn = self._reader, self._conn
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(RedisConnectionError("client closed"))
        self._pending = []
        self._reset(RedisConnectionError("client closed"))
        if self._connecting is not None:
            self._connecting.cancel()
        if reader is not None:
            reader.cancel()
        if conn is not None:
            await conn.disconnect(nowait=True)
