"""全程网办 over HTTP: drafts with prefilled forms, streamed uploads, submission, the signed file
links and who gets a byte, staff review and audit, supplements, reuse and retention."""

from __future__ import annotations

import io
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from PIL import Image

from miniprogram_stub import demo_accounts
from models.audit import AuditLog
from models.online import ApplicationDraft, Upload, UploadDeletion
from models.users import Role
from services import clock, doorplates, online, seed, storage
from services.auth import Principal
from services.settings import get_settings

ZHANG = ("张建国", "621002194103050316")
WANG = ("王小明", "621002200302170132")
HALL = "H-XF-000"


@pytest.fixture(autouse=True)
def local_store(tmp_path: Path) -> Any:
    storage.use(storage.LocalStorage(tmp_path / "objects"))
    yield tmp_path / "objects"
    storage.use(None)


def jpeg(*, size: tuple[int, int] = (64, 48), gps: bool = False, orientation: int = 1) -> bytes:
    img = Image.new("RGB", size, (30, 120, 200))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (35.0, 44.0, 1.0), 3: "E", 4: (107.0, 38.0, 2.0)}
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (20, 10), (255, 0, 0, 128)).save(out, "PNG")
    return out.getvalue()


def make_pdf(pages: int = 1) -> bytes:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for _ in range(pages):
        doc.new_page(595, 842).close()  # A4, blank white
    out = io.BytesIO()
    doc.save(out)
    doc.close()
    return out.getvalue()


PDF = make_pdf()


async def upload(s: Any, data: bytes, name: str = "photo.jpg", ctype: str = "image/jpeg",
                 status: int = 201) -> Any:
    resp = await s.post("/api/v1/online/uploads", files={"file": (name, data, ctype)})
    assert resp.status == status, resp.text
    return resp.json


async def fetch(api: Any, link: str) -> Any:
    return await api.get(link)


async def _setup(api: Any) -> tuple[Any, Any, Any]:
    data = seed.load_demo_data()
    for seeder in (seed.seed_people, seed.seed_catalogue, doorplates.seed_codes,
                   online.seed_online):
        await seeder(data)
    staff = await api.login("staff", Role.staff)
    zhang = await api.login("zhang")
    await zhang.bind_identity(*ZHANG)
    wang = await api.login("wang")
    await wang.bind_identity(*WANG)
    return staff, zhang, wang


BANK = {"bank_name": "中国农业银行", "bank_account": "6228480000000000000",
        "living_status": "独居", "contact_phone": "13812345678", "address": "西峰区长庆路12号"}


async def _draft(s: Any, item: str = "MZ-004", **over: Any) -> dict[str, Any]:
    resp = await s.post("/api/v1/online/drafts", json={"item_code": item, "hall_code": HALL,
                                                       **over})
    assert resp.status == 201, resp.text
    return resp.json  # type: ignore[no-any-return]


