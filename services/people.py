"""Real-name persons: records by name and ID number, phones, and unmasked reads. Binding an
account to a person needs proof and lives in services/verification.py.

Everything personal is stored encrypted with a blind index for lookup and a pre-computed mask
for display, so listing people never decrypts. Decrypting for a staff member is an explicit,
reasoned and audited act (``reveal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tortoise.exceptions import IntegrityError

from models.users import Person, User
from services import audit, clock, pii, scope
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.identity import (
    IdNumber,
    InvalidIdNumber,
    InvalidPhoneNumber,
    mask_id_number,
    mask_name,
    mask_phone,
    validate_id_number,
    validate_phone,
)

P_ID = "person.id_number"
P_NAME = "person.name"
P_PHONE = "phone"


def parse_id_number(raw: str, *, field: str = "id_number") -> IdNumber:
    try:
        return validate_id_number(raw)
    except InvalidIdNumber as exc:
        raise AppError(ErrorCode.validation_failed, str(exc), fields={field: str(exc)}) from exc


def parse_phone(raw: str, *, field: str = "phone") -> str:
    try:
        return validate_phone(raw)
    except InvalidPhoneNumber as exc:
        raise AppError(ErrorCode.validation_failed, str(exc), fields={field: str(exc)}) from exc


def id_lookup_hash(id_number: str) -> str:
    return pii.blind_index(id_number, purpose=P_ID)


async def person_of(user_id: int) -> Person | None:
    """The real-name person bound to an account, if any. Read fresh: binding happens after
    the access token was issued."""
    user = await User.get_or_none(id=user_id).select_related("person")
    return user.person if user else None


def names_to_mask(*persons: Person | None) -> list[str]:
    """The full names of ``persons``, decrypted only so that free text about them can be
    masked (``scrub.scrub_public(text, names=...)``); never put them in an answer."""
    return [pii.decrypt(p.name_enc, purpose=P_NAME) for p in persons
            if p is not None and p.name_enc]


def age_of(person: Person, on: date | None = None) -> int:
    on = on or clock.today()
    b = person.birth_date
    return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


def _fill_identity(person: Person, *, name: str, idn: IdNumber) -> None:
    person.name_enc = pii.encrypt(name, purpose=P_NAME)
    person.name_masked = mask_name(name)
    person.id_number_enc = pii.encrypt(idn.value, purpose=P_ID)
    person.id_number_hash = id_lookup_hash(idn.value)
    person.id_number_masked = mask_id_number(idn.value)
    person.birth_date = idn.birth_date
    person.sex = idn.sex
    person.region_code = idn.region_code


async def upsert_person(*, name: str, id_number: str, tags: list[str] | None = None) -> Person:
    """The person with this ID number, created if new. Used by seeding and by community workers
    registering a resident who has no account. The name must match an existing record."""
    idn = parse_id_number(id_number)
    name = name.strip()
    existing = await Person.get_or_none(id_number_hash=id_lookup_hash(idn.value))
    if existing is not None:
        if pii.decrypt(existing.name_enc, purpose=P_NAME) != name:
            raise AppError(ErrorCode.validation_failed, "姓名与身份证号不匹配",
                           fields={"name": "姓名与身份证号不匹配"})
        if tags:
            existing.tags = sorted({*existing.tags, *tags})
            await existing.save(update_fields=["tags", "updated_at"])
        return existing
    person = Person(tags=sorted(set(tags or [])))
    _fill_identity(person, name=name, idn=idn)
    try:
        await person.save()
    except IntegrityError:
        # Lost a race with another registration of the same person: theirs is as good.
        return await Person.get(id_number_hash=id_lookup_hash(idn.value))
    return person


async def bind_phone(*, user_id: int, phone: str) -> User:
    phone = parse_phone(phone)
    user = await User.get(id=user_id)
    user.phone_enc = pii.encrypt(phone, purpose=P_PHONE)
    user.phone_hash = pii.blind_index(phone, purpose=P_PHONE)
    user.phone_masked = mask_phone(phone)
    await user.save(update_fields=["phone_enc", "phone_hash", "phone_masked"])
    if user.person_id is not None:  # type: ignore[attr-defined]
        await Person.filter(id=user.person_id).update(  # type: ignore[attr-defined]
            phone_enc=pii.encrypt(phone, purpose=P_PHONE),
            phone_hash=user.phone_hash,
            phone_masked=user.phone_masked,
        )
    return user


@dataclass(frozen=True)
class RevealedPerson:
    person_id: int
    name: str
    id_number: str
    phone: str | None
    birth_date: date


async def reveal(
    *, actor: Principal, person_id: int, reason: str, request_id: str = ""
) -> RevealedPerson:
    """Unmasked personal data for staff, with the read written to the audit log first, so
    there is no path that shows data without leaving a trace."""
    if not actor.is_staff:
        raise forbidden()
    reason = reason.strip()
    if len(reason) < 4:
        raise AppError(ErrorCode.validation_failed, "查看完整个人信息须说明事由",
                       fields={"reason": "请填写查看事由（至少4个字）"})
    person = await Person.get_or_none(id=person_id)
    if person is None or not await scope.person_in_scope(actor, person.id):
        raise not_found("人员")
    shown = ["name", "id_number"] + (["phone"] if person.phone_enc else [])
    await audit.record(actor=actor, person_id=person.id, action="person.reveal",
                       fields_read=shown, reason=reason, request_id=request_id)
    return RevealedPerson(
        person_id=person.id,
        name=pii.decrypt(person.name_enc, purpose=P_NAME),
        id_number=pii.decrypt(person.id_number_enc, purpose=P_ID),
        phone=pii.decrypt(person.phone_enc, purpose=P_PHONE) if person.phone_enc else None,
        birth_date=person.birth_date,
    )
