"""E-forms: definitions, per-field validation with Chinese messages, bundle merge, prefill."""

from __future__ import annotations

from typing import Any

import pytest

from models.users import IdentityLevel, User
from services import people, seed
from services.errors import AppError
from services.forms import prefill, schema, validation

FIELDS = schema.check_definition([
    {"key": "name", "label": "姓名", "type": "text", "required": True, "prefill": "person.name"},
    {"key": "idn", "label": "身份号码", "type": "id_number", "required": True,
     "prefill": "person.id_number"},
    {"key": "phone", "label": "联系电话", "type": "phone", "required": True,
     "prefill": "user.phone"},
    {"key": "born", "label": "出生日期", "type": "date"},
    {"key": "amount", "label": "金额", "type": "amount", "min": 1, "max": 1000},
    {"key": "bank", "label": "开户银行", "type": "choice", "choices": ["农行", "工行"],
     "required": True},
    {"key": "kids", "label": "子女数", "type": "integer"},
    {"key": "ok", "label": "同意", "type": "boolean"},
])


def _errors(values: dict[str, Any], *, complete: bool = True) -> dict[str, str]:
    with pytest.raises(AppError) as info:
        validation.validate(FIELDS, values, complete=complete)
    assert info.value.status == 422
    return info.value.fields


def test_valid_values_are_normalised() -> None:
    got = validation.validate(FIELDS, {
        "name": " 张建国 ", "idn": "621002194103050316", "phone": "+86 138-1234-5678",
        "born": "1941-03-05", "amount": "12.5", "bank": "农行", "kids": "2", "ok": True,
    }, complete=True)
    assert got == {"name": "张建国", "idn": "621002194103050316", "phone": "13812345678",
                   "born": "1941-03-05", "amount": "12.50", "bank": "农行", "kids": 2,
                   "ok": True}


def test_every_bad_field_named_in_chinese() -> None:
    errs = _errors({"idn": "621002194103050317", "phone": "12345", "born": "1941-13-01",
                    "amount": "1.234", "bank": "招行", "kids": "1.5", "ok": "yes",
                    "unknown": 1})
    assert errs["values.name"] == "请填写姓名"
    assert "校验位" in errs["values.idn"]
    assert errs["values.phone"].startswith("联系电话：手机号码")
    assert errs["values.born"] == "出生日期：日期格式应为 YYYY-MM-DD"
    assert errs["values.amount"] == "金额：金额最多保留两位小数"
    assert errs["values.bank"] == "开户银行：请从选项中选择"
    assert errs["values.kids"] == "子女数：应为整数"
    assert errs["values.ok"] == "同意：应为是或否"
    assert errs["values.unknown"] == "表单中没有该项"


def test_amount_bounds_and_draft_skips_required_only() -> None:
    assert _errors({"amount": "0.5"}, complete=False) == {"values.amount": "金额：不能小于 1"}
    assert _errors({"amount": "1001"}, complete=False) == {"values.amount": "金额：不能大于 1000"}
    # A draft may be incomplete, but never hold a bad value.
    assert validation.validate(FIELDS, {"bank": "工行"}, complete=False) == {"bank": "工行"}


def test_definition_refusals() -> None:
    with pytest.raises(AppError) as info:
        schema.check_definition([
            {"key": "A", "label": "x", "type": "text"},
            {"key": "b", "label": "", "type": "nope"},
            {"key": "c", "label": "选项", "type": "choice", "choices": ["a", "a"]},
            {"key": "c", "label": "重复", "type": "text", "prefill": "person.salary"},
            {"key": "d", "label": "文本", "type": "text", "min": 1},
        ])
    f = info.value.fields
    assert set(f) == {"fields.0.key", "fields.1.label", "fields.1.type", "fields.2.choices",
                      "fields.3.key", "fields.3.prefill", "fields.4.min"}


def test_bundle_merge_asks_each_shared_field_once() -> None:
    a = [{"key": "name", "label": "姓名", "type": "text", "required": False},
         {"key": "x", "label": "甲", "type": "text", "required": True}]
    b = [{"key": "name", "label": "姓名", "type": "text", "required": True},
         {"key": "y", "label": "乙", "type": "text", "required": False}]
    merged = schema.merge([a, b])
    assert [f["key"] for f in merged] == ["name", "x", "y"]
    assert merged[0]["required"] is True  # required if any item requires it


async def test_prefill_from_verified_identity_phone_and_door_plate() -> None:
    data = seed.load_demo_data()
    await seed.seed_people(data)
    from services import doorplates

    await doorplates.seed_codes(data)
    person = await people.upsert_person(name="张建国", id_number="621002194103050316")
    user = await User.create(openid="o-zhang", person=person)
    await people.bind_phone(user_id=user.id, phone="13812345678")
    # Bound but not proven: nothing of the person is filled in.
    unproven = await prefill.known_values(applicant_id=user.id, enterprise_id=None)
    assert "person.name" not in unproven and "doorplate.address" not in unproven
    await User.filter(id=user.id).update(identity_level=IdentityLevel.face)
    known = await prefill.known_values(applicant_id=user.id, enterprise_id=None)
    assert known["person.name"] == "张建国"
    assert known["person.id_number"] == "621002194103050316"
    assert known["user.phone"] == "13812345678"
    assert known["doorplate.address"].endswith("长庆路12号")
    filled = prefill.apply(FIELDS, {"phone": "13900000000"}, known, locked_only=False)
    # Editable prefills don't overwrite what the resident typed; locked ones always win.
    assert filled["phone"] == "13900000000" and filled["name"] == "张建国"
    tampered = prefill.apply(FIELDS, {"name": "李四", "idn": "621021197508120426"}, known,
                             locked_only=True)
    assert tampered["name"] == "张建国" and tampered["idn"] == "621002194103050316"
    assert prefill.locked_keys(FIELDS, known) == {"name", "idn"}
