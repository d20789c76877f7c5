"""Filling in what the service already knows: the applicant's verified identity, the enterprise
they act for, the door plate they are registered at."""

from __future__ import annotations

from typing import Any

from models.codes import DoorPlate, Household
from models.enterprises import Enterprise
from models.users import Person, User
from services import pii, verification
from services.forms.schema import LOCKED_PREFILLS, Prefill
from services.people import P_ID, P_NAME, P_PHONE


async def known_values(*, applicant_id: int, enterprise_id: int | None) -> dict[str, Any]:
    """Every prefill source that has a value for this applicant, by ``Prefill`` value."""
    out: dict[str, Any] = {}
    user = await User.get_or_none(id=applicant_id)
    # Only a proven identity fills (and locks) name and ID number: a binding typed in before
    # proofs existed shows nothing of the person (services/verification.py).
    person: Person | None = await verification.verified_person_of(applicant_id)
    if person is not None:
        out[Prefill.person_name] = pii.decrypt(person.name_enc, purpose=P_NAME)
        out[Prefill.person_id_number] = pii.decrypt(person.id_number_enc, purpose=P_ID)
        out[Prefill.person_birth_date] = person.birth_date.isoformat()
        out[Prefill.person_sex] = "男" if person.sex == "male" else "女"
        home = await Household.filter(person_id=person.id).order_by("id").first()
        if home is not None:
            plate = await DoorPlate.get(id=home.doorplate_id)  # type: ignore[attr-defined]
            out[Prefill.doorplate_address] = f"{plate.county}{plate.street}{plate.address}"
    if user is not None and user.phone_enc:
        out[Prefill.user_phone] = pii.decrypt(user.phone_enc, purpose=P_PHONE)
    if enterprise_id is not None:
        ent = await Enterprise.get_or_none(id=enterprise_id)
        if ent is not None:
            out[Prefill.enterprise_name] = ent.name
            out[Prefill.enterprise_uscc] = ent.uscc
    return out


def apply(fields: list[dict[str, Any]], values: dict[str, Any], known: dict[str, Any], *,
          locked_only: bool) -> dict[str, Any]:
    """Values with prefills filled in. ``locked_only``: only re-impose the locked ones (at
    submission, so a typed-over name or ID number never reaches the case); otherwise also fill
    the editable ones that are still empty (when the draft is created)."""
    out = dict(values)
    for f in fields:
        source = f.get("prefill")
        if source is None or source not in known:
            continue
        if source in LOCKED_PREFILLS or (not locked_only and out.get(f["key"]) in (None, "")):
            out[f["key"]] = known[source]
    return out


def locked_keys(fields: list[dict[str, Any]], known: dict[str, Any]) -> set[str]:
    return {f["key"] for f in fields
            if f.get("prefill") in LOCKED_PREFILLS and f.get("prefill") in known}
