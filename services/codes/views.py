"""What each code shows, and the Redis entries that carry it to the scan.

- A person code's entry (``code:p:<nonce>``) holds the person's *static* view — masked
  identity and licences, fixed for the code's minute — so a scan reads it without touching
  the database. (The desk view, what changes during the day, is services/deskview.py.)
- A long-lived code's entry (``code:l:<sha256>``) caches token → {status, public view, who may
  see more} for ``LONG_VIEW_TTL`` (negative entries ``NEGATIVE_TTL``). A miss reads the
  database and refills it (``fill_long``), so a flush loses nothing; a revocation overwrites
  the entry with ``revoked`` rather than deleting it; a change to what a view shows (licences,
  grid worker) drops it (``invalidate_views``).

Entries are flat strings of JSON fragments: the scan script (scan.py) takes them apart without
a JSON parser, and the answer is spliced together from them rather than parsed and re-encoded
(that round trip was most of a scan's time). The separators, U+001F and U+001E, never occur in
JSON text (json.dumps escapes control characters):
  person code   code:p:<nonce>  "<person id>␟<shown on a staff scan>␟<identity object>
                                 ␟<licence object without its closing brace>␞<licence ...>"
  long-lived    code:l:<hash>   "active␟<kind>␟<id>␟,<grid worker ids>,␟<shown>␟<public view>"
                                | "revoked" | "unknown"
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from models.catalogue import Hall
from models.codes import CodeKind, DoorPlate, ElectronicLicence, GridAssignment, IssuedCode
from models.enterprises import Enterprise
from models.users import Person
from services import cache, deskview, geo, people
from services.codes.tokens import stored_token, token_hash
from services.errors import AppError, ErrorCode
from services.identity import InvalidCreditCode, validate_uscc

SEP = "\x1f"
REC = "\x1e"

LONG_VIEW_TTL = 300
NEGATIVE_TTL = 60
NEAREST_HALLS = 3


def long_cache_key(token: str) -> str:
    return f"code:l:{token_hash(token)}"


def licence_item(*, kind: str, title: str, number: str, issuer: str, issued_on: date | None,
                 valid_until: date | None) -> dict[str, Any]:
    return {"kind": kind, "title": title, "number": number, "issuer": issuer,
            "issued_on": issued_on.isoformat() if issued_on else None,
            "valid_until": valid_until.isoformat() if valid_until else None}


# --- person code --------------------------------------------------------------------------


async def person_static_view(person: Person) -> dict[str, Any]:
    """The masked identity and licences: fixed for the code's minute, so it rides in Redis
    with the token and the scan reads it without touching the database."""
    licences = [licence_item(kind="identity_card", title="居民身份证",
                             number=person.id_number_masked, issuer="公安机关",
                             issued_on=None, valid_until=None)]
    # The physical card's issue date is not in our data; it stays empty rather than invented.
    for lic in await ElectronicLicence.filter(person_id=person.id).order_by("kind"):
        licences.append(licence_item(kind=lic.kind, title=lic.title, number=lic.number_masked,
                                     issuer=lic.issuer, issued_on=lic.issued_on,
                                     valid_until=lic.valid_until))
    return {
        "identity": {"name": person.name_masked, "id_number": person.id_number_masked,
                     "sex": person.sex, "age": people.age_of(person)},
        "licences": licences,
    }


def person_entry(person_id: int, static: dict[str, Any]) -> str:
    # What a staff scan shows, for its log line, fixed now so the scan script can write it.
    shown = ["identity", "licences:" + ",".join(lic["kind"] for lic in static["licences"]),
             *deskview.sections()]
    licences = REC.join(json.dumps(lic, ensure_ascii=False)[:-1] for lic in static["licences"])
    return SEP.join([str(person_id), json.dumps(shown, ensure_ascii=False),
                     json.dumps(static["identity"], ensure_ascii=False), licences])


# --- long-lived codes ---------------------------------------------------------------------


def checked_uscc(ent: Enterprise) -> str:
    """The enterprise's USCC, GB 32100-checked: an invalid one gets no code and shows none."""
    try:
        return validate_uscc(ent.uscc)
    except InvalidCreditCode as exc:
        raise AppError(ErrorCode.conflict,
                       f"企业统一社会信用代码无效，无法生成企业码：{exc}") from exc


