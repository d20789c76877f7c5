"""The scan: resolve what a camera read into what this scanner may see, logged.

One Redis round trip in the common case: a Lua script counts the scan against the scanner's
limit, reads the code's entry (views.py) and, for a staff scan of a person code, the person's
cached desk view (services/deskview.py), and appends the scan-log line (scanlog.py) to the
Redis buffer — so nothing is shown whose log line is not already in Redis. What the script
can't settle it hands back unlogged and Python finishes, logging the same line. The answer is
spliced from the cached JSON fragments, not parsed and re-encoded.
bench/scan_bench.py measures it against a bare one-GET handler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.codes import CodeKind
from models.enterprises import Enterprise, EnterpriseAgent
from models.users import Role
from services import cache, clock, db, deskview, people, scanjournal
from services.auth import Principal
from services.codes.scanlog import LOG_BUFFER, ScanHead, hall_name, log_scan, scan_uid
from services.codes.tokens import PERSON_PREFIX, extract_token, token_hash, verify_person_token
from services.codes.views import REC, SEP, fill_long, long_cache_key
from services.errors import AppError, ErrorCode, forbidden
from services.scope import scope_of
from services.settings import get_settings

# One round trip for the common scan: count it against the scanner's limit, read what the
# token stands for, and, when that settles what is shown, append the scan log — so nothing is
# shown whose log entry is not already in Redis. What it can't settle (a person's desk view not
# cached, a long-lived code not cached, a scanner who may see more) it hands back unlogged and
# Python finishes, logging with the same fields.
#   KEYS  1 the scanner's rate counter, 2 the code's entry, 3 the scan-log buffer
#   ARGV  1 the log line's head (``ScanHead.head``), 2 mode, 3 what the mode needs:
#     refused  the token failed its own checks; 3 = "<kind>:<outcome>" to log
#     staff    a person code, scanned by hall staff; 3 = today's desk-view key prefix
#     other    a person code, scanned by anyone else; 3 unused
#     long     an enterprise or door-plate code; 3 = "<c><a>,<scanner id>," where c / a is 1
#              if the scanner is a community worker / an enterprise agent (who may see more)
# The limit and its window are part of the script's text: every argument costs the client
# time to encode, and they change only with the settings. The desk-view keys are built here
# from the person id the entry holds — the caller can't know it. On a Redis Cluster they
# would need a hash tag shared with the code entry.
_SCAN_LUA = r"""
local logged = ''
local function main()
local n = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], %(window)d) end
if n > %(limit)d then return {'limited', redis.call('TTL', KEYS[1])} end

local function log(kind, outcome, subject, shown)
  logged = ARGV[1] .. '\31' .. kind .. '\31' .. outcome .. '\31' .. subject .. '\31' .. shown
  redis.call('RPUSH', KEYS[3], logged)
