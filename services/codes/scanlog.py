"""The scan log: every scan — ok, forbidden, expired, revoked, unrecognised — is a line naming
the scanner (id, roles, hall or community), the code (kind and a short ref, never the token),
the subject, the outcome and what was shown.

A line's way to the database: the scan script (scan.py) appends it to the Redis list
``LOG_BUFFER`` in the scan's own round trip, and the scanning process journals it to a local
file (services/scanjournal.py) before answering. ``flush_scan_logs`` (a periodic job) moves
the buffer into ``scan_logs``; ``replay_scan_journal`` writes the journals, which covers
Redis losing the buffer. Both insert with ``INSERT IGNORE`` on the scan's uid, so a line
written by both (or twice by one) is stored once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time as _time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from redis.exceptions import LockError
from tortoise.transactions import in_transaction

from models.catalogue import Hall
from models.codes import ScanLog
from models.users import Role
from services import cache, clock, db, ids, jobs, scanjournal, verification
from services.auth import Principal
from services.codes.views import SEP

log = logging.getLogger(__name__)

LOG_BUFFER = "scanlog:buffer"
_LOG_LOCK = "scanlog:flush:lock"
_FLUSH_BATCH = 500

ROLE_LABELS = {
    Role.admin.value: "管理员",
    Role.staff.value: "窗口工作人员",
    Role.community_worker.value: "社区工作者",
    Role.helper.value: "帮办员",
    Role.enterprise_agent.value: "企业经办人",
    Role.resident.value: "居民",
}
_ROLE_RANK = [Role.admin, Role.staff, Role.community_worker, Role.helper,
              Role.enterprise_agent, Role.resident]


def role_label(roles: frozenset[str] | list[str]) -> str:
    for role in _ROLE_RANK:
        if role.value in roles:
            return ROLE_LABELS[role.value]
    return ROLE_LABELS[Role.resident.value]


_hall_names: dict[str, str] = {}
_hall_names_at = -1e9
_hall_names_tried = -1e9


async def hall_name(code: str) -> str | None:
    """Hall names by code, cached in-process for five minutes: the catalogue changes a few
    times a year and the scan should not pay a query for a label. An unknown code re-reads
    at most every ten seconds, so a bad client can't turn every scan into a query."""
    global _hall_names, _hall_names_at, _hall_names_tried
    now = _time.monotonic()
    if now - _hall_names_at > 300 or (code not in _hall_names and now - _hall_names_tried > 10):
        _hall_names_tried = now
        rows = await Hall.all().values_list("code", "name")
        _hall_names = {str(c): str(n) for c, n in rows}
        _hall_names_at = now
    return _hall_names.get(code)


@lru_cache(maxsize=1024)
def _roles_json(roles: frozenset[str]) -> str:
    return json.dumps(sorted(roles))


@lru_cache(maxsize=256)
def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def scan_uid() -> str:
    """A scan's id (32 hex characters). It names a log line and is printed in the watermark;
    it is not a secret, so it needn't cost a trip to the kernel's random source per scan."""
    return ids.unique_hex()


# A buffered scan log line is these fields joined by U+001F:
#   uid, scanner id, roles (JSON), org (JSON string), ref, at (ISO 8601), kind, outcome,
#   subject ("person:<id>" | "enterprise:<id>" | "doorplate:<id>" | ""), shown (JSON)
# The JSON values never hold a raw control character and the rest are ids, hex, words and a
# timestamp, so the flush splits lines instead of parsing them and writes the JSON columns as
# they come. ``ScanHead.head`` makes the first six; the script's log() or ``log_scan`` the rest.


@dataclass(slots=True)  # not frozen: a frozen dataclass pays object.__setattr__ per field
class ScanHead:
    """One scan's identity, for its log line and its watermark."""

    uid: str
    actor: Principal
    org: str
    ref: str
    at: str  # ISO 8601, +08:00

    def head(self, org: str | None = None) -> str:
        """The log line's fields common to every outcome (see the line's format above)."""
        return SEP.join([self.uid, str(self.actor.user_id), _roles_json(self.actor.roles),
                         _json_str(self.org if org is None else org), self.ref, self.at])


async def log_scan(head: str, *, kind: str, outcome: str, shown: list[str],
                   subject: tuple[str, int] | None = None) -> None:
    """The Python-side twin of the script's log(): the same line, for the paths it hands
    back."""
    about = f"{subject[0]}:{subject[1]}" if subject is not None else ""
    line = SEP.join([head, kind, outcome, about, json.dumps(shown, ensure_ascii=False)])
    scanjournal.append([line])  # durable before the answer promises it
    await cache.redis().rpush(LOG_BUFFER, line)


_LOG_COLUMNS = ("uid", "scanner_id", "scanner_roles", "scanner_org", "kind", "code_ref",
                "subject_person_id", "enterprise_id_ref", "doorplate_id_ref", "outcome", "shown",
                "at")
_INSERT_IGNORE = {"sqlite": "INSERT OR IGNORE", "mysql": "INSERT IGNORE"}
_SUBJECT_COLUMN = {"person": 0, "enterprise": 1, "doorplate": 2}


