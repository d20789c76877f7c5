"""全程网办: apply online with an e-form and materials, and never submit the same paper twice.

- Forms are data (``models.online.FormDefinition``), versioned; a draft pins the version it was
  started on, and the submitted case keeps that draft as its frozen application.
- Materials follow the item's material list. Each is an upload (bytes in object storage), a
  reuse of a material staff accepted on an earlier case (免提交, while still valid), or an
  electronic licence the service already holds.
- Every byte is read through a short-lived signed link minted after ``cases.access_case``
  said yes; staff get a watermarked rendition and each staff view is audited.
- Retention: the ``online.retention`` sweep deletes the uploads of abandoned drafts and
  uploads never attached to anything; residents delete their own unused uploads. Every
  deletion is logged (``UploadDeletion``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.cases import Case, ProxyScope, SupplementRequest
from models.catalogue import Bundle, ServiceItem
from models.codes import ElectronicLicence
from models.enterprises import EnterpriseAgent
from models.online import (
    ApplicationDraft,
    CaseMaterial,
    FormDefinition,
    MaterialSource,
    MaterialStatus,
    Upload,
    UploadDeletion,
    UploadStatus,
)
from models.users import User
from services import audit, cases, clock, guide, identity, jobs, pii, renditions, storage
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.forms import prefill, schema, validation
from services.settings import get_settings

log = logging.getLogger(__name__)

P_FORM_VALUES = "online.form_values"
MAX_PER_MATERIAL = 9  # pages of one material (both sides of an ID card, a 户口簿's pages)

# Material names (as the catalogue spells them) an electronic licence can stand in for.
LICENCE_KINDS: dict[str, tuple[str, ...]] = {
    "营业执照": ("business_licence",),
    "残疾人证": ("disability_cert",),
    "中华人民共和国残疾人证": ("disability_cert",),
    "结婚证": ("marriage_cert",),
    "食品经营许可证": ("food_business_licence",),
}


# ---------------------------------------------------------------------------------------------
# Forms


async def _target_exists(code: str) -> bool:
    return (await ServiceItem.exists(code=code, is_active=True)
            or await Bundle.exists(code=code, is_active=True))


async def current_form(code: str) -> FormDefinition | None:
    return await FormDefinition.filter(target_code=code).order_by("-version").first()


async def save_form(*, actor: Principal, target_code: str, title: str,
                    fields: Any) -> FormDefinition:
    """Staff write the next version; earlier versions stay for the cases filled against them."""
    if not actor.is_staff:
        raise forbidden()
    if not await _target_exists(target_code):
        raise not_found("事项")
    clean = schema.check_definition(fields)
    for _ in range(3):
        latest = await current_form(target_code)
        try:
            return await FormDefinition.create(
                target_code=target_code, version=(latest.version if latest else 0) + 1,
                title=title.strip()[:128], schema={"fields": clean}, created_by_id=actor.user_id)
        except IntegrityError:
            continue  # another editor took that version number; take the next
    raise AppError(ErrorCode.conflict, "表单正在被他人修改，请稍后重试")


async def form_history(code: str) -> list[FormDefinition]:
    return await FormDefinition.filter(target_code=code).order_by("-version").limit(50)


async def _items_for(item_code: str | None, bundle_code: str | None) -> list[ServiceItem]:
    if item_code:
        item = await ServiceItem.get_or_none(code=item_code, is_active=True)
        return [item] if item else []
    bundle = await Bundle.get_or_none(code=bundle_code, is_active=True)
    if bundle is None:
        return []
    rows = {i.code: i for i in await ServiceItem.filter(code__in=list(bundle.item_codes),
                                                         is_active=True)}
    return [rows[c] for c in bundle.item_codes if c in rows]


@dataclass(frozen=True)
class ResolvedForm:
    title: str
    fields: list[dict[str, Any]]
    versions: dict[str, int]


async def resolve_form(*, item_code: str | None, bundle_code: str | None) -> ResolvedForm:
    """The form to fill: the item's; for a bundle its own form if staff wrote one, else its
    items' forms merged so each shared field is asked once (一表申请)."""
    if (item_code is None) == (bundle_code is None):
        raise AppError(ErrorCode.validation_failed, "请选择一个事项或一件事",
                       fields={"item_code": "事项与一件事二选一"})
    code = item_code or bundle_code
    assert code is not None
    own = await current_form(code)
    if own is not None:
        return ResolvedForm(own.title, list(own.schema["fields"]), {code: own.version})
    if bundle_code is not None:
        forms: list[list[dict[str, Any]]] = []
        versions: dict[str, int] = {}
        for it in await _items_for(None, bundle_code):
            f = await current_form(it.code)
            if f is not None:
                forms.append(list(f.schema["fields"]))
                versions[it.code] = f.version
        if forms:
            bundle = await Bundle.get(code=bundle_code)
            return ResolvedForm(bundle.name, schema.merge(forms), versions)
    raise AppError(ErrorCode.form_not_found)