async def _applied_case(api: Any, s: Any, item: str = "MZ-004",
                        values: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    d = await _draft(s, item)
    resp = await s.put(f"/api/v1/online/drafts/{d['id']}/values",
                       json={"values": values if values is not None else BANK})
    assert resp.status == 200, resp.text
    up = await upload(s, jpeg())
    resp = await s.post(f"/api/v1/online/drafts/{d['id']}/materials",
                        json={"material": "居民身份证", "upload_id": up["id"]})
    assert resp.status == 201, resp.text
    resp = await s.post(f"/api/v1/online/drafts/{d['id']}/submit", json={})
    assert resp.status == 201, resp.text
    return resp.json["case_id"], resp.json


# --- forms and drafts ------------------------------------------------------------------------


async def test_draft_prefills_identity_and_locks_it(api: Any) -> None:
    _, zhang, wang = await _setup(api)
    d = await _draft(zhang)
    assert d["form"]["versions"] == {"MZ-004": 1}
    assert d["values"]["applicant_name"] == "张建国"
    assert d["values"]["applicant_id_number"] == "621002194103050316"
    assert d["values"]["address"].endswith("长庆路12号")  # from the door plate
    locked = {f["key"] for f in d["form"]["fields"] if f["locked"]}
    assert locked == {"applicant_name", "applicant_id_number"}
    # Typing over the verified identity changes nothing.
    resp = await zhang.put(f"/api/v1/online/drafts/{d['id']}/values",
                           json={"values": {"applicant_name": "李四", "bank_name": "中国银行"}})
    assert resp.status == 200, resp.text
    assert resp.json["values"]["applicant_name"] == "张建国"
    # Resumed later, the saved values are there.
    again = (await zhang.get(f"/api/v1/online/drafts/{d['id']}")).json
    assert again["values"]["bank_name"] == "中国银行"
    assert [x["id"] for x in (await zhang.get("/api/v1/online/drafts")).json["drafts"]] == \
        [d["id"]]
    # Somebody else's draft does not exist for them.
    assert (await wang.get(f"/api/v1/online/drafts/{d['id']}")).status == 404
    assert (await wang.put(f"/api/v1/online/drafts/{d['id']}/values",
                           json={"values": {}})).status == 404
    # The values are encrypted at rest.
    row = await ApplicationDraft.get(id=d["id"])
    assert "张建国" not in row.values_enc and "0316" not in row.values_enc


async def test_draft_save_refuses_bad_values_per_field(api: Any) -> None:
    _, zhang, _ = await _setup(api)
    d = await _draft(zhang)
    resp = await zhang.put(f"/api/v1/online/drafts/{d['id']}/values", json={"values": {
        "contact_phone": "1234", "bank_name": "某银行", "nope": "x"}})
    assert resp.status == 422
    f = resp.json["error"]["fields"]
    assert set(f) == {"values.contact_phone", "values.bank_name", "values.nope"}
    assert f["values.bank_name"] == "开户银行：请从选项中选择"


async def test_submit_needs_complete_form_and_materials(api: Any) -> None:
    _, zhang, _ = await _setup(api)
    d = await _draft(zhang)
    resp = await zhang.post(f"/api/v1/online/drafts/{d['id']}/submit", json={})
    assert resp.status == 422, resp.text
    f = resp.json["error"]["fields"]
    assert f["values.bank_name"] == "请填写开户银行"
    assert f["materials.居民身份证"] == "请提供居民身份证"
    assert "values.agent_name" not in f  # optional


async def test_submit_freezes_form_version_and_is_idempotent(api: Any) -> None:
    staff, zhang, _ = await _setup(api)
    d = await _draft(zhang)
    await zhang.put(f"/api/v1/online/drafts/{d['id']}/values", json={"values": BANK})
    up = await upload(zhang, jpeg())
    await zhang.post(f"/api/v1/online/drafts/{d['id']}/materials",
                     json={"material": "居民身份证", "upload_id": up["id"]})
    # Staff publish version 2 with a new required field while zhang is filling version 1.
    v1 = (await zhang.get("/api/v1/online/forms/MZ-004")).json["fields"]
    resp = await staff.put("/api/v1/admin/online/forms/MZ-004", json={
        "title": "高龄津贴申领表（2027版）",
        "fields": [*v1, {"key": "guardian", "label": "监护人", "type": "text",
                         "required": True}]})
    assert resp.status == 201, resp.text
    assert resp.json["version"] == 2
    new = await _draft(zhang)
    assert new["form"]["versions"] == {"MZ-004": 2}
    headers = {"Idempotency-Key": "submit-1"}
    first = await zhang.post(f"/api/v1/online/drafts/{d['id']}/submit", json={},
                             headers=headers)
    assert first.status == 201, first.text
    assert first.json["form_versions"] == {"MZ-004": 1}
    assert "guardian" not in {f["key"] for f in first.json["fields"]}
    again = await zhang.post(f"/api/v1/online/drafts/{d['id']}/submit", json={},
                             headers=headers)
    assert again.status == 201 and again.json["case_id"] == first.json["case_id"]
    # Without the key a second submit is refused, not a second case.
    resp = await zhang.post(f"/api/v1/online/drafts/{d['id']}/submit", json={})
    assert resp.status == 409 and resp.json["error"]["code"] == "draft_submitted"
    case = (await zhang.get(f"/api/v1/cases/{first.json['case_id']}")).json
    assert case["status"] == "submitted" and case["title"] == "高龄津贴申领"
    versions = (await staff.get("/api/v1/admin/online/forms/MZ-004/versions")).json
    assert [v["version"] for v in versions["versions"]] == [2, 1]


async def test_forms_are_edited_by_staff_only(api: Any) -> None:
    _, zhang, _ = await _setup(api)
    body = {"title": "x", "fields": [{"key": "a", "label": "甲", "type": "text"}]}
    assert (await zhang.put("/api/v1/admin/online/forms/MZ-004", json=body)).status == 403
    assert (await zhang.get("/api/v1/admin/online/forms/MZ-004/versions")).status == 403
    staff = await api.login("staff2", Role.staff)
    bad = await staff.put("/api/v1/admin/online/forms/MZ-004", json={
        "title": "x", "fields": [{"key": "a", "label": "甲", "type": "colour"}]})
    assert bad.status == 422 and "fields.0.type" in bad.json["error"]["fields"]
    assert (await staff.put("/api/v1/admin/online/forms/NOPE-1", json=body)).status == 404
    # An item without an online form says so.
    resp = await zhang.get("/api/v1/online/forms/MZ-003")
    assert resp.status == 404 and resp.json["error"]["code"] == "form_not_found"


async def test_bundle_form_asks_shared_fields_once(api: Any) -> None:
    await _setup(api)
    agent = await api.login("demo-agent")
    form = (await agent.get("/api/v1/online/forms/YJS-01")).json
    keys = [f["key"] for f in form["fields"]]
    assert len(keys) == len(set(keys))
    assert form["versions"] == {"SJ-003": 1, "SW-002": 1, "RS-009": 1}
    # Each of the three items asks for the enterprise's name and credit code; asked once.
    singles = [(await agent.get(f"/api/v1/online/forms/{c}")).json for c in
               ("SJ-003", "SW-002", "RS-009")]
    asked = sum(len(s["fields"]) for s in singles)
    assert keys.count("uscc") == 1 and len(keys) < asked
    assert set(keys) == {f["key"] for s in singles for f in s["fields"]}


# --- uploads -------------------------------------------------------------------------------


async def test_upload_types_decided_by_bytes(api: Any, local_store: Path) -> None:
    _, zhang, _ = await _setup(api)
    got = await upload(zhang, png(), "scan.png", "image/png")
    assert got["content_type"] == "image/jpeg"  # re-encoded
    pdf = await upload(zhang, PDF, "form.pdf", "application/pdf")
    assert pdf["content_type"] == "application/pdf" and pdf["links"]["thumb"] is None
    # A script named .jpg, an HTML page declared as an image, a GIF: refused by their bytes.
    for data in (b"#!/bin/sh\nrm -rf /\n" * 3, b"<html><script>x</script></html>",
                 b"GIF89a" + b"\x00" * 40):
        resp = await zhang.post("/api/v1/online/uploads",
                                files={"file": ("photo.jpg", data, "image/jpeg")})
        assert resp.status == 415, resp.text
        assert resp.json["error"]["code"] == "upload_type_refused"
    # JPEG magic but not an image: refused when decoding, not stored.
    resp = await zhang.post("/api/v1/online/uploads",
                            files={"file": ("a.jpg", b"\xff\xd8\xff" + b"\x00" * 100,
                                            "image/jpeg")})
    assert resp.status == 415
    # A PDF header and nothing PDFium can open: broken (or truncated, or encrypted).
    resp = await zhang.post("/api/v1/online/uploads",
                            files={"file": ("a.pdf", b"%PDF-1.4\n" + b"x" * 100,
                                            "application/pdf")})
    assert resp.status == 415
    # Not multipart, no file part.
    resp = await zhang.post("/api/v1/online/uploads", json={"file": "x"})
    assert resp.status == 415
    resp = await zhang.post("/api/v1/online/uploads", files={"other": ("a", b"x", "text/plain")})
    assert resp.status == 422 and resp.json["error"]["fields"] == {"file": "必填"}
    assert await Upload.all().count() == 2
    tmp = Path(get_settings().online_upload_tmp_dir)
    assert not [p for p in os.listdir(tmp) if p.startswith("upload-")], \
        "refused uploads leave no temporary file"
    assert (await api.post("/api/v1/online/uploads", files={"file": ("a", PDF)})).status == 401


async def test_pdf_page_limit(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, zhang, _ = await _setup(api)
    monkeypatch.setattr(get_settings(), "online_pdf_max_pages", 2)
    assert (await zhang.post("/api/v1/online/uploads",
                             files={"file": ("a.pdf", make_pdf(2))})).status == 201
    resp = await zhang.post("/api/v1/online/uploads", files={"file": ("a.pdf", make_pdf(3))})
    assert resp.status == 415 and resp.json["error"]["fields"]["file"] == "PDF 不能超过 2 页"


async def test_staff_see_pdfs_rendered_with_watermark(api: Any) -> None:
    import pypdfium2 as pdfium

    staff, zhang, _ = await _setup(api)
    d = await _draft(zhang)
    await zhang.put(f"/api/v1/online/drafts/{d['id']}/values", json={"values": BANK})
    original = make_pdf(2)
    up = await upload(zhang, original, "id.pdf", "application/pdf")
    await zhang.post(f"/api/v1/online/drafts/{d['id']}/materials",
                     json={"material": "居民身份证", "upload_id": up["id"]})
    cid = (await zhang.post(f"/api/v1/online/drafts/{d['id']}/submit", json={})).json["case_id"]
    mine = (await zhang.get(f"/api/v1/online/cases/{cid}/application")).json["materials"][0]
    # The applicant gets their file back byte for byte; staff get the marked rendition.
    assert (await fetch(api, mine["links"]["original"])).body == original
    view = (await staff.get(f"/api/v1/online/cases/{cid}/application")).json["materials"][0]
    resp = await fetch(api, view["links"]["staff"])
    assert resp.status == 200 and resp.headers["content-type"] == "application/pdf"
    doc = pdfium.PdfDocument(resp.body)
    assert len(doc) == 2 and doc[0].get_size() == (595, 842)
    page = doc[0].render(scale=0.5).to_pil().convert("RGB")
    red = [px for px in page.get_flattened_data() if px[0] > px[1] + 40]
    assert red, "the blank page came back without the watermark"
    doc.close()
    assert await AuditLog.filter(action="online.material.view", actor_id=staff.user_id).exists()


async def test_uploads_rate_limited_per_account(api: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, zhang, wang = await _setup(api)
    monkeypatch.setattr(get_settings(), "online_upload_rate_limit", 2)
    for _ in range(2):
        await upload(zhang, PDF, "a.pdf", "application/pdf")
    resp = await zhang.post("/api/v1/online/uploads", files={"file": ("a.pdf", PDF)})
    assert resp.status == 429 and resp.headers["retry-after"]
    await upload(wang, PDF, "a.pdf", "application/pdf")  # counted per account


async def test_upload_size_limit(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, zhang, _ = await _setup(api)
    monkeypatch.setattr(get_settings(), "online_upload_max_bytes", 10_000)
    big = PDF[:-7] + b"x" * 20_000 + b"%%EOF\n"
    resp = await zhang.post("/api/v1/online/uploads",
                            files={"file": ("big.pdf", big, "application/pdf")})
    assert resp.status == 413 and resp.json["error"]["code"] == "upload_too_large"
    assert await Upload.all().count() == 0


async def test_exif_and_gps_stripped_orientation_kept(api: Any) -> None:
    _, zhang, _ = await _setup(api)
    raw = jpeg(size=(80, 40), gps=True, orientation=6)  # 6: rotate 90° to display
    assert Image.open(io.BytesIO(raw)).getexif().get_ifd(0x8825)
    got = await upload(zhang, raw)
    resp = await fetch(api, got["links"]["original"])
    assert resp.status == 200 and resp.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(resp.body))
    assert len(img.getexif()) == 0 and b"Exif" not in resp.body[:200]
    assert img.size == (40, 80)  # turned upright before the orientation tag was dropped
    thumb = await fetch(api, got["links"]["thumb"])
    assert Image.open(io.BytesIO(thumb.body)).size[1] <= get_settings().online_thumb_side


async def test_heic_converted_to_jpeg(api: Any) -> None:
    import pillow_heif

    _, zhang, _ = await _setup(api)
    heif = pillow_heif.from_pillow(Image.new("RGB", (32, 32), (10, 200, 10)))
    out = io.BytesIO()
    heif.save(out, quality=80)
    got = await upload(zhang, out.getvalue(), "IMG_0001.HEIC", "image/heic")
    assert got["content_type"] == "image/jpeg"
    body = (await fetch(api, got["links"]["original"])).body
    assert Image.open(io.BytesIO(body)).format == "JPEG"


# --- links and who gets a byte ---------------------------------------------------------------


def _token(link: str) -> str:
    return parse_qs(urlparse(link).query)["t"][0]


async def test_links_expire_and_cannot_be_forged(api: Any) -> None:
    _, zhang, wang = await _setup(api)
    got = await upload(zhang, jpeg())
    token = _token(got["links"]["original"])
    body, _, sig = token.partition(".")
    # Another id under the same signature.
    claims = json.loads(online._unb64(body))
    forged = online._b64(json.dumps({**claims, "i": claims["i"] + 1}).encode())
    for t in (f"{forged}.{sig}", f"{body}.{sig[:-2]}AA", body, "x" * 20):
        resp = await api.get("/api/v1/online/files", params={"t": t})
        assert resp.status == 403 and resp.json["error"]["code"] == "link_invalid", t
    # Expired.
    old, _ = online.sign_link(kind="u", object_id=got["id"], variant="original",
                              actor=Principal(zhang.user_id, frozenset()),
                              now=clock.now().timestamp() - 3600)
    resp = await api.get("/api/v1/online/files", params={"t": old})
    assert resp.status == 403
    # A validly signed link for someone else's upload (a guessed id): nothing.
    theirs, _ = online.sign_link(kind="u", object_id=got["id"], variant="original",
                                 actor=Principal(wang.user_id, frozenset()))
    assert (await api.get("/api/v1/online/files", params={"t": theirs})).status == 404
    # The owner can delete it; another resident can't.
    assert (await wang.delete(f"/api/v1/online/uploads/{got['id']}")).status == 404
    assert (await zhang.delete(f"/api/v1/online/uploads/{got['id']}")).status == 200
    assert (await fetch(api, got["links"]["original"])).status == 404


async def test_case_materials_applicant_staff_and_strangers(api: Any) -> None:
    staff, zhang, wang = await _setup(api)
    cid, app = await _applied_case(api, zhang)
    mat = app["materials"][0]
    assert mat["links"]["original"] and mat["links"]["staff"] is None
    original = (await fetch(api, mat["links"]["original"])).body
    assert await AuditLog.filter(action="online.material.view").count() == 0

    # Another resident: the case does not exist for them, and no link can be made to work.
    assert (await wang.get(f"/api/v1/online/cases/{cid}/application")).status == 404
    theirs, _ = online.sign_link(kind="m", object_id=mat["id"], variant="original",
                                 actor=Principal(wang.user_id, frozenset()))
    assert (await api.get("/api/v1/online/files", params={"t": theirs})).status == 404

    # Staff see masked values, and only a watermarked rendition, each view audited.
    view = (await staff.get(f"/api/v1/online/cases/{cid}/application")).json
    assert view["values"]["applicant_id_number"] == "6210**********0316"
    assert view["values"]["contact_phone"] == "138****5678"
    read = await AuditLog.filter(action="online.application.view").first()
    assert read is not None and read.actor_id == staff.user_id
    assert "applicant_name" in read.fields_read
    smat = view["materials"][0]
    assert smat["links"]["original"] is None and smat["links"]["staff"]
    seen = await fetch(api, smat["links"]["staff"])
    assert seen.status == 200
    marked, plain = Image.open(io.BytesIO(seen.body)), Image.open(io.BytesIO(original))
    assert marked.size == plain.size
    # The photo is a flat blue; the watermark is red text over it.
    brightest_red: Any = marked.split()[0].getextrema()[1]
    background: Any = plain.getpixel((0, 0))
    assert brightest_red - background[0] > 40, "no watermark drawn"
    log = await AuditLog.filter(action="online.material.view").first()
    assert log is not None and log.actor_id == staff.user_id
    assert log.fields_read == ["居民身份证"] and str(cid) in log.reason
    assert log.subject_person_id is not None
    # Another case's path with this material's id: not found.
    other, _ = await _applied_case(api, wang)
    resp = await staff.post(f"/api/v1/online/cases/{other}/materials/{smat['id']}/review",
                            json={"decision": "accepted"})
    assert resp.status == 404
    # A staff member can't turn their link into the unmarked original.
    sneaky, _ = online.sign_link(kind="m", object_id=smat["id"], variant="original",
                                 actor=Principal(staff.user_id, frozenset({"staff"})))
    resp = await api.get("/api/v1/online/files", params={"t": sneaky})
    assert resp.status == 403
    assert await AuditLog.filter(action="online.material.view").count() == 1

    # A helper offered nothing, holding no authorisation: nothing.
    helper = await api.login("helperx", Role.helper)
    assert (await helper.get(f"/api/v1/online/cases/{cid}/application")).status == 404


async def test_helper_with_authorisation_reads_materials(api: Any) -> None:
    _, zhang, _ = await _setup(api)
    await demo_accounts.seed(get_settings().wechat_appid)
    helper = await api.login("demo-helper")
    # Filing for zhang needs zhang's "apply" authorisation.
    resp = await helper.post("/api/v1/online/drafts", json={
        "item_code": "MZ-004", "hall_code": HALL, "applicant_user_id": zhang.user_id})
    assert resp.status == 403 and resp.json["error"]["code"] == "proxy_authorization_required"
    resp = await zhang.post("/api/v1/proxy-authorizations", json={
        "helper_user_id": helper.user_id, "scopes": ["apply", "supplement"], "days": 7})
    assert resp.status == 201, resp.text
    d = (await helper.post("/api/v1/online/drafts", json={
        "item_code": "MZ-004", "hall_code": HALL, "applicant_user_id": zhang.user_id})).json
    # The helper sees the resident's ID masked; the applicant sees the draft too.
    assert d["values"]["applicant_id_number"] == "6210**********0316"
    assert (await zhang.get(f"/api/v1/online/drafts/{d['id']}")).status == 200
    await helper.put(f"/api/v1/online/drafts/{d['id']}/values", json={"values": {
        k: v for k, v in BANK.items() if k != "contact_phone"} | {"contact_phone": "13900001111"}})
    up = await upload(helper, jpeg())
    await helper.post(f"/api/v1/online/drafts/{d['id']}/materials",
                      json={"material": "居民身份证", "upload_id": up["id"]})
    # zhang can't attach the helper's upload to anything (it is not zhang's).
    resp = await zhang.post(f"/api/v1/online/drafts/{d['id']}/materials",
                            json={"material": "居民身份证", "upload_id": up["id"]})
    assert resp.status == 422
    sub = await helper.post(f"/api/v1/online/drafts/{d['id']}/submit", json={})
    assert sub.status == 201, sub.text
    view = (await helper.get(f"/api/v1/online/cases/{sub.json['case_id']}/application")).json
    assert (await fetch(api, view["materials"][0]["links"]["original"])).status == 200


# --- review, supplements, reuse ----------------------------------------------------------------


async def test_supplement_delivers_exactly_the_requested_materials(api: Any) -> None:
    staff, zhang, wang = await _setup(api)
    values = {"child_name": "张小明", "child_id_number": "621002201803050012",
              "grade": "小学一年级", "contact_phone": "13812345678", "address": "长庆路12号"}
    from services.identity import _id_check_char

    values["child_id_number"] = "62100220180305001" + _id_check_char("62100220180305001")
    d = await _draft(zhang, "JY-001")
    resp = await zhang.put(f"/api/v1/online/drafts/{d['id']}/values", json={"values": values})
    assert resp.status == 200, resp.text
    ups = [await upload(zhang, jpeg()) for _ in range(3)]
    for name, up in zip(("居民身份证", "户口簿", "房产证明或居住证"), ups, strict=True):
        await zhang.post(f"/api/v1/online/drafts/{d['id']}/materials",
                         json={"material": name, "upload_id": up["id"]})
    cid = (await zhang.post(f"/api/v1/online/drafts/{d['id']}/submit", json={})).json["case_id"]
    await staff.post(f"/api/v1/cases/{cid}/transitions", json={"action": "accept"})
    view = (await staff.get(f"/api/v1/online/cases/{cid}/application")).json
    by_name = {m["name"]: m for m in view["materials"]}
    # Staff accept one, reject two with reasons (a rejection without one is refused).
    base = f"/api/v1/online/cases/{cid}/materials"
    resp = await staff.post(f"{base}/{by_name['户口簿']['id']}/review",
                            json={"decision": "rejected"})
    assert resp.status == 422 and "reason" in resp.json["error"]["fields"]
    assert (await zhang.post(f"{base}/{by_name['户口簿']['id']}/review",
                             json={"decision": "accepted"})).status == 403
    reviews = (("居民身份证", "accepted", ""), ("户口簿", "rejected", "缺户主页"),
               ("房产证明或居住证", "rejected", "照片模糊"))
    for name, decision, reason in reviews:
        resp = await staff.post(f"{base}/{by_name[name]['id']}/review",
                                json={"decision": decision, "reason": reason})
        assert resp.status == 200, resp.text
    statuses = {m["name"]: (m["status"], m["reason"]) for m in resp.json["materials"]}
    assert statuses["户口簿"] == ("rejected", "缺户主页")
    assert statuses["居民身份证"][0] == "accepted"
    resp = await staff.post(f"/api/v1/cases/{cid}/supplement-requests", json={"items": [
        {"material": "户口簿", "reason": "缺户主页"}, {"material": "房产证明或居住证",
                                                  "reason": "照片模糊"}]})
    assert resp.status == 201, resp.text

    new = [await upload(zhang, jpeg()) for _ in range(3)]
    url = f"/api/v1/online/cases/{cid}/supplements"
    # The bare state change of paper cases is not how an online case is supplemented.
    resp = await zhang.post(f"/api/v1/cases/{cid}/transitions", json={"action": "resubmit"})
    assert resp.status == 422 and resp.json["error"]["code"] == "materials_mismatch"
    resp = await wang.post(f"/api/v1/cases/{cid}/transitions", json={"action": "resubmit"})
    assert resp.status == 404
    # Only one of the two: refused, nothing attached, still waiting.
    resp = await zhang.post(url, json={"materials": [{"material": "户口簿",
                                                      "upload_id": new[0]["id"]}]})
    assert resp.status == 422 and resp.json["error"]["code"] == "materials_mismatch"
    assert resp.json["error"]["fields"] == {"materials.房产证明或居住证": "缺少该项补正材料"}
    # Both plus one that was not asked for: refused.
    resp = await zhang.post(url, json={"materials": [
        {"material": "户口簿", "upload_id": new[0]["id"]},
        {"material": "房产证明或居住证", "upload_id": new[1]["id"]},
        {"material": "居民身份证", "upload_id": new[2]["id"]}]})
    assert resp.status == 422 and "materials.2.material" in resp.json["error"]["fields"]
    assert (await zhang.get(f"/api/v1/cases/{cid}")).json["status"] == "supplement_requested"
    # Someone else can't supplement it.
    assert (await wang.post(url, json={"materials": [
        {"material": "户口簿", "upload_id": new[0]["id"]}]})).status == 404
    resp = await zhang.post(url, json={"materials": [
        {"material": "户口簿", "upload_id": new[0]["id"]},
        {"material": "房产证明或居住证", "upload_id": new[1]["id"]}]})
    assert resp.status == 201, resp.text
    sup = [m for m in resp.json["materials"] if m["supplement_id"]]
    assert sorted(m["name"] for m in sup) == ["户口簿", "房产证明或居住证"]
    case = (await zhang.get(f"/api/v1/cases/{cid}")).json
    assert case["status"] == "resubmitted" and case["missing"] == []
    # Nothing open any more: a second delivery is an illegal move.
    resp = await zhang.post(url, json={"materials": [
        {"material": "户口簿", "upload_id": new[2]["id"]}]})
    assert resp.status == 409


async def test_accepted_material_is_reused_on_the_next_application(api: Any) -> None:
    staff, zhang, wang = await _setup(api)
    cid, app = await _applied_case(api, zhang)
    mat = app["materials"][0]
    await staff.post(f"/api/v1/cases/{cid}/transitions", json={"action": "accept"})
    resp = await staff.post(f"/api/v1/online/cases/{cid}/materials/{mat['id']}/review",
                            json={"decision": "accepted"})
    assert resp.status == 200
    d = await _draft(zhang, "MZ-005")
    offer = next(c for c in d["checklist"] if c["name"] == "居民身份证")
    assert [r["material_id"] for r in offer["reusable"]] == [mat["id"]]
    # wang is offered nothing of zhang's and can't name it.
    wd = await _draft(wang, "MZ-005")
    assert next(c for c in wd["checklist"] if c["name"] == "居民身份证")["reusable"] == []
    resp = await wang.post(f"/api/v1/online/drafts/{wd['id']}/materials",
                           json={"material": "居民身份证", "reuse_material_id": mat["id"]})
    assert resp.status == 422
    resp = await zhang.post(f"/api/v1/online/drafts/{d['id']}/materials",
                            json={"material": "居民身份证", "reuse_material_id": mat["id"]})
    assert resp.status == 201, resp.text
    await zhang.put(f"/api/v1/online/drafts/{d['id']}/values",
                    json={"values": {"delivery": "邮寄到家", "contact_phone": "13812345678",
                                     "address": "长庆路12号"}})
    sub = await zhang.post(f"/api/v1/online/drafts/{d['id']}/submit", json={})
    assert sub.status == 201, sub.text
    assert sub.json["reused"] == ["居民身份证"]
    m = sub.json["materials"][0]
    assert m["source"] == "reuse" and m["reused_from_id"] == mat["id"]
    # Past its validity it is no longer offered.
    from models.online import CaseMaterial

    await CaseMaterial.filter(id=mat["id"]).update(valid_until=clock.today() - timedelta(days=1))
    d3 = await _draft(zhang, "MZ-005")
    assert next(c for c in d3["checklist"] if c["name"] == "居民身份证")["reusable"] == []


async def test_enterprise_licence_attached_instead_of_uploaded(api: Any) -> None:
    await _setup(api)
    await demo_accounts.seed(get_settings().wechat_appid)
    agent = await api.login("demo-agent")
    from models.enterprises import Enterprise

    ent = await Enterprise.get(uscc=demo_accounts.AGENT_ENTERPRISE)
    d = await _draft(agent, "SJ-003", enterprise_id=ent.id)
    assert d["values"]["uscc"] == ent.uscc  # prefilled from the enterprise
    lic = next(c for c in d["checklist"] if c["name"] == "营业执照")["licences"]
    assert len(lic) == 1 and lic[0]["title"] == "营业执照"
    resp = await agent.post(f"/api/v1/online/drafts/{d['id']}/materials",
                            json={"material": "营业执照", "licence_id": lic[0]["id"]})
    assert resp.status == 201, resp.text
    # A licence can't stand in for a material it isn't.
    resp = await agent.post(f"/api/v1/online/drafts/{d['id']}/materials",
                            json={"material": "法定代表人身份证明", "licence_id": lic[0]["id"]})
    assert resp.status == 422
    # Another enterprise's draft: not this agent's enterprise.
    other = await api.login("someone")
    resp = await other.post("/api/v1/online/drafts", json={
        "item_code": "SJ-003", "hall_code": HALL, "enterprise_id": ent.id})
    assert resp.status == 404


# --- retention -------------------------------------------------------------------------------


async def test_retention_deletes_abandoned_and_orphan_uploads_only(api: Any,
                                                                   local_store: Path) -> None:
    _, zhang, _ = await _setup(api)
    await _applied_case(api, zhang)  # its upload must survive
    kept = await Upload.get(id=(await Upload.all().order_by("id").first()).id)
    d = await _draft(zhang, "MZ-005")
    in_draft = await upload(zhang, jpeg())
    await zhang.post(f"/api/v1/online/drafts/{d['id']}/materials",
                     json={"material": "居民身份证", "upload_id": in_draft["id"]})
    orphan = await upload(zhang, PDF, "x.pdf", "application/pdf")
    fresh = await upload(zhang, PDF, "y.pdf", "application/pdf")
    later = clock.now() + timedelta(days=get_settings().online_draft_retention_days + 1)
    await Upload.filter(id__in=[in_draft["id"], orphan["id"], kept.id]).update(
        created_at=later - timedelta(days=40))
    await ApplicationDraft.filter(id=d["id"]).update(updated_at=later - timedelta(days=31))
    await Upload.filter(id=fresh["id"]).update(created_at=later - timedelta(hours=1))

    assert await online.sweep_retention(now=later) == 2
    gone = {u.id for u in await Upload.filter(status="deleted")}
    assert gone == {in_draft["id"], orphan["id"]}
    assert not await ApplicationDraft.exists(id=d["id"])
    logs = {(x.upload_id_ref, x.reason) for x in await UploadDeletion.all()}
    assert logs == {(in_draft["id"], "abandoned_draft"), (orphan["id"], "orphan")}
    for u in await Upload.filter(id__in=list(gone)):
        assert not (local_store / u.storage_key).exists()
    assert (local_store / kept.storage_key).exists()
    assert await online.sweep_retention(now=later) == 0  # idempotent
    # The case's upload can't be deleted by its owner either.
    resp = await zhang.delete(f"/api/v1/online/uploads/{kept.id}")
    assert resp.status == 409 and resp.json["error"]["code"] == "upload_in_use"
    resp = await zhang.delete(f"/api/v1/online/uploads/{fresh['id']}")
    assert resp.status == 200
    assert await UploadDeletion.filter(upload_id_ref=fresh["id"], reason="owner",
                                       by_id=zhang.user_id).exists()


async def test_openapi_documents_the_upload_as_multipart(api: Any) -> None:
    spec = (await api.get("/docs/openapi.json")).json
    body = spec["paths"]["/api/v1/online/uploads"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file"] and schema["properties"]["file"]["format"] == "binary"
    assert "/api/v1/online/files" in spec["paths"]
