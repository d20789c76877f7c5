"""Loads the project's demo data (``seed/qingyang_demo.json``) idempotently.

Each domain contributes one seeder; running the loader twice changes nothing the second time.
Seeders only create what is missing and never write over a row that exists: ``make run`` seeds
on every start, and staff edits (a hall's hours, an item's guide, a revoked role) must survive
a restart. So: ``get_or_create``, never ``update_or_create``, in every seeder. To bring the
demo data back as shipped, delete ``var/`` (``make clean``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from models.catalogue import Bundle, Hall, ServiceItem, ServicePoint, Window
from models.enterprises import Enterprise
from models.users import Person
from services import doorplates, guide, guided_flows, online, org, people, policies, slots
from services.window import content as window_content

log = logging.getLogger(__name__)

SEED_DIR = Path(__file__).resolve().parent.parent / "seed"
DEMO_FILE = SEED_DIR / "qingyang_demo.json"

Seeder = Callable[[dict[str, Any]], Awaitable[None]]


def load_demo_data(path: Path = DEMO_FILE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


async def seed_people(data: dict[str, Any]) -> None:
    for p in data.get("persons", []):
        # upsert_person would add the demo tags back to a person staff had edited.
        if not await Person.exists(id_number_hash=people.id_lookup_hash(p["id_number"])):
            await people.upsert_person(name=p["name"], id_number=p["id_number"],
                                       tags=p.get("tags"))
    for e in data.get("enterprises", []):
        await Enterprise.get_or_create(
            uscc=e["uscc"],
            defaults={"name": e["name"], "industry": e.get("industry", ""),
                      "size": e.get("size", ""), "county": e.get("county", ""),
                      "tags": e.get("tags", [])},
        )


async def seed_catalogue(data: dict[str, Any]) -> None:
    for h in data.get("halls", []):
        hall, _ = await Hall.get_or_create(
            code=h["code"],
            defaults={"name": h["name"], "level": h["level"], "county": h["county"],
                      "address": h.get("address", ""), "lat": h["lat"], "lng": h["lng"],
                      "phone": h.get("phone", ""), "hours": hours_value(h["hours"]),
                      "self_service_24h": bool(h.get("self_service_24h"))},
        )
        for w in h.get("windows", []):
            await Window.get_or_create(hall=hall, kind=w["kind"], defaults={"name": w["name"]})
    for sp in data.get("service_points", []):
        await ServicePoint.get_or_create(
            code=sp["code"],
            defaults={"name": sp["name"], "county": sp["county"], "kind": sp.get("kind", ""),
                      "lat": sp["lat"], "lng": sp["lng"],
                      "hours": hours_value(sp.get("hours", "24h"))},
        )
    for it in data.get("items", []):
        await ServiceItem.get_or_create(
            code=it["code"],
            defaults={
                "name": it["name"], "department": it["department"], "kind": it["kind"],
                "subject": it["subject"], "theme": it["theme"],
                "legal_limit_days": it.get("legal_limit_days", 0),
                "promised_limit_days": it.get("promised_limit_days", 0),
                "visits": it.get("visits", 1), "online": it.get("online", "offline"),
                "fee": it.get("fee", "不收费"), "window_kind": it["window_kind"],
                "keywords": it.get("keywords", []), "materials": it.get("materials", []),
                "hall_codes": it.get("halls", []), "steps": it.get("steps", []),
                "consult_phone": it.get("consult_phone", ""),
                "complaint_phone": it.get("complaint_phone", "12345"),
                "legal_basis": it.get("legal_basis", ""),
                "conditions": it.get("conditions", []),
                "refusal_cases": it.get("refusal_cases", []),
                "faq": it.get("faq", []), "fee_basis": it.get("fee_basis", ""),
            },
        )
    for b in data.get("bundles", []):
        await Bundle.get_or_create(
            code=b["code"],
            defaults={"name": b["name"], "subject": b["subject"], "item_codes": b["items"],
                      "description": b.get("description", "")},
        )


def hours_value(value: Any) -> Any:
    """Opening hours for the database: Tortoise's JSONField can't hold a bare string, so the
    seed's "24h" becomes ``{"always": true}`` (``OpeningHours.from_seed`` reads both)."""
    return {"always": True} if value == "24h" else value


# Order matters: later seeders may refer to what earlier ones created.
SEEDERS: list[Seeder] = [
    seed_people,
    seed_catalogue,
    guide.seed_guide,
    guided_flows.seed_flows,
    policies.seed_policies,
    doorplates.seed_codes,
    slots.seed_slot_rules,
    org.seed_org,
    online.seed_online,
    window_content.seed_window_rules,
]


async def run(data: dict[str, Any] | None = None) -> None:
    data = data if data is not None else load_demo_data()
    for seeder in SEEDERS:
        await seeder(data)
        log.info("seeded", extra={"seeder": seeder.__name__})