def _log_row(line: str, at: Any, orgs: dict[str, str]) -> list[Any]:
    if line.startswith("{"):
        # Written as JSON by the release before this one: still in the buffer after a deploy.
        e = json.loads(line)
        subject = next((f"{k}:{e[k]}" for k in _SUBJECT_COLUMN if e.get(k) is not None), "")
        line = SEP.join([e["uid"], str(e["scanner"]), json.dumps(e["roles"]),
                         json.dumps(e["org"], ensure_ascii=False), e["ref"], e["at"],
                         e["kind"], e["outcome"], subject,
                         json.dumps(e["shown"], ensure_ascii=False)])
    uid, scanner, roles, org, ref, when, kind, outcome, subject, shown = line.split(SEP)
    ids: list[int | None] = [None, None, None]
    if subject:
        name, _, subject_id = subject.partition(":")
        ids[_SUBJECT_COLUMN[name]] = int(subject_id)
    if org not in orgs:  # a few halls and communities, over and over
        orgs[org] = json.loads(org)
    return [uid, int(scanner), roles, orgs[org], kind, ref, *ids, outcome, shown,
            at.to_db_value(datetime.fromisoformat(when), ScanLog)]


# Rows per INSERT statement: 12 columns x 80 rows stays under SQLite's oldest limit on bound
# variables (999).
_ROWS_PER_INSERT = 80


async def _insert_logs(lines: list[Any]) -> None:
    """Multi-row INSERTs that skip uids already there. Plain SQL rather than ``bulk_create``
    (a model per row cost the serving process more than the scans it logged), and whole
    statements rather than ``executemany``: SQLite's driver hands the GIL back and forth with
    the serving thread once per row, and each handoff costs both threads a context switch."""
    meta = ScanLog._meta
    at = meta.fields_map["at"]
    orgs: dict[str, str] = {}
    rows = [_log_row(line, at, orgs) for line in lines]
    group = f"({', '.join([db.placeholder(meta.db)] * len(_LOG_COLUMNS))})"
    head = (f"{_INSERT_IGNORE[meta.db.capabilities.dialect]} INTO {meta.db_table} "
            f"({', '.join(_LOG_COLUMNS)}) VALUES ")
    async with in_transaction() as conn:  # one commit for the batch
        for i in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[i:i + _ROWS_PER_INSERT]
            await conn.execute_query(head + ", ".join([group] * len(chunk)),
                                     [value for row in chunk for value in row])


@jobs.periodic("codes.flush_scan_logs", every_seconds=2)
async def flush_scan_logs_job() -> None:
    await flush_scan_logs()


# How long a journalled line waits before the replay looks at it: by then the Redis flush
# (every 2 s) has stored it unless Redis lost it, so the replay finds it and writes nothing.
JOURNAL_SETTLE_SECONDS = 10.0


def _uid(line: str) -> str:
    return str(json.loads(line)["uid"]) if line.startswith("{") else line.partition(SEP)[0]


async def _write_missing(lines: list[str]) -> int:
    """Insert the lines whose uid the database doesn't hold yet; how many that was. One
    indexed read per batch: the replay's steady state, every line already flushed, writes
    nothing (INSERT IGNORE would still take the write lock and a commit per batch)."""
    uids = {_uid(line): line for line in lines}
    have: set[Any] = set(await ScanLog.filter(uid__in=list(uids)).values_list("uid", flat=True))
    missing = [line for uid, line in uids.items() if uid not in have]
    if missing:
        await _insert_logs(missing)
    return len(missing)


@jobs.local("codes.replay_scan_journal", every_seconds=10)
async def replay_scan_journal_job() -> None:
    await replay_scan_journal(settle_seconds=JOURNAL_SETTLE_SECONDS)


async def replay_scan_journal(*, settle_seconds: float = 0.0) -> int:
    """The durable path (services/scanjournal.py): every journal on this host, live serving
    processes' too, so it runs where the job loop runs (the job process in production) and
    needs only the database, Redis or not. Returns how many lines it wrote, which is only
    those the Redis flush didn't."""
    return await scanjournal.replay(_write_missing, settle_seconds=settle_seconds)


async def flush_scan_logs() -> int:
    """Move buffered scan logs into the database. Read, insert, then trim: a crash between
    insert and trim re-inserts the batch next time, which ``uid``'s unique key ignores."""
    r = cache.redis()
    moved = 0
    lock = r.lock(_LOG_LOCK, timeout=30, blocking_timeout=10)
    if not await lock.acquire():
        return 0
    try:
        while True:
            raw = await r.lrange(LOG_BUFFER, 0, _FLUSH_BATCH - 1)
            if not raw:
                break
            await _insert_logs(raw)
            await r.ltrim(LOG_BUFFER, len(raw), -1)
            moved += len(raw)
    finally:
        # Lost the lock (expired, Redis restarted): harmless, a replayed batch inserts nothing.
        with contextlib.suppress(LockError):
            await lock.release()
    return moved


# --- who scanned my code --------------------------------------------------------------------


@dataclass(frozen=True)
class ScanSeen:
    id: int
    at: datetime
    scanner_role: str
    scanner_org: str
    outcome: str
    shown: list[str]


async def scans_of_my_code(*, user_id: int, cursor: int | None,
                           limit: int) -> tuple[list[ScanSeen], int | None]:
    person = await verification.verified_person_of(user_id)
    if person is None:
        return [], None
    try:
        await flush_scan_logs()  # the resident should see a scan made a second ago
    except Exception:
        # The list still answers from the database; the periodic flush catches up.
        log.exception("scan log flush failed")
    qs = ScanLog.filter(subject_person_id=person.id).order_by("-id")
    if cursor:
        qs = qs.filter(id__lt=cursor)
    rows = await qs.limit(limit + 1)
    page = rows[:limit]
    out = [ScanSeen(id=r.id, at=clock.local(r.at), scanner_role=role_label(list(r.scanner_roles)),
                    scanner_org=r.scanner_org, outcome=r.outcome,
                    shown=[s.split(":", 1)[0] for s in r.shown]) for r in page]
    return out, (page[-1].id if len(rows) > limit else None)