end
local function split(s)
  local out, i = {}, 1
  while true do
    local j = string.find(s, '\31', i, true)
    if not j then out[#out + 1] = string.sub(s, i); return out end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local mode = ARGV[2]
if mode == 'refused' then
  local kind, outcome = string.match(ARGV[3], '^(%%a+):(%%a+)$')
  log(kind, outcome, '', '[]')
  return {'refused'}
end
local e = redis.call('GET', KEYS[2])
if mode == 'staff' or mode == 'other' then
  if not e then log('person', 'expired', '', '[]'); return {'expired'} end
  local f = split(e)
  local who = 'person:' .. f[1]
  if mode == 'other' then log('person', 'forbidden', who, '[]'); return {'forbidden'} end
  local gen = redis.call('GET', 'desk:gen:' .. f[1]) or '0'
  local desk = redis.call('GET', ARGV[3] .. f[1])
  if not desk or string.sub(desk, 1, #gen + 1) ~= gen .. '|' then return {'miss', e, gen} end
  log('person', 'ok', who, f[2])
  return {'ok', e, string.sub(desk, #gen + 2)}
end
if not e then return {'miss'} end
local f = split(e)
if f[1] == 'revoked' then log('unknown', 'revoked', '', '[]'); return {'revoked'} end
if f[1] ~= 'active' then log('unknown', 'invalid', '', '[]'); return {'invalid'} end
if (string.sub(ARGV[3], 2, 2) == '1' and f[2] == 'enterprise')
    or (string.sub(ARGV[3], 1, 1) == '1' and f[2] == 'doorplate'
        and string.find(f[4], string.sub(ARGV[3], 3), 1, true)) then
  return {'extra', e}
end
log(f[2], 'ok', f[2] .. ':' .. f[3], f[5])
return {'ok', e}
end
-- The line it logged (or '') rides last, for the caller's local journal (scanjournal.py).
local out = main()
out[#out + 1] = logged
return out
"""

_script: tuple[Any, int, int, Any] | None = None


def _scan_script() -> Any:
    """The script object bound to the current client and limits (tests and workers reopen
    Redis, tests change the limit)."""
    global _script
    r, s = cache.redis(), get_settings()
    limit, window = s.scan_rate_limit, s.scan_rate_window_seconds
    if _script is None or _script[:3] != (r, limit, window):
        _script = (r, limit, window,
                   r.register_script(_SCAN_LUA % {"limit": limit, "window": window}))
    return _script[3]


@dataclass(slots=True)
class Scanned:
    scan_id: str
    kind: str
    at: datetime
    # The whole answer as JSON text, ready to send; api/codes.py's ScanOut is its schema (and
    # the tests hold every kind of answer to it).
    document: str

    @property
    def body(self) -> dict[str, Any]:
        """The scanned code's section, parsed: {"person": {...}} or {"enterprise": ...} ..."""
        return {self.kind: json.loads(self.document)[self.kind]}


def _document(uid: str, kind: str, at: str, section: str) -> str:
    # uid is hex, kind one of three words, at an ISO timestamp: nothing here needs escaping.
    return f'{{"scan_id":"{uid}","kind":"{kind}","scanned_at":"{at}","{kind}":{section}}}'


async def scan(*, actor: Principal, content: str) -> Scanned:
    now = clock.now()  # Asia/Shanghai already: the timestamps in the answer say +08:00
    # Where staff scan is their own hall (their membership), never what the client says: the
    # watermark and the resident's access log name it.
    hall = (await scope_of(actor)).scanning_hall if actor.is_staff else None
    org = (await hall_name(hall) or "") if hall else ""
    ref, token, key, mode, refused = "", "", LOG_BUFFER, "refused", None
    try:
        token = extract_token(content)
        if token[0] == PERSON_PREFIX:
            nonce, _ = verify_person_token(token, now=now.timestamp())
            ref, key = nonce[:16], f"code:p:{nonce}"
            mode = "staff" if actor.is_staff else "other"
        else:
            ref, key, mode = token_hash(token)[:16], long_cache_key(token), "long"
    except AppError as exc:
        refused = exc
    sc = ScanHead(uid=scan_uid(), actor=actor, org=org, ref=ref, at=now.isoformat())
    # Failed scans count against the limit too, or guessing tokens would be free.
    expired = refused is not None and refused.code is ErrorCode.code_expired
    if mode == "refused":
        detail = "person:expired" if expired else "unknown:invalid"
    elif mode == "long":
        detail = (f"{int(actor.has(Role.community_worker))}"
                  f"{int(actor.has(Role.enterprise_agent))},{actor.user_id},")
    else:
        detail = deskview.day_prefix(now.date())
    reply = await cache.run_script(_scan_script(), [f"rl:scan:{actor.user_id}", key, LOG_BUFFER],
                                   [sc.head(), mode, detail])
    logged = reply.pop()
    if logged:
        scanjournal.append([logged])  # durable before the answer promises it
    verdict = reply[0]
    if verdict == "limited":
        retry = max(1, int(reply[1]))
        raise AppError(ErrorCode.rate_limited, "扫码过于频繁，请稍后再试",
                       headers={"Retry-After": str(retry)}, extra={"retry_after": retry})
    if refused is not None:
        raise refused
    if mode != "long":
        section = await _person_reply(verdict, reply, sc, now)
        return Scanned(scan_id=sc.uid, kind=CodeKind.person.value, at=now,
                       document=_document(sc.uid, CodeKind.person.value, sc.at, section))
    if verdict == "revoked":
        raise AppError(ErrorCode.code_revoked)
    if verdict == "invalid":
        raise AppError(ErrorCode.code_unrecognised)
    if verdict == "ok":  # the public share, already logged: the cached view is the answer
        _, kind, _, _, _, view = reply[1].split(SEP)
    else:
        entry = await fill_long(token) if verdict == "miss" else reply[1]
        kind, view = await _finish_long(actor, entry, sc)
    return Scanned(scan_id=sc.uid, kind=kind, at=now,
                   document=_document(sc.uid, kind, sc.at, view))


async def person_of_code(*, actor: Principal, content: str) -> int:
    """The person a 人码 stands for, for a desk check such as handing over a result (issue 12):
    the same signed token and the same ``code:p:`` Redis entry a scan reads, not a second
    resolution. Logged like a scan, so the resident sees who checked their code."""
    now = clock.now()
    token = extract_token(content)
    if token[0] != PERSON_PREFIX:
        raise AppError(ErrorCode.code_unrecognised, "请出示本人的个人码")
    nonce, _ = verify_person_token(token, now=now.timestamp())
    entry = await cache.redis().get(f"code:p:{nonce}")
    if entry is None:  # signature fine but Redis lost it (restart, flush): ask for a new one
        raise AppError(ErrorCode.code_expired)
    person_id = int(str(entry).split(SEP, 1)[0])
    hall = (await scope_of(actor)).scanning_hall
    sc = ScanHead(uid=scan_uid(), actor=actor,
                  org=(await hall_name(hall) or "") if hall else "", ref=nonce[:16],
                  at=now.isoformat())
    await log_scan(sc.head(), kind=CodeKind.person.value, outcome="ok", shown=["identity"],
                   subject=("person", person_id))
    return person_id


async def _person_reply(verdict: str, reply: list[Any], sc: ScanHead, now: datetime) -> str:
    """The person section of a staff scan, as JSON text."""
    if verdict == "expired":
        # Signature and expiry were fine, so Redis lost it (restart, flush): ask for a new one.
        raise AppError(ErrorCode.code_expired)
    if verdict == "forbidden":
        raise forbidden("个人码仅限政务服务窗口工作人员扫描")
    pid_text, shown, identity, licences = reply[1].split(SEP)
    if verdict == "miss":
        pid = int(pid_text)
        desk = deskview.members(await deskview.load(person_id=pid, now=now))
        await deskview.store(person_id=pid, day=now.date(), generation=reply[2], members=desk)
        await log_scan(sc.head(), kind=CodeKind.person.value, outcome="ok",
                       shown=json.loads(shown), subject=("person", pid))
    else:
        desk = reply[2]
    stamp = f"{sc.at[:10]} {sc.at[11:19]}"
    watermark = json.dumps(f"仅供{sc.org or '政务服务窗口'}核验使用 {stamp} #{sc.uid[:8]}",
                           ensure_ascii=False)
    tail = f',"shown_at":"{sc.at}","watermark":{watermark}}}'
    lics = ",".join(lic + tail for lic in licences.split(REC))
    return f'{{"identity":{identity},"licences":[{lics}]{"," if desk else ""}{desk}}}'


async def _finish_long(actor: Principal, entry: str, sc: ScanHead) -> tuple[str, str]:
    """What the script hands back for a long-lived code, decided and logged as it would, plus
    what only Python can add: the households a grid's own worker sees, an enterprise's
    policies and cases for its agents. Returns (kind, section as JSON text)."""
    if not entry.startswith("active" + SEP):
        outcome = "revoked" if entry == "revoked" else "invalid"
        await log_scan(sc.head(), kind="unknown", outcome=outcome, shown=[])
        raise AppError(ErrorCode.code_revoked if outcome == "revoked"
                       else ErrorCode.code_unrecognised)
    _, kind, subject_text, workers, shown_text, view_text = entry.split(SEP)
    subject_id, shown, view = int(subject_text), json.loads(shown_text), json.loads(view_text)
    head = sc.head()
    if kind == CodeKind.doorplate.value:
        if actor.has(Role.community_worker) and f",{actor.user_id}," in workers:
            view["households"] = await _households(subject_id)
            shown.append("households")
            head = sc.head(org=view["community"])
    elif actor.has(Role.enterprise_agent) and await EnterpriseAgent.exists(
            enterprise_id=subject_id, user_id=actor.user_id):
        if db.has_model("Policy"):
            view["policies"] = await _matching_policies(subject_id)
            shown.append("policies")
        if db.has_model("Case"):
            view["cases"] = await _enterprise_cases(subject_id)
            shown.append("cases")
    await log_scan(head, kind=kind, outcome="ok", shown=shown, subject=(kind, subject_id))
    return kind, json.dumps(view, ensure_ascii=False)


async def _households(doorplate_id: int) -> list[dict[str, Any]]:
    from models.codes import Household

    rows = await Household.filter(doorplate_id=doorplate_id).select_related("person") \
        .order_by("id")
    return [{"name": h.person.name_masked, "id_number": h.person.id_number_masked,
             "sex": h.person.sex, "age": people.age_of(h.person), "relation": h.relation}
            for h in rows]


async def _matching_policies(enterprise_id: int) -> list[dict[str, Any]]:
    from models.policies import Audience, Policy, PolicyStatus
    from services.policies import enterprise_matches

    ent = await Enterprise.get(id=enterprise_id)
    rows = await Policy.filter(audience=Audience.enterprise, status=PolicyStatus.published) \
        .order_by("-published_at")
    return [{"code": p.code, "title": p.title, "department": p.department, "url": p.url}
            for p in rows if enterprise_matches(dict(p.criteria or {}), ent)][:20]


async def _enterprise_cases(enterprise_id: int) -> list[dict[str, Any]]:
    from models.cases import Case

    rows = await Case.filter(enterprise_id=enterprise_id).order_by("-id").limit(20) \
        .values("id", "title", "item_code", "bundle_code", "status", "due_at")
    return [{"id": c["id"], "title": c["title"], "item_code": c["item_code"],
             "bundle_code": c["bundle_code"], "status": str(c["status"]),
             "due_at": clock.local(c["due_at"]).isoformat() if c["due_at"] else None}
            for c in rows]