async def form_of(code: str) -> ResolvedForm:
    """The form behind one catalogue code, item or bundle (their codes don't overlap):
    what the mini program shows before a draft exists."""
    is_item = await ServiceItem.exists(code=code)
    return await resolve_form(item_code=code if is_item else None,
                              bundle_code=None if is_item else code)


# ---------------------------------------------------------------------------------------------
# Drafts


def _encrypt_values(values: dict[str, Any]) -> str:
    return pii.encrypt(json.dumps(values, ensure_ascii=False), purpose=P_FORM_VALUES)


def decrypt_values(draft: ApplicationDraft) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pii.decrypt(draft.values_enc, purpose=P_FORM_VALUES))
    return data


def masked_values(fields: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """What anyone but the applicant reads: ID numbers and phones masked."""
    kinds = {f["key"]: f["type"] for f in fields}
    out: dict[str, Any] = {}
    for k, v in values.items():
        if kinds.get(k) == schema.FieldType.id_number and isinstance(v, str):
            out[k] = identity.mask_id_number(v)
        elif kinds.get(k) == schema.FieldType.phone and isinstance(v, str):
            out[k] = identity.mask_phone(v)
        else:
            out[k] = v
    return out


async def create_draft(
    *,
    actor: Principal,
    hall_code: str,
    item_code: str | None = None,
    bundle_code: str | None = None,
    applicant_user_id: int | None = None,
    enterprise_id: int | None = None,
) -> ApplicationDraft:
    form = await resolve_form(item_code=item_code, bundle_code=bundle_code)
    items = await _items_for(item_code, bundle_code)
    if not items:
        raise AppError(ErrorCode.validation_failed, fields={"item_code": "事项不存在"})
    applicant_id = actor.user_id
    if applicant_user_id is not None and applicant_user_id != actor.user_id:
        scopes = await cases.proxy_scopes(grantor_id=applicant_user_id, helper_id=actor.user_id,
                                          case_id=None)
        if ProxyScope.apply not in scopes:
            raise AppError(ErrorCode.proxy_authorization_required)
        applicant_id = applicant_user_id
    if enterprise_id is not None and not await EnterpriseAgent.exists(
            enterprise_id=enterprise_id, user_id=applicant_id):
        raise not_found("企业")
    known = await prefill.known_values(applicant_id=applicant_id, enterprise_id=enterprise_id)
    values = prefill.apply(form.fields, {}, known, locked_only=False)
    title = form.title or (items[0].name if item_code else "")
    return await ApplicationDraft.create(
        user_id=actor.user_id, applicant_id=applicant_id, enterprise_id=enterprise_id,
        item_code=item_code, bundle_code=bundle_code, hall_code=hall_code, title=title,
        form_fields={"fields": form.fields}, form_versions={"versions": form.versions},
        values_enc=_encrypt_values(values),
    )


async def access_draft(actor: Principal, draft_id: int, *,
                       for_change: bool = False) -> ApplicationDraft:
    """Who fills it (the resident, or the helper filing with their authorisation) and the
    applicant; anyone else gets 404. A submitted draft is the case's record: read-only."""
    draft = await ApplicationDraft.get_or_none(id=draft_id)
    if draft is None or actor.user_id not in (draft.user_id, draft.applicant_id):  # type: ignore[attr-defined]
        raise not_found("申请")
    if for_change and draft.submitted_at is not None:
        raise AppError(ErrorCode.draft_submitted)
    return draft


async def my_drafts(*, actor: Principal, cursor: int | None,
                    limit: int) -> tuple[list[ApplicationDraft], int | None]:
    q = ApplicationDraft.filter(Q(user_id=actor.user_id) | Q(applicant_id=actor.user_id),
                                submitted_at=None)
    if cursor is not None:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def save_values(*, actor: Principal, draft_id: int,
                      values: dict[str, Any]) -> ApplicationDraft:
    draft = await access_draft(actor, draft_id, for_change=True)
    fields = list(draft.form_fields["fields"])
    known = await prefill.known_values(applicant_id=draft.applicant_id,  # type: ignore[attr-defined]
                                       enterprise_id=draft.enterprise_id)  # type: ignore[attr-defined]
    merged = {**decrypt_values(draft), **values}
    merged = prefill.apply(fields, merged, known, locked_only=True)
    clean = validation.validate(fields, merged, complete=False)
    draft.values_enc = _encrypt_values(clean)
    draft.updated_at = clock.now()
    # Conditional: a save racing the submission must not rewrite the frozen application.
    if not await ApplicationDraft.filter(id=draft.id, submitted_at=None).update(
            values_enc=draft.values_enc, updated_at=draft.updated_at):
        raise AppError(ErrorCode.draft_submitted)
    return draft


async def locked_fields(draft: ApplicationDraft) -> set[str]:
    known = await prefill.known_values(applicant_id=draft.applicant_id,  # type: ignore[attr-defined]
                                       enterprise_id=draft.enterprise_id)  # type: ignore[attr-defined]
    return prefill.locked_keys(list(draft.form_fields["fields"]), known)


# ---------------------------------------------------------------------------------------------
# Materials: where each one comes from


@dataclass(frozen=True)
class MaterialRequirement:
    name: str
    required: bool


async def requirements(*, item_code: str | None,
                       bundle_code: str | None) -> list[MaterialRequirement]:
    """The material list as the case (and 一次性告知) know it, with the catalogue's required
    flag (a bundle: required if any item requires it)."""
    names = await cases.material_names(item_code=item_code, bundle_code=bundle_code)
    merged = {guide.material_key(m.name): m.required
              for m in guide.merge_materials(await _items_for(item_code, bundle_code))}
    return [MaterialRequirement(n, merged.get(guide.material_key(n), True)) for n in names]


@dataclass(frozen=True)
class Supplied:
    """What the client says supplies one material: exactly one of the three."""

    material: str
    upload_id: int | None = None
    reuse_material_id: int | None = None
    licence_id: int | None = None


async def _licences_of(*, person_id: int | None, enterprise_id: int | None,
                       name: str) -> list[ElectronicLicence]:
    kinds = LICENCE_KINDS.get(name)
    if not kinds or (person_id is None and enterprise_id is None):
        return []
    holders = [Q(person_id=person_id)] if person_id is not None else []
    if enterprise_id is not None:
        holders.append(Q(enterprise_id=enterprise_id))
    owner = holders[0] if len(holders) == 1 else Q(*holders, join_type="OR")
    today = clock.today()
    return await ElectronicLicence.filter(
        owner, Q(valid_until=None) | Q(valid_until__gte=today), kind__in=kinds)


async def reusable(*, applicant_id: int, name: str) -> list[CaseMaterial]:
    """免提交: this applicant's materials of that name staff accepted, still valid."""
    return await CaseMaterial.filter(
        owner_id=applicant_id, name=name, status=MaterialStatus.accepted,
        valid_until__gte=clock.today(), case_id__not_isnull=True, upload_id__not_isnull=True,
    ).order_by("-reviewed_at").limit(5)


async def _resolve(
    *, actor: Principal, applicant_id: int, person_id: int | None, enterprise_id: int | None,
    s: Supplied, at: str, conn: BaseDBAsyncClient | None = None,
) -> dict[str, Any]:
    """The CaseMaterial columns for one supplied material, after checking the caller may use
    that source. Anything not theirs is "不存在" (no hint that the id exists)."""
    given = [x for x in (s.upload_id, s.reuse_material_id, s.licence_id) if x is not None]
    if len(given) != 1:
        raise AppError(ErrorCode.validation_failed, "每项材料须且只能选择一种提供方式",
                       fields={at: "上传文件、复用材料、电子证照三选一"})
    if s.upload_id is not None:
        up = await Upload.get_or_none(id=s.upload_id, owner_id=actor.user_id,
                                      status=UploadStatus.stored)
        if up is None:
            raise AppError(ErrorCode.validation_failed, fields={f"{at}.upload_id": "文件不存在"})
        return {"source": MaterialSource.upload, "upload_id": up.id}
    if s.reuse_material_id is not None:
        offered = {m.id: m for m in await reusable(applicant_id=applicant_id, name=s.material)}
        src = offered.get(s.reuse_material_id)
        if src is None:
            raise AppError(ErrorCode.validation_failed,
                           fields={f"{at}.reuse_material_id": "没有可复用的该项材料"})
        return {"source": MaterialSource.reuse, "upload_id": src.upload_id,  # type: ignore[attr-defined]
                "reused_from_id": src.id}
    lics = {lic.id: lic for lic in await _licences_of(person_id=person_id,
                                                       enterprise_id=enterprise_id,
                                                       name=s.material)}
    if s.licence_id not in lics:
        raise AppError(ErrorCode.validation_failed,
                       fields={f"{at}.licence_id": "没有可用于该项材料的电子证照"})
    return {"source": MaterialSource.licence, "licence_id": s.licence_id}


async def _person_of(user_id: int) -> int | None:
    user = await User.get_or_none(id=user_id)
    return user.person_id if user else None  # type: ignore[attr-defined]


async def attach_to_draft(*, actor: Principal, draft_id: int, supplied: Supplied) -> CaseMaterial:
    draft = await access_draft(actor, draft_id, for_change=True)
    names = {r.name for r in await requirements(item_code=draft.item_code,
                                                bundle_code=draft.bundle_code)}
    if supplied.material not in names:
        raise AppError(ErrorCode.validation_failed, fields={"material": "不在该事项的材料清单中"})
    if await CaseMaterial.filter(draft_id=draft.id, name=supplied.material).count() >= \
            MAX_PER_MATERIAL:
        raise AppError(ErrorCode.validation_failed,
                       fields={"material": f"每项材料最多 {MAX_PER_MATERIAL} 份"})
    applicant_id: int = draft.applicant_id  # type: ignore[attr-defined]
    cols = await _resolve(actor=actor, applicant_id=applicant_id,
                          person_id=await _person_of(applicant_id),
                          enterprise_id=draft.enterprise_id,  # type: ignore[attr-defined]
                          s=supplied, at="body")
    material = await CaseMaterial.create(draft_id=draft.id, owner_id=applicant_id,
                                         name=supplied.material, **cols)
    await ApplicationDraft.filter(id=draft.id).update(updated_at=clock.now())
    return material


async def detach_from_draft(*, actor: Principal, draft_id: int, material_id: int) -> None:
    draft = await access_draft(actor, draft_id, for_change=True)
    if not await CaseMaterial.filter(id=material_id, draft_id=draft.id, case_id=None).delete():
        raise not_found("材料")


@dataclass(frozen=True)
class Offer:
    name: str
    required: bool
    reusable: list[CaseMaterial]
    licences: list[ElectronicLicence]


async def offers_for(*, applicant_id: int, enterprise_id: int | None, item_code: str | None,
                     bundle_code: str | None) -> list[Offer]:
    person_id = await _person_of(applicant_id)
    out = []
    for req in await requirements(item_code=item_code, bundle_code=bundle_code):
        out.append(Offer(req.name, req.required,
                         await reusable(applicant_id=applicant_id, name=req.name),
                         await _licences_of(person_id=person_id, enterprise_id=enterprise_id,
                                            name=req.name)))
    return out


# ---------------------------------------------------------------------------------------------
# Submission


async def submit(*, actor: Principal, draft_id: int, note: str = "") -> Case:
    draft = await access_draft(actor, draft_id, for_change=True)
    fields = list(draft.form_fields["fields"])
    known = await prefill.known_values(applicant_id=draft.applicant_id,  # type: ignore[attr-defined]
                                       enterprise_id=draft.enterprise_id)  # type: ignore[attr-defined]
    values = prefill.apply(fields, decrypt_values(draft), known, locked_only=True)
    errors: dict[str, str] = {}
    try:
        values = validation.validate(fields, values, complete=True)
    except AppError as exc:
        errors.update(exc.fields)
    have: set[str] = {m.name for m in await CaseMaterial.filter(draft_id=draft.id)}
    for req in await requirements(item_code=draft.item_code, bundle_code=draft.bundle_code):
        if req.required and req.name not in have:
            errors[f"materials.{req.name}"] = f"请提供{req.name}"
    if errors:
        raise AppError(ErrorCode.validation_failed, "申请未填写完整，请按提示补充", fields=errors)

    async def attach(case: Case, conn: BaseDBAsyncClient) -> None:
        # Conditional on "not yet submitted": two taps on 提交 open one case, not two.
        done = await ApplicationDraft.filter(id=draft.id, submitted_at=None).using_db(
            conn).update(case_id=case.id, submitted_at=clock.now(),
                         values_enc=_encrypt_values(values))
        if not done:
            raise AppError(ErrorCode.draft_submitted)
        await CaseMaterial.filter(draft_id=draft.id).using_db(conn).update(case_id=case.id)

    return await cases.open_case(
        actor=actor, hall_code=draft.hall_code, item_code=draft.item_code,
        bundle_code=draft.bundle_code,
        applicant_user_id=draft.applicant_id,  # type: ignore[attr-defined]
        enterprise_id=draft.enterprise_id,  # type: ignore[attr-defined]
        note=note or "网上申请", attach=attach,
    )


# ---------------------------------------------------------------------------------------------
# A case's application, review, supplements


@dataclass
class ApplicationView:
    case: Case
    draft: ApplicationDraft | None
    values: dict[str, Any]
    materials: list[CaseMaterial]
    side: str | None


async def draft_materials(draft_id: int) -> list[CaseMaterial]:
    """A draft's materials in the order they were attached, with their upload or licence."""
    return await CaseMaterial.filter(draft_id=draft_id).select_related(
        "upload", "licence").order_by("id")


async def application(*, actor: Principal, case_id: int, request_id: str = "") -> ApplicationView:
    case, acc = await cases.case_and_access(actor, case_id)
    draft = await ApplicationDraft.get_or_none(case_id=case.id)
    side = viewer_side(acc)
    values: dict[str, Any] = {}
    if draft is not None:
        values = decrypt_values(draft)
        if cases.ActorKind.applicant not in acc.kinds:
            values = masked_values(list(draft.form_fields["fields"]), values)
        if side == "staff":
            # Names, addresses and account numbers stay readable for the reviewer: recorded.
            await audit.record(actor=actor, person_id=case.person_id,  # type: ignore[attr-defined]
                               action="online.application.view", fields_read=sorted(values),
                               reason=f"办件{case.id}申请表审查", request_id=request_id)
    materials = await CaseMaterial.filter(case_id=case.id).select_related(
        "upload", "licence").order_by("id")
    return ApplicationView(case, draft, values, materials, side)


async def review_material(*, actor: Principal, case_id: int, material_id: int, accept: bool,
                          reason: str) -> CaseMaterial:
    """Staff mark one material accepted or rejected (a rejection says why)."""
    case, acc = await cases.case_and_access(actor, case_id, for_change=True)
    if cases.ActorKind.staff not in acc.kinds:
        raise forbidden()
    material = await CaseMaterial.get_or_none(id=material_id, case_id=case.id)
    if material is None:
        raise not_found("材料")
    reason = reason.strip()
    if not accept and len(reason) < 2:
        raise AppError(ErrorCode.validation_failed, "退回材料须说明原因",
                       fields={"reason": "请说明原因"})
    material.status = MaterialStatus.accepted if accept else MaterialStatus.rejected
    material.reason = reason[:255]
    material.reviewed_by_id = actor.user_id
    material.reviewed_at = clock.now()
    material.valid_until = (
        clock.today() + timedelta(days=get_settings().online_reuse_valid_days)
        if accept and material.source is not MaterialSource.licence else None)
    if accept and material.reused_from_id is not None:  # type: ignore[attr-defined]
        # A reused copy can't outlive the acceptance it came from.
        src = await CaseMaterial.get_or_none(id=material.reused_from_id)  # type: ignore[attr-defined]
        if src is not None and src.valid_until is not None and material.valid_until:
            material.valid_until = min(material.valid_until, src.valid_until)
    await material.save(update_fields=["status", "reason", "reviewed_by_id", "reviewed_at",
                                       "valid_until"])
    return material


async def deliver_supplement(*, actor: Principal, case_id: int, supplied: Sequence[Supplied],
                             note: str = "") -> Case:
    """补正: the applicant (or an authorised helper) supplies exactly the materials the open
    一次性告知 named — none missing, nothing else — and the case moves to 已补正 in the same
    transaction."""
    case, _ = await cases.case_and_access(actor, case_id, for_change=True)
    applicant_id: int = case.applicant_id  # type: ignore[attr-defined]
    person_id: int | None = case.person_id  # type: ignore[attr-defined]
    resolved = []
    for i, s in enumerate(supplied):
        cols = await _resolve(actor=actor, applicant_id=applicant_id, person_id=person_id,
                              enterprise_id=case.enterprise_id,  # type: ignore[attr-defined]
                              s=s, at=f"materials.{i}")
        resolved.append((s.material, cols))

    async def deliver(c: Case, sup: SupplementRequest, conn: BaseDBAsyncClient) -> None:
        asked = {str(i["material"]) for i in sup.items.get("items", [])}
        given = [name for name, _ in resolved]
        errors = {f"materials.{name}": "缺少该项补正材料" for name in sorted(asked - set(given))}
        for i, name in enumerate(given):
            if name not in asked:
                errors[f"materials.{i}.material"] = "该材料不在补正告知中"
        if errors:
            raise AppError(ErrorCode.materials_mismatch, fields=errors)
        for name, cols in resolved:
            await CaseMaterial.create(case_id=c.id, owner_id=applicant_id, name=name,
                                      supplement_id=sup.id, using_db=conn, **cols)

    return await cases.resubmit(actor=actor, case_id=case.id, note=note or "已在线补正材料",
                                deliver=deliver)


# ---------------------------------------------------------------------------------------------
# Signed links


class Variant:
    original = "original"
    thumb = "thumb"
    staff = "staff"  # watermarked, audited


def _link_key() -> bytes:
    return hashlib.sha256(b"online.file-link\x00" + get_settings().jwt_secret.encode()).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def sign_link(*, kind: str, object_id: int, variant: str, actor: Principal,
              now: float | None = None) -> tuple[str, int]:
    """An opaque token for ``/api/v1/online/files/<token>``: what, which rendition, for whom,
    until when, MACed. Links go in <image src> and wx.downloadFile, which send no header."""
    exp = int((now or time.time()) + get_settings().online_link_ttl_seconds)
    payload = json.dumps({"k": kind, "i": object_id, "v": variant, "u": actor.user_id,
                          "r": sorted(actor.roles), "e": exp}, separators=(",", ":")).encode()
    body = _b64(payload)
    sig = _b64(hmac.new(_link_key(), body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}", exp


@dataclass(frozen=True)
class LinkClaims:
    kind: str
    object_id: int
    variant: str
    actor: Principal


def verify_link(token: str, *, now: float | None = None) -> LinkClaims:
    body, _, sig = token.partition(".")
    try:
        expected = _b64(hmac.new(_link_key(), body.encode(), hashlib.sha256).digest())
        if not sig or not hmac.compare_digest(expected, sig):
            raise ValueError("bad signature")
        data = json.loads(_unb64(body))
        if int(data["e"]) < (now or time.time()):
            raise ValueError("expired")
        return LinkClaims(str(data["k"]), int(data["i"]), str(data["v"]),
                          Principal(user_id=int(data["u"]), roles=frozenset(data["r"])))
    except (ValueError, KeyError, TypeError) as exc:
        raise AppError(ErrorCode.link_invalid) from exc


def viewer_side(acc: cases.Access) -> str | None:
    """Whose eyes: "applicant" (the applicant, or a helper holding their authorisation),
    "staff" (watermarked, audited), or None — a helper merely offered the case sees the case,
    not the resident's papers."""
    if acc.kinds & {cases.ActorKind.applicant, cases.ActorKind.helper}:
        return "applicant"
    if cases.ActorKind.staff in acc.kinds:
        return "staff"
    return None


def variants_for(*, side: str | None, content_type: str) -> list[str]:
    if side == "staff":
        return [Variant.staff]
    if side != "applicant":
        return []
    return [Variant.original, Variant.thumb] if content_type != "application/pdf" \
        else [Variant.original]


@dataclass(frozen=True)
class FileOut:
    content: bytes
    content_type: str
    filename: str


async def _material_case(material: CaseMaterial) -> Case | None:
    if material.case_id is None:  # type: ignore[attr-defined]
        return None
    return await Case.get_or_none(id=material.case_id)  # type: ignore[attr-defined]


async def open_file(*, token: str, request_id: str = "") -> FileOut:
    """The bytes behind a signed link, after checking the link and, again, the access: a
    helper whose authorisation ended, or staff who lost their role, get nothing."""
    claims = verify_link(token)
    actor = claims.actor
    if claims.kind == "u":
        up = await Upload.get_or_none(id=claims.object_id, owner_id=actor.user_id,
                                      status=UploadStatus.stored)
        if up is None or claims.variant not in (Variant.original, Variant.thumb):
            raise not_found("文件")
        return await _bytes(up, claims.variant, "")
    material = await CaseMaterial.get_or_none(id=claims.object_id).select_related("upload")
    if material is None or material.upload is None or \
            material.upload.status is not UploadStatus.stored:
        raise not_found("文件")
    case = await _material_case(material)
    if case is None:
        draft = await ApplicationDraft.get_or_none(id=material.draft_id)  # type: ignore[attr-defined]
        if draft is None or actor.user_id not in (draft.user_id, draft.applicant_id):  # type: ignore[attr-defined]
            raise not_found("文件")
        allowed = [Variant.original, Variant.thumb]
        title = draft.title
    else:
        case, acc = await cases.case_and_access(actor, case.id)
        allowed = variants_for(side=viewer_side(acc), content_type=material.upload.content_type)
        title = case.title
    if claims.variant not in allowed:
        raise AppError(ErrorCode.link_invalid)
    if claims.variant == Variant.staff:
        assert case is not None
        # Audited before a byte leaves: who, whose, which material, which case.
        await audit.record(actor=actor, person_id=case.person_id,  # type: ignore[attr-defined]
                           action="online.material.view", fields_read=[material.name],
                           reason=f"办件{case.id}材料审查", request_id=request_id)
    return await _bytes(material.upload, claims.variant, title,
                        case.id if case is not None else None)


async def _bytes(up: Upload, variant: str, title: str, case_id: int | None = None) -> FileOut:
    store = storage.storage()
    if variant == Variant.thumb:
        if not up.thumb_key:
            raise not_found("文件")
        return FileOut(await store.get(up.thumb_key), "image/jpeg", f"{up.id}-thumb.jpg")
    data = await store.get(up.storage_key)
    pdf = up.content_type == "application/pdf"
    if variant == Variant.staff:
        mark = renditions.watermark_pdf if pdf else renditions.watermark_jpeg
        data = await asyncio.to_thread(mark, data, renditions.Mark(
            f"仅供{title}事项办理使用", f"FOR CASE {case_id} PROCESSING ONLY"))
    ext = "pdf" if pdf else "jpg"
    return FileOut(data, up.content_type, f"{up.id}.{ext}")


# ---------------------------------------------------------------------------------------------
# Deleting uploads (owner and retention) — one path, logged


async def _referenced_by_case(upload_id: int) -> bool:
    return await CaseMaterial.exists(upload_id=upload_id, case_id__not_isnull=True)


async def _erase(up: Upload, *, reason: str, by: int | None) -> None:
    """Bytes first, then the row: if the store fails the row still says "stored" and the next
    sweep (or the owner's retry) finds it again; deleting an absent object is a no-op."""
    store = storage.storage()
    await store.delete(up.storage_key)
    if up.thumb_key:
        await store.delete(up.thumb_key)
    async with in_transaction() as conn:
        changed = await Upload.filter(id=up.id, status=UploadStatus.stored).using_db(conn).update(
            status=UploadStatus.deleted, deleted_at=clock.now())
        if changed:
            await UploadDeletion.create(upload_id_ref=up.id, owner_id_ref=up.owner_id,  # type: ignore[attr-defined]
                                        storage_key=up.storage_key, reason=reason, by_id=by,
                                        using_db=conn)
    log.info("upload deleted", extra={"upload_id": up.id, "reason": reason})


async def delete_upload(*, actor: Principal, upload_id: int) -> None:
    up = await Upload.get_or_none(id=upload_id, owner_id=actor.user_id,
                                  status=UploadStatus.stored)
    if up is None:
        raise not_found("文件")
    if await _referenced_by_case(up.id):
        raise AppError(ErrorCode.upload_in_use)
    await CaseMaterial.filter(upload_id=up.id, case_id=None).delete()
    await _erase(up, reason="owner", by=actor.user_id)


async def sweep_retention(*, now: Any = None) -> int:
    """Abandoned drafts go with their uploads; uploads never attached to anything go after
    ``online_orphan_upload_hours``. An upload a submitted case uses is never touched."""
    settings = get_settings()
    now = now or clock.now()
    stale = now - timedelta(days=settings.online_draft_retention_days)
    deleted = 0
    for draft in await ApplicationDraft.filter(submitted_at=None, updated_at__lt=stale):
        ids = await CaseMaterial.filter(draft_id=draft.id).values_list("upload_id", flat=True)
        await draft.delete()  # its materials cascade
        for up in await Upload.filter(id__in=[i for i in ids if i], status=UploadStatus.stored):
            if not await CaseMaterial.exists(upload_id=up.id):
                await _erase(up, reason="abandoned_draft", by=None)
                deleted += 1
        log.info("abandoned draft removed", extra={"draft_id": draft.id})
    orphan_before = now - timedelta(hours=settings.online_orphan_upload_hours)
    for up in await Upload.filter(status=UploadStatus.stored, created_at__lt=orphan_before):
        if not await CaseMaterial.exists(upload_id=up.id):
            await _erase(up, reason="orphan", by=None)
            deleted += 1
    return deleted


@jobs.periodic("online.retention", every_seconds=3600)
async def _retention() -> None:
    n = await sweep_retention()
    if n:
        log.info("uploads deleted by retention", extra={"count": n})


# ---------------------------------------------------------------------------------------------
# Seed


async def seed_online(_data: dict[str, Any]) -> None:
    """Version 1 of the demo forms (seed/online_forms.json), for the items and bundles whose
    catalogue entry exists; a form staff already edited is left alone."""
    from services.seed import SEED_DIR

    path = SEED_DIR / "online_forms.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    base = spec["base"]
    for code, form in spec["forms"].items():
        if not await _target_exists(code) or await FormDefinition.exists(target_code=code):
            continue
        fields = [*base[form.get("base", "person")], *form.get("fields", [])]
        await FormDefinition.create(target_code=code, version=1, title=form.get("title", ""),
                                    schema={"fields": schema.check_definition(fields)})

