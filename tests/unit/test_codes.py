"""一码通 services: tokens, resolution through Redis, what each scanner sees, logs, limits."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
import zxingcpp
from PIL import Image, ImageDraw

from miniprogram_stub.demo_accounts import GRID
from models.catalogue import Hall
from models.codes import DoorPlate, IssuedCode, ScanLog
from models.enterprises import Enterprise, EnterpriseAgent
from models.users import IdentityLevel, Person, Role, User
from services import cache, clock, codes, doorplates, fonts, geo, onbehalf, people
from services import seed as seed_service
from services.auth import Principal
from services.codes import views
from services.errors import AppError, ErrorCode
from services.identity import InvalidCreditCode, InvalidIdNumber, validate_id_number, validate_uscc
from services.settings import get_settings
from tests.conftest import grant_position

ZHANG = "621002194103050316"
LI = "621021197508120426"
AGENT_USCC = "91621000MA700QY00N"


async def seed_demo() -> None:
    data = seed_service.load_demo_data()
    await seed_service.seed_people(data)
    await seed_service.seed_catalogue(data)
    await doorplates.seed_codes(data)


async def user(name: str, *roles: Role, person_id_number: str | None = None) -> Principal:
    u = await User.create(openid=f"openid-{name}", nickname=name)
    if person_id_number:
        # Bound as if face-verified; the verification flow itself: tests/api/test_identity_api.py
        u.person = await Person.get(id_number_hash=people.id_lookup_hash(person_id_number))
        u.identity_level = IdentityLevel.face
        await u.save(update_fields=["person_id", "identity_level"])
    return Principal(user_id=u.id, roles=frozenset({"resident", *(str(r) for r in roles)}))


async def code_of(p: Principal) -> str:
    return (await codes.issue_person_code(user_id=p.user_id)).content


async def expect_error(code: ErrorCode, coro: Any) -> AppError:
    with pytest.raises(AppError) as info:
        await coro
    assert info.value.code is code, info.value
    return info.value


def decode_png(png: bytes) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def rasterise_svg(svg: str, scale: int = 10) -> Image.Image:
    """SvgPathImage draws each module as ``M x,y H x2 V y2 H x z``: paint those squares."""
    size = float(re.search(r'viewBox="0 0 ([\d.]+)', svg).group(1))
    img = Image.new("L", (int(size * scale) + 1, int(size * scale) + 1), 255)
    draw = ImageDraw.Draw(img)
    for x, y, x2, y2 in re.findall(r"M([\d.]+),([\d.]+)H([\d.]+)V([\d.]+)H[\d.]+z", svg):
        draw.rectangle([float(x) * scale, float(y) * scale, float(x2) * scale - 1,
                        float(y2) * scale - 1], fill=0)
    return img


# --- tokens -------------------------------------------------------------------------------


def test_person_token_signature_and_expiry() -> None:
    now = 1_800_000_000
    token = codes.sign_person_token(b"\x01" * 9, now + 60)
    nonce, exp = codes.verify_person_token(token, now=now)
    assert nonce == "01" * 9 and exp == now + 60
    # One character changed anywhere after the prefix: not ours.
    for i in (1, 10, len(token) - 1):
        edited = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
        with pytest.raises(AppError) as info:
            codes.verify_person_token(edited, now=now)
        assert info.value.code is ErrorCode.code_unrecognised
    # A longer expiry grafted onto the old signature fails too.
    forged = codes.sign_person_token(b"\x01" * 9, now + 3600)
    assert forged[:20] != token[:20] or forged != token
    with pytest.raises(AppError) as info:
        codes.verify_person_token(forged[:-22] + token[-22:], now=now)
    assert info.value.code is ErrorCode.code_unrecognised
    with pytest.raises(AppError) as info:
        codes.verify_person_token(token, now=now + 60)
    assert info.value.code is ErrorCode.code_expired


def test_person_token_key_is_derived_from_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    token = codes.sign_person_token(b"\x02" * 9, 1_800_000_060)
    monkeypatch.setattr(get_settings(), "jwt_secret", "another-secret-another-secret-123")
    with pytest.raises(AppError) as info:
        codes.verify_person_token(token, now=1_800_000_000)
    assert info.value.code is ErrorCode.code_unrecognised


def test_extract_token_accepts_our_url_and_bare_tokens_only() -> None:
    token = "L" + "a" * 20
    assert codes.extract_token(codes.code_url(token)) == token
    assert codes.extract_token(f"  {token} ") == token
    for bad in ("https://evil.example.com/c/" + token, "hello", "X" + "a" * 30,
                codes.code_url("L<script>aaaaaaaaaaaaaaaaaa")):
        with pytest.raises(AppError) as info:
            codes.extract_token(bad)
        assert info.value.code is ErrorCode.code_unrecognised


def test_qr_png_and_svg_decode_back_to_the_content() -> None:
    content = codes.code_url(codes.sign_person_token(b"\x03" * 9, 1_800_000_060))
    assert decode_png(codes.qr_png(content)) == [content]
    found = zxingcpp.read_barcodes(rasterise_svg(codes.qr_svg(content)))
    assert [r.text for r in found] == [content]


def test_validators_used_by_codes() -> None:
    assert validate_uscc(AGENT_USCC.lower()) == AGENT_USCC
    with pytest.raises(InvalidCreditCode):
        validate_uscc(AGENT_USCC[:-1] + "A")
    assert validate_id_number(ZHANG).birth_date.year == 1941
    with pytest.raises(InvalidIdNumber):
        validate_id_number(ZHANG[:-1] + "1")


# --- person codes -------------------------------------------------------------------------


async def test_staff_scan_of_person_code_shows_masked_identity_and_licences() -> None:
    await seed_demo()
    li = await user("li", person_id_number=LI)
    staff = await user("staff", Role.staff)
    await grant_position(staff.user_id, hall="H-QY-000")  # the watermark names their hall
    scanned = await codes.scan(actor=staff, content=await code_of(li))
    view = scanned.body["person"]
    assert set(scanned.body) == {"person"}
    assert view["identity"]["name"] == "*秀兰"
    assert view["identity"]["id_number"] == "6210**********0426"
    assert "李秀兰" not in json.dumps(view, ensure_ascii=False)
    assert LI not in json.dumps(view)
    kinds = [lic["kind"] for lic in view["licences"]]
    assert kinds == ["identity_card", "disability_cert"]
    for lic in view["licences"]:
        assert "庆阳市政务服务中心" in lic["watermark"]
        assert scanned.scan_id[:8] in lic["watermark"]
        assert lic["shown_at"] == scanned.at.isoformat()


async def test_person_code_without_identity_is_refused() -> None:
    nobody = await user("nobody")
    await expect_error(ErrorCode.identity_required, codes.issue_person_code(user_id=nobody.user_id))


async def test_person_code_resolves_through_redis_only() -> None:
    await seed_demo()
    zhang = await user("zhang", person_id_number=ZHANG)
    staff = await user("staff", Role.staff)
    content = await code_of(zhang)
    assert (await codes.scan(actor=staff, content=content)).kind == "person"
    await cache.redis().flushdb()
    err = await expect_error(ErrorCode.code_expired, codes.scan(actor=staff, content=content))
    assert "请刷新二维码" in err.message
    # A fresh code works again straight away.
    assert (await codes.scan(actor=staff, content=await code_of(zhang))).kind == "person"


async def test_expired_person_code_asks_for_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    await seed_demo()
    zhang = await user("zhang", person_id_number=ZHANG)
    staff = await user("staff", Role.staff)
    content = await code_of(zhang)
    later = clock.now() + timedelta(seconds=get_settings().person_code_ttl_seconds + 1)
    monkeypatch.setattr(clock, "now", lambda: later)
    err = await expect_error(ErrorCode.code_expired, codes.scan(actor=staff, content=content))
    assert err.status == 410


@pytest.mark.parametrize("role", [None, Role.helper, Role.community_worker,
                                  Role.enterprise_agent])
async def test_only_staff_may_scan_person_codes(role: Role | None) -> None:
    await seed_demo()
    zhang = await user("zhang", person_id_number=ZHANG)
    other = await user("other", *([role] if role else []))
    await expect_error(ErrorCode.forbidden, codes.scan(actor=other, content=await code_of(zhang)))
    await codes.flush_scan_logs()
    row = await ScanLog.get(scanner_id=other.user_id)
    assert row.outcome == "forbidden" and row.shown == []
    person = await Person.get(id_number_hash=people.id_lookup_hash(ZHANG))
    assert row.subject_person_id == person.id


# --- long-lived codes ---------------------------------------------------------------------


async def test_enterprise_code_public_view_and_agent_view() -> None:
    await seed_demo()
    ent = await Enterprise.get(uscc=AGENT_USCC)
    agent = await user("agent", Role.enterprise_agent)
    await EnterpriseAgent.create(enterprise=ent, user_id=agent.user_id)
    qr = await codes.issue_enterprise_code(actor=agent, enterprise_id=ent.id)
    resident = await user("resident")
    public = (await codes.scan(actor=resident, content=qr.content)).body["enterprise"]
    assert public["uscc"] == AGENT_USCC and public["name"] == ent.name
    assert {lic["kind"] for lic in public["licences"]} == {"business_licence",
                                                          "food_business_licence"}
    assert "policies" not in public and "cases" not in public
    # An agent of another firm, and staff, see the public share only.
    other_agent = await user("other-agent", Role.enterprise_agent)
    staff = await user("staff", Role.staff)
    for who in (other_agent, staff):
        seen = (await codes.scan(actor=who, content=qr.content)).body["enterprise"]
        assert set(seen) == set(public)
    mine = (await codes.scan(actor=agent, content=qr.content)).body["enterprise"]
    assert "cases" in mine and "policies" in mine
    assert "tax_credit" not in json.dumps(mine)


async def test_enterprise_code_revocation_and_reissue() -> None:
    await seed_demo()
    ent = await Enterprise.get(uscc=AGENT_USCC)
    staff = await user("staff", Role.staff)
    resident = await user("resident")
    first = await codes.issue_enterprise_code(actor=staff, enterprise_id=ent.id)
    await codes.scan(actor=resident, content=first.content)  # now cached in Redis
    second = await codes.issue_enterprise_code(actor=staff, enterprise_id=ent.id)
    err = await expect_error(ErrorCode.code_revoked, codes.scan(actor=resident,
                                                                content=first.content))
    assert "请刷新二维码" in err.message
    assert (await codes.scan(actor=resident, content=second.content)).kind == "enterprise"
    await codes.revoke_enterprise_code(actor=staff, enterprise_id=ent.id)
    await expect_error(ErrorCode.code_revoked, codes.scan(actor=resident, content=second.content))
    await expect_error(ErrorCode.not_found,
                       codes.revoke_enterprise_code(actor=staff, enterprise_id=ent.id))
    assert await IssuedCode.filter(enterprise_id=ent.id, active_key__isnull=False).count() == 0


async def test_long_lived_codes_survive_a_redis_flush() -> None:
    await seed_demo()
    staff = await user("staff", Role.staff)
    ent = await Enterprise.get(uscc=AGENT_USCC)
    ent_qr = await codes.issue_enterprise_code(actor=staff, enterprise_id=ent.id)
    [(_, plate_qr, new)] = await codes.issue_doorplate_codes(actor=staff,
                                                           plate_codes=["D-XF-0001"])
    assert new
    resident = await user("resident")
    before = (await codes.scan(actor=resident, content=plate_qr.content)).body
    await cache.redis().flushdb()
    assert (await codes.scan(actor=resident, content=plate_qr.content)).body == before
    assert (await codes.scan(actor=resident, content=ent_qr.content)).kind == "enterprise"
    # Revocation is in the database too, so a flush can't resurrect a revoked plate.
    await codes.revoke_doorplate_code(actor=staff, plate_code="D-XF-0001")
    await cache.redis().flushdb()
    await expect_error(ErrorCode.code_revoked, codes.scan(actor=resident,
                                                          content=plate_qr.content))


async def test_a_fill_from_a_stale_read_never_overrides_a_revocation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    await seed_demo()
    staff = await user("staff", Role.staff)
    ent = await Enterprise.get(uscc=AGENT_USCC)
    qr = await codes.issue_enterprise_code(actor=staff, enterprise_id=ent.id)
    await cache.redis().flushdb()  # the next scan reads the database
    read_from_db = views.load_long

    async def read_then_revoked(token: str) -> dict[str, Any]:
        data = await read_from_db(token)  # still active when read...
        await codes.revoke_enterprise_code(actor=staff, enterprise_id=ent.id)  # ...not now
        return data

    monkeypatch.setattr(views, "load_long", read_then_revoked)
    resident = await user("resident")
    await expect_error(ErrorCode.code_revoked, codes.scan(actor=resident, content=qr.content))
    monkeypatch.setattr(views, "load_long", read_from_db)
    await expect_error(ErrorCode.code_revoked, codes.scan(actor=resident, content=qr.content))


async def test_unknown_long_token_is_unrecognised() -> None:
    resident = await user("resident")
    await expect_error(ErrorCode.code_unrecognised,
                       codes.scan(actor=resident, content=codes.code_url("L" + "x" * 20)))


async def test_enterprise_with_invalid_uscc_gets_no_code() -> None:
    staff = await user("staff", Role.staff)
    ent = await Enterprise.create(uscc="91621000MA700QY00A", name="校验位错误公司")
    err = await expect_error(ErrorCode.conflict,
                             codes.issue_enterprise_code(actor=staff, enterprise_id=ent.id))
    assert "校验位" in err.message


async def test_door_plate_views_by_scanner() -> None:
    await seed_demo()
    staff = await user("staff", Role.staff)
    [(_, qr, _)] = await codes.issue_doorplate_codes(actor=staff, plate_codes=["D-XF-0001"])
    worker = await user("worker", Role.community_worker)
    await onbehalf.assign_grid_worker(user_id=worker.user_id, **GRID)
    other_worker = await user("other-worker", Role.community_worker)
    await onbehalf.assign_grid_worker(user_id=other_worker.user_id, county="西峰区",
                                      community="南苑社区", contact_name="南苑网格员",
                                      contact_phone="0934-8200000")
    resident = await user("resident")
    public = (await codes.scan(actor=resident, content=qr.content)).body["doorplate"]
    assert public["address"] == "长庆路12号" and public["community"] == "长庆社区"
    assert public["grid_worker"] == {"name": "长庆社区网格员", "phone": "0934-8212345"}
    assert "households" not in public and "workers" not in public
    halls = public["nearest_halls"]
    assert len(halls) == 3
    assert [h["distance_m"] for h in halls] == sorted(h["distance_m"] for h in halls)
    all_halls = await Hall.all()
    plate = await DoorPlate.get(code="D-XF-0001")
    assert halls[0]["distance_m"] == min(round(geo.distance_m(plate.lat, plate.lng, h.lat, h.lng))
                                         for h in all_halls)
    for who in (staff, other_worker):
        seen = (await codes.scan(actor=who, content=qr.content)).body["doorplate"]
        assert "households" not in seen
    mine = (await codes.scan(actor=worker, content=qr.content)).body["doorplate"]
    assert {h["name"] for h in mine["households"]} == {"*建国", "*小明"}
    assert all("**********" in h["id_number"] for h in mine["households"])
    # The role alone isn't enough: a worker whose grid assignment ended sees the public share.
    ex = Principal(user_id=worker.user_id, roles=frozenset({"resident"}))
    assert "households" not in (await codes.scan(actor=ex, content=qr.content)).body["doorplate"]


async def test_batch_keeps_existing_plate_codes_unless_reissued() -> None:
    await seed_demo()
    staff = await user("staff", Role.staff)
    first = await codes.issue_doorplate_codes(actor=staff, plate_codes=["D-XF-0001", "D-XF-0002"])
    again = await codes.issue_doorplate_codes(actor=staff, plate_codes=["D-XF-0002", "D-XF-0001"])
    assert {p.code: q.content for p, q, _ in first} == {p.code: q.content for p, q, _ in again}
    assert not any(new for _, _, new in again)
    fresh = await codes.issue_doorplate_codes(actor=staff, plate_codes=["D-XF-0001"],
                                              reissue=True)
    assert fresh[0][2] and fresh[0][1].content != first[0][1].content
    resident = await user("resident")
    await expect_error(ErrorCode.code_revoked, codes.scan(actor=resident,
                                                          content=first[0][1].content))
    await expect_error(ErrorCode.not_found,
                       codes.issue_doorplate_codes(actor=staff, plate_codes=["D-NOPE"]))
    await expect_error(ErrorCode.forbidden,
                       codes.issue_doorplate_codes(actor=resident, plate_codes=["D-XF-0001"]))


async def test_sheet_decodes_to_every_plate_code() -> None:
    await seed_demo()
    staff = await user("staff", Role.staff)
    plates = ["D-XF-0001", "D-XF-0002", "D-XF-0003", "D-XF-0004"]
    await codes.issue_doorplate_codes(actor=staff, plate_codes=plates)
    entries = await codes.doorplate_codes(actor=staff, plate_codes=plates)
    sheet = doorplates.render_sheet(entries)
    assert sheet.count == 4
    assert sorted(decode_png(sheet.png)) == sorted(q.content for _, q in entries)
    await expect_error(ErrorCode.conflict,
                       codes.doorplate_codes(actor=staff, plate_codes=["D-QC-0001"]))


def test_sheet_without_cjk_font_falls_back_to_ascii(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "_candidates", lambda: ())  # as if the bundled font were lost
    plate = DoorPlate(code="D-XF-0009", county="西峰区", street="北街街道", community="长庆社区",
                      address="长庆路99号", lat=35.7, lng=107.6)
    qr = codes.IssuedQr(token="L" + "z" * 20, content=codes.code_url("L" + "z" * 20),
                        expires_at=None)
    sheet = doorplates.render_sheet([(plate, qr)])
    assert not sheet.cjk_labels
    assert decode_png(sheet.png) == [qr.content]


# --- logs and limits ----------------------------------------------------------------------


async def test_every_scan_is_logged_and_resident_sees_masked_scanners() -> None:
    await seed_demo()
    zhang = await user("zhang", person_id_number=ZHANG)
    staff = await user("staff", Role.staff)
    resident = await user("resident")
    await grant_position(staff.user_id, hall="H-QY-000")
    content = await code_of(zhang)
    ok = await codes.scan(actor=staff, content=content)
    await expect_error(ErrorCode.forbidden, codes.scan(actor=resident, content=content))
    await expect_error(ErrorCode.code_unrecognised, codes.scan(actor=resident, content="garbage"))
    # Buffered in Redis until the flush; the resident's read flushes first.
    assert await ScanLog.all().count() == 0
    seen, nxt = await codes.scans_of_my_code(user_id=zhang.user_id, cursor=None, limit=10)
    assert nxt is None
    assert [(s.scanner_role, s.scanner_org, s.outcome) for s in seen] == [
        ("居民", "", "forbidden"), ("窗口工作人员", "庆阳市政务服务中心", "ok")]
    assert seen[1].shown[:2] == ["identity", "licences"]
    assert seen[0].shown == []
    rows = await ScanLog.all().order_by("id")
    assert len(rows) == 3
    logged = rows[0]
    assert logged.uid == ok.scan_id and logged.scanner_id == staff.user_id
    assert logged.kind == "person" and logged.outcome == "ok"
    # The flush writes plain SQL: the values must read back as the ORM would have written them.
    assert logged.at == ok.at and logged.scanner_roles == sorted(staff.roles)
    assert logged.subject_person_id is not None and logged.shown[0] == "identity"
    assert rows[2].outcome == "invalid" and rows[2].subject_person_id is None
    # Nobody else's scans leak into the list.
    li = await user("li", person_id_number=LI)
    assert (await codes.scans_of_my_code(user_id=li.user_id, cursor=None, limit=10))[0] == []


@pytest.mark.filterwarnings("ignore:Duplicate entry")
async def test_flush_is_idempotent_when_a_batch_is_replayed() -> None:
    staff = await user("staff", Role.staff)
    entry = {"uid": "u" * 32, "scanner": staff.user_id, "roles": ["staff"], "org": "",
             "kind": "doorplate", "ref": "x", "outcome": "ok", "shown": [],
             "at": clock.now().isoformat()}
    r = cache.redis()
    await r.rpush(codes.LOG_BUFFER, json.dumps(entry))
    assert await codes.flush_scan_logs() == 1
    await r.rpush(codes.LOG_BUFFER, json.dumps(entry))  # the trim was lost: same batch again
    assert await codes.flush_scan_logs() == 1
    assert await ScanLog.filter(uid="u" * 32).count() == 1


async def test_scans_are_rate_limited_per_scanner(monkeypatch: pytest.MonkeyPatch) -> None:
    await seed_demo()
    monkeypatch.setattr(get_settings(), "scan_rate_limit", 3)
    staff = await user("staff", Role.staff)
    [(_, qr, _)] = await codes.issue_doorplate_codes(actor=staff, plate_codes=["D-XF-0001"])
    resident = await user("resident")
    for _ in range(2):
        await codes.scan(actor=resident, content=qr.content)
    # Failed scans count too, or guessing tokens would be free.
    await expect_error(ErrorCode.code_unrecognised, codes.scan(actor=resident, content="junk"))
    err = await expect_error(ErrorCode.rate_limited, codes.scan(actor=resident,
                                                                content=qr.content))
    assert int(err.headers["Retry-After"]) >= 1
    # Another scanner has their own budget.
    assert (await codes.scan(actor=staff, content=qr.content)).kind == "doorplate"


async def test_staff_view_lists_todays_appointments_and_open_cases() -> None:
    from models.appointments import Appointment, Slot
    from models.cases import Case

    await seed_demo()
    zhang = await user("zhang", person_id_number=ZHANG)
    staff = await user("staff", Role.staff)
    person = await Person.get(id_number_hash=people.id_lookup_hash(ZHANG))
    hall = await Hall.get(code="H-QY-000")
    now = clock.now()
    today_at = datetime.combine(now.date(), datetime.min.time(), tzinfo=clock.SHANGHAI) \
        + timedelta(hours=10)

    async def appointment(at: datetime, token: str) -> Appointment:
        slot = await Slot.create(hall=hall, window_kind="comprehensive", starts_at=at,
                                 ends_at=at + timedelta(minutes=30), general_capacity=5)
        return await Appointment.create(
            resident_id=zhang.user_id, person=person, booked_by_id=zhang.user_id, slot=slot,
            hall=hall, window_kind="comprehensive", item_code="IT-1", pool="general",
            starts_at=at, ends_at=at + timedelta(minutes=30), check_in_token=token)

    today = await appointment(today_at, "t" * 32)
    await appointment(today_at + timedelta(days=1), "u" * 32)
    open_case = await Case.create(applicant_id=zhang.user_id, person=person,
                                  submitted_by_id=zhang.user_id, item_code="IT-1",
                                  department="民政局", hall_code="H-QY-000", status="accepted",
                                  due_at=today_at + timedelta(days=3))
    await Case.create(applicant_id=zhang.user_id, person=person, submitted_by_id=zhang.user_id,
                      item_code="IT-2", department="民政局", hall_code="H-QY-000",
                      status="closed")
    view = (await codes.scan(actor=staff, content=await code_of(zhang))).body["person"]
    assert [a["id"] for a in view["appointments_today"]] == [today.id]
    assert view["appointments_today"][0]["status"] == "booked"
    assert view["appointments_today"][0]["starts_at"] == today_at.isoformat()
    assert view["appointments_today"][0]["hall_name"] == hall.name
    assert [c["id"] for c in view["open_cases"]] == [open_case.id]
    due = datetime.fromisoformat(view["open_cases"][0]["due_at"])
    assert due == today_at + timedelta(days=3) and due.utcoffset() == timedelta(hours=8)


async def test_desk_view_is_cached_and_follows_every_change_to_it() -> None:
    """The desk view is cached in Redis; a write to what it shows bumps the person's
    generation, so the next scan shows the change rather than the cached copy."""
    from services import cases, deskview

    await seed_demo()
    zhang = await user("zhang", person_id_number=ZHANG)
    staff = await user("staff", Role.staff)
    person_id = (await User.get(id=zhang.user_id)).person_id
    desk_key = f"{deskview.day_prefix(clock.now().date())}{person_id}"

    async def open_cases() -> list[int]:
        view = (await codes.scan(actor=staff, content=await code_of(zhang))).body["person"]
        return [c["id"] for c in view["open_cases"]]

    assert await open_cases() == []
    assert await cache.redis().get(desk_key) is not None  # the next scan reads this, not SQL
    case = await cases.open_case(actor=zhang, hall_code="H-XF-000", item_code="MZ-004")
    assert await open_cases() == [case.id]
    await cases.transition(actor=zhang, case_id=case.id, action=cases.Action.withdraw)
    assert await open_cases() == []

    # A fill that read the database before a write and stores after it carries the
    # generation it read under, so it is never served.
    stale_generation = await cache.redis().get(deskview.gen_key(person_id)) or "0"
    again = await cases.open_case(actor=zhang, hall_code="H-XF-000", item_code="MZ-004")
    await deskview.store(person_id=person_id, day=clock.now().date(),
                         generation=stale_generation, members='"open_cases":[]')
    assert await open_cases() == [again.id]


async def test_scan_log_lines_survive_redis_losing_its_buffer(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan answered 200 promised its log line; Redis restarting empty before the flush
    (the buffer gone) must not lose it: the worker's local journal puts it back, once."""
    monkeypatch.setattr(get_settings(), "scan_journal_dir", str(tmp_path))
    await seed_demo()
    zhang = await user("zhang", person_id_number=ZHANG)
    staff = await user("staff", Role.staff)
    content = await code_of(zhang)
    ok = await codes.scan(actor=staff, content=content)
    refused = await expect_error(ErrorCode.code_unrecognised,
                                 codes.scan(actor=staff, content="garbage"))
    assert refused.status == 400 or refused.status >= 400
    await cache.redis().delete(codes.LOG_BUFFER)  # Redis came back empty
    assert await ScanLog.all().count() == 0
    assert await codes.replay_scan_journal() == 2
    rows = await ScanLog.all().order_by("id")
    assert [r.outcome for r in rows] == ["ok", "invalid"] and rows[0].uid == ok.scan_id
    # A line the Redis flush already stored is read from the journal but not written again.
    await codes.scan(actor=staff, content=content)
    await codes.flush_scan_logs()
    assert await codes.replay_scan_journal() == 0
    assert await ScanLog.all().count() == 3
    assert list(tmp_path.glob("*.log")) == []  # replayed journals are dropped
