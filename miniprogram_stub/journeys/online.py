"""全程网办: a resident applies for a fully online item with the e-form and two photos, staff
reject one photo and send a 一次性告知, the resident uploads exactly that one, approved."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from miniprogram_stub.client import JourneyError, Journeys, MiniProgram


def _photo(colour: tuple[int, int, int]) -> bytes:
    # What a phone camera hands wx.uploadFile: a JPEG with EXIF (and a GPS position).
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (35.0, 44.0, 1.0), 3: "E", 4: (107.0, 38.0, 2.0)}
    out = io.BytesIO()
    Image.new("RGB", (640, 480), colour).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


async def upload(mp: MiniProgram, data: bytes, name: str = "photo.jpg") -> dict[str, Any]:
    """wx.uploadFile: multipart/form-data, the file in the part named ``file``."""
    resp = await mp.http.post("/api/v1/online/uploads",
                              files={"file": (name, data, "image/jpeg")},
                              headers={"Authorization": f"Bearer {mp.token}"})
    if resp.status_code != 201:
        raise JourneyError(f"{mp.code}: upload -> {resp.status_code}: {resp.text[:300]}")
    body: dict[str, Any] = resp.json()
    return body


async def journey_apply_online_supplement_approved(j: Journeys) -> None:
    zhang = await j.phone("zhang")
    # The clerk of the hall the case is filed at: staff see only their own hall's cases.
    staff = await j.phone("clerk@H-QY-GJJ")
    form = await zhang.call("GET", "/api/v1/online/forms/GJ-001")
    assert form["versions"] == {"GJ-001": 1} or form["versions"].get("GJ-001"), form
    draft = await zhang.call("POST", "/api/v1/online/drafts", expect=201,
                             json={"item_code": "GJ-001", "hall_code": "H-QY-GJJ"})
    did = draft["id"]
    # The verified identity is filled in (and locked); the rest is the resident's to fill.
    assert draft["values"]["applicant_name"] == "张建国", draft["values"]
    await zhang.call("PUT", f"/api/v1/online/drafts/{did}/values", json={"values": {
        "withdraw_reason": "租赁住房", "amount": "6000", "bank_name": "中国建设银行",
        "bank_account": "6217000000000000000", "contact_phone": "13893400000"}})
    # Two photos: the ID card and the tenancy contract.
    id_card = await upload(zhang, _photo((200, 200, 200)), "id.jpg")
    contract = await upload(zhang, _photo((120, 120, 120)), "contract.jpg")
    shown = await zhang.call("GET", id_card["links"]["original"])
    if b"Exif" in shown[:64]:
        raise JourneyError("EXIF survived the upload")
    for material, up in (("居民身份证", id_card), ("购房合同或租房备案证明", contract)):
        await zhang.call("POST", f"/api/v1/online/drafts/{did}/materials", expect=201,
                         json={"material": material, "upload_id": up["id"]})
    app = await zhang.call("POST", f"/api/v1/online/drafts/{did}/submit", expect=201,
                           json={"note": "网上申请提取公积金"},
                           headers={"Idempotency-Key": f"gj-{did}"})
    cid = app["case_id"]

    # Staff read the application (masked) and the photos (watermarked, audited).
    await staff.call("POST", f"/api/v1/cases/{cid}/transitions", json={"action": "accept"})
    seen = await staff.call("GET", f"/api/v1/online/cases/{cid}/application")
    assert seen["values"]["applicant_id_number"].startswith("6210**"), seen["values"]
    mats = {m["name"]: m for m in seen["materials"]}
    assert all(m["links"]["staff"] and not m["links"]["original"] for m in mats.values())
    await staff.call("GET", mats["居民身份证"]["links"]["staff"])
    review = f"/api/v1/online/cases/{cid}/materials"
    await staff.call("POST", f"{review}/{mats['居民身份证']['id']}/review",
                     json={"decision": "accepted"})
    await staff.call("POST", f"{review}/{mats['购房合同或租房备案证明']['id']}/review",
                     json={"decision": "rejected", "reason": "合同照片不清晰"})
    await staff.call("POST", f"/api/v1/cases/{cid}/supplement-requests", expect=201, json={
        "items": [{"material": "购房合同或租房备案证明", "reason": "合同照片不清晰，请重新拍摄"}]})

    # The resident uploads exactly the missing one.
    again = await upload(zhang, _photo((90, 90, 90)), "contract-2.jpg")
    done = await zhang.call("POST", f"/api/v1/online/cases/{cid}/supplements", expect=201,
                            json={"materials": [{"material": "购房合同或租房备案证明",
                                                 "upload_id": again["id"]}]})
    assert [m["name"] for m in done["materials"] if m["supplement_id"]] == \
        ["购房合同或租房备案证明"], done["materials"]
    await staff.call("POST", f"/api/v1/cases/{cid}/transitions", json={"action": "start_review"})
    approved = await staff.call("POST", f"/api/v1/cases/{cid}/transitions",
                                json={"action": "approve", "note": "材料齐全，准予提取"})
    assert approved["status"] == "approved", approved
    # Nobody else gets a byte.
    wang = await j.phone("wang")
    await wang.call("GET", f"/api/v1/online/cases/{cid}/application", expect=404)


JOURNEYS = [journey_apply_online_supplement_approved]