async def _doorplate_view(plate: DoorPlate) -> dict[str, Any]:
    halls = await Hall.filter(is_active=True).values("code", "name", "address", "phone",
                                                      "lat", "lng")
    nearest = sorted(
        ({"code": h["code"], "name": h["name"], "address": h["address"], "phone": h["phone"],
          "distance_m": round(geo.distance_m(plate.lat, plate.lng, h["lat"], h["lng"]))}
         for h in halls),
        key=lambda h: h["distance_m"])[:NEAREST_HALLS]
    grid = await GridAssignment.filter(county=plate.county, community=plate.community,
                                       is_active=True).order_by("id")
    worker = ({"name": grid[0].contact_name, "phone": grid[0].contact_phone} if grid else None)
    return {
        "view": {"code": plate.code, "county": plate.county, "street": plate.street,
                 "community": plate.community, "address": plate.address, "lat": plate.lat,
                 "lng": plate.lng, "grid_worker": worker, "nearest_halls": nearest},
        "shown": ["address", "grid_worker", "nearest_halls"],
        # Not shown: who may also see the households.
        "workers": [g.user_id for g in grid],  # type: ignore[attr-defined]
        "id": plate.id,
    }


async def _enterprise_view(ent: Enterprise) -> dict[str, Any]:
    lics = await ElectronicLicence.filter(enterprise_id=ent.id, is_public=True).order_by("kind")
    return {
        "view": {"id": ent.id, "name": ent.name, "uscc": checked_uscc(ent),
                 "industry": ent.industry, "county": ent.county,
                 "licences": [licence_item(kind=lic.kind, title=lic.title,
                                           number=lic.number_masked, issuer=lic.issuer,
                                           issued_on=lic.issued_on,
                                           valid_until=lic.valid_until) for lic in lics]},
        "shown": ["profile", "public_licences"],
        "id": ent.id,
    }


async def load_long(token: str) -> dict[str, Any]:
    """The cache entry for a long-lived token, rebuilt from the database (the truth)."""
    code = await IssuedCode.get_or_none(token_hash=token_hash(token))
    if code is None:
        return {"st": "unknown"}
    if code.active_key is None:
        return {"st": "revoked"}
    if code.kind is CodeKind.doorplate:
        plate = await DoorPlate.get(id=code.doorplate_id)  # type: ignore[attr-defined]
        body = await _doorplate_view(plate)
    else:
        ent = await Enterprise.get(id=code.enterprise_id)  # type: ignore[attr-defined]
        body = await _enterprise_view(ent)
    return {"st": "active", "k": code.kind.value, "c": code.id, **body}


def long_entry(data: dict[str, Any]) -> str:
    if data["st"] != "active":
        return str(data["st"])
    workers = ",".join(str(w) for w in data.get("workers", []))
    return SEP.join(["active", data["k"], str(data["id"]), f",{workers},",
                     json.dumps(data["shown"]), json.dumps(data["view"], ensure_ascii=False)])


async def fill_long(token: str) -> str:
    """The entry for a long-lived code Redis doesn't hold, from the database (the truth). Set
    only if still absent: a revocation's marker written meanwhile must win over this read."""
    data = await load_long(token)
    entry = long_entry(data)
    r = cache.redis()
    ttl = LONG_VIEW_TTL if data["st"] == "active" else NEGATIVE_TTL
    if not await r.set(long_cache_key(token), entry, ex=ttl, nx=True):
        entry = str(await r.get(long_cache_key(token)) or entry)
    return entry


async def mark_revoked(token: str) -> None:
    # Overwrite rather than delete: a scan racing the revocation must not re-fill the cache
    # from a read that saw the code still active.
    await cache.redis().set(long_cache_key(token), "revoked", ex=LONG_VIEW_TTL)


async def invalidate_views(*, enterprise_id: int | None = None,
                           doorplate_id: int | None = None) -> None:
    """Drop the cached view after a change to what it shows (licences, grid worker)."""
    qs = IssuedCode.filter(active_key__isnull=False)
    if enterprise_id is not None:
        qs = qs.filter(enterprise_id=enterprise_id)
    if doorplate_id is not None:
        qs = qs.filter(doorplate_id=doorplate_id)
    keys = [long_cache_key(stored_token(c)) for c in await qs]
    if keys:
        await cache.redis().delete(*keys)
