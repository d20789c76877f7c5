"""ID numbers, credit codes, phones and masking.

Check digits of the constructed samples were worked out by hand:
62100219900101005X — weighted sum 167, 167 mod 11 = 2 → X;
62100220000229001X — weighted sum 167, 167 mod 11 = 2 → X.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from services.identity import (
    IdNumber,
    InvalidCreditCode,
    InvalidIdNumber,
    InvalidPhoneNumber,
    mask_id_number,
    mask_name,
    mask_phone,
    validate_id_number,
    validate_phone,
    validate_uscc,
)

TODAY = date(2026, 11, 22)


@pytest.mark.parametrize(
    ("number", "birth", "sex"),
    [
        ("621002194103050316", date(1941, 3, 5), "male"),
        ("621021197508120426", date(1975, 8, 12), "female"),
        ("621002200302170132", date(2003, 2, 17), "male"),
        ("621026199206300246", date(1992, 6, 30), "female"),
    ],
)
def test_valid_id_numbers_parse(number: str, birth: date, sex: str) -> None:
    parsed = validate_id_number(number, today=TODAY)
    assert parsed.value == number
    assert parsed.birth_date == birth
    assert parsed.sex == sex
    assert parsed.region_code == number[:6]


def test_lowercase_x_is_normalised_and_whitespace_stripped() -> None:
    parsed = validate_id_number(" 62100219900101005x ", today=TODAY)
    assert parsed.value == "62100219900101005X"
    assert parsed.sex == "male"


def test_check_digit_x_required_when_computed() -> None:
    with pytest.raises(InvalidIdNumber, match="校验位"):
        validate_id_number("621002199001010050", today=TODAY)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("62100219410305031", "应为18位，当前为17位"),
        ("6210021941030503160", "应为18位，当前为19位"),
        ("62100219410305031A", "最后一位应为数字或X"),
        ("6210021941030503X6", "前17位应为数字"),
        ("001002194103050316", "地区码"),
        ("621002194102300316", "出生日期19410230不是有效日期"),
        ("621002202701010316", "晚于今天"),
        ("621002189912310316", "早于1900年"),
        ("621002194103050317", "校验位不正确"),
    ],
)
def test_id_number_errors_say_what_is_wrong(number: str, message: str) -> None:
    with pytest.raises(InvalidIdNumber, match=message):
        validate_id_number(number, today=TODAY)


def test_invalid_id_number_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_id_number("123", today=TODAY)


def test_birth_date_bound_is_today_inclusive() -> None:
    assert validate_id_number("621002200302170132", today=date(2003, 2, 17)).birth_date == date(
        2003, 2, 17
    )
    with pytest.raises(InvalidIdNumber, match="晚于今天"):
        validate_id_number("621002200302170132", today=date(2003, 2, 16))


def test_age_on() -> None:
    person = validate_id_number("621002194103050316", today=TODAY)
    assert person.age_on(date(2026, 3, 4)) == 84
    assert person.age_on(date(2026, 3, 5)) == 85
    assert person.age_on(TODAY) == 85
    with pytest.raises(ValueError):
        person.age_on(date(1941, 3, 4))
    with pytest.raises(TypeError):
        person.age_on(datetime(2026, 3, 5, 12))


def test_age_of_leap_day_birth_turns_on_march_first_in_common_years() -> None:
    person = validate_id_number("62100220000229001X", today=TODAY)
    assert person.birth_date == date(2000, 2, 29)
    assert person.age_on(date(2027, 2, 28)) == 26
    assert person.age_on(date(2027, 3, 1)) == 27
    assert person.age_on(date(2028, 2, 28)) == 27
    assert person.age_on(date(2028, 2, 29)) == 28


def test_id_number_repr_and_str_are_masked() -> None:
    person = validate_id_number("621002194103050316", today=TODAY)
    assert "621002194103050316" not in repr(person)
    assert str(person) == "6210**********0316"
    assert person == IdNumber("621002194103050316", date(1941, 3, 5), "male", "621002")


@pytest.mark.parametrize(
    "code",
    ["91621000MA700QY00N", "91621000MA701QY91T", "91621000MA702QY83P", "91621000MA703QY75L"],
)
def test_valid_credit_codes(code: str) -> None:
    assert validate_uscc(code) == code


@pytest.mark.parametrize(
    "code",
    [
        # weighted sum 2170 = 31 × 70, so 31 - 0 = 31 wraps to check character 0
        "91621000MA700QY900",
        # weighted sum 2140 ≡ 1 (mod 31), so the check value is 30, the last character Y
        "91621000MA700QY80Y",
    ],
)
def test_credit_code_check_character_edges(code: str) -> None:
    assert validate_uscc(code) == code


def test_credit_code_is_normalised_to_upper_case() -> None:
    assert validate_uscc(" 91621000ma700qy00n ") == "91621000MA700QY00N"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("91621000MA700QY00", "应为18位，当前为17位"),
        ("91621000MA700QI00N", "无效字符：I"),
        ("91621000MA700QO0SN", "无效字符：O、S"),
        ("9162100AMA700QY00N", "第3至8位应为行政区划码"),
        ("91621000MA700QY00M", "校验位不正确"),
        ("91621000MA701QY91N", "校验位不正确"),
    ],
)
def test_credit_code_errors_say_what_is_wrong(code: str, message: str) -> None:
    with pytest.raises(InvalidCreditCode, match=message):
        validate_uscc(code)


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "+86-13812345678",
        "008613812345678",
        "8613812345678",
    ],
)
def test_phone_spellings_normalise(raw: str) -> None:
    assert validate_phone(raw) == "13812345678"


@pytest.mark.parametrize(
    "raw",
    ["12812345678", "1381234567", "138123456789", "0934-12345", "86138123456", "1381234567a", ""],
)
def test_invalid_phones_rejected(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber, match="手机号码"):
        validate_phone(raw)


def test_mask_id_number() -> None:
    assert mask_id_number("621002194103050316") == "6210**********0316"
    assert mask_id_number("62100219900101005X") == "6210**********005X"
    assert mask_id_number("12345678") == "********"


def test_mask_phone() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138-1234-5678") == "138****5678"
    assert mask_phone("0934-12345") == "093***2345"
    assert mask_phone("12345") == "*****"


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张建国", "*建国"),
        ("李明", "*明"),
        ("张", "*"),
        ("欧阳娜娜", "*阳娜娜"),
        ("", ""),
        (" 李明 ", "*明"),
    ],
)
def test_mask_name_hides_surname(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(("address", "shown"), [
    ("甘肃省庆阳市西峰区南大街88号3单元502室", "甘肃省庆阳市西峰区南大街****"),
    ("庆阳市西峰区长庆小区张家", "庆阳市西峰区长庆小区****"),
    ("庆城县驿马镇三里店村二组", "庆城县驿马镇三里店村****"),
    ("西峰区长庆路", "西峰区长庆路"),
    ("", ""),
])
def test_addresses_are_kept_to_the_street_or_community(address: str, shown: str) -> None:
    from services.identity import mask_address
    assert mask_address(address) == shown
