"""Chinese identity numbers, unified social credit codes, phone numbers and masking.

Validation errors carry Chinese messages because they are shown to applicants as-is in
the mini program; each message says which part of the input is wrong so the user can fix
a typo without calling the hall.

Masking conventions (显示脱敏):

* ID number: first 4 and last 4 characters kept — ``6210**********0316``.
* Mobile: first 3 and last 4 kept — ``138****5678``.
* Name: the first character (the surname for almost every name) is replaced by ``*`` and
  the given name is kept — ``张建国`` → ``*建国``, ``李明`` → ``*明``. Compound surnames
  (``欧阳``) keep their second character; that is accepted because the given name is what
  staff need to greet the applicant, and the whole-surname case is rare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = [
    "IdNumber",
    "InvalidCreditCode",
    "InvalidIdNumber",
    "InvalidPhoneNumber",
    "mask_address",
    "mask_id_number",
    "mask_name",
    "mask_phone",
    "validate_id_number",
    "validate_phone",
    "validate_uscc",
]

TZ = ZoneInfo("Asia/Shanghai")


class InvalidIdNumber(ValueError):
    """The string is not a valid 18-digit resident identity number (GB 11643-1999)."""


class InvalidCreditCode(ValueError):
    """The string is not a valid unified social credit code (GB 32100-2015)."""


class InvalidPhoneNumber(ValueError):
    """The string is not a mainland China mobile number."""


# --- resident identity number (GB 11643-1999) -------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)  # 2**(17-i) mod 11
_ID_CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)
_ID_SHAPE = re.compile(r"\d{17}[\dX]")

# GB/T 2260 province-level codes, plus 81/82/83 which the 港澳台居民居住证 numbers use.
# Only the province is checked: the full county table changes yearly and old IDs keep
# their original (possibly abolished) county codes for life.
_PROVINCE_CODES = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82", "83",
    }
)  # fmt: skip

_EARLIEST_BIRTH_YEAR = 1900


@dataclass(frozen=True, repr=False)
class IdNumber:
    """A validated resident identity number.

    ``repr`` is masked so that an ``IdNumber`` ending up in a log line or a traceback does
    not leak the full number.
    """

    value: str
    birth_date: date
    sex: Literal["male", "female"]
    region_code: str

    def age_on(self, d: date) -> int:
        """Age in full years (周岁) on ``d``.

        Someone born on 29 February turns a year older on 1 March in common years, i.e. the
        birthday has not been reached while (month, day) is still before (2, 29).
        """
        if isinstance(d, datetime):
            # A datetime's date depends on its zone; make the caller pick the local date.
            raise TypeError("age_on expects a date, not a datetime")
        if d < self.birth_date:
            raise ValueError("date is before the birth date")
        before_birthday = (d.month, d.day) < (self.birth_date.month, self.birth_date.day)
        return d.year - self.birth_date.year - int(before_birthday)

    def __repr__(self) -> str:
        return f"IdNumber({mask_id_number(self.value)!r}, sex={self.sex!r})"

    def __str__(self) -> str:
        return mask_id_number(self.value)


def _id_check_char(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def validate_id_number(s: str, *, today: date | None = None) -> IdNumber:
    """Validate an 18-digit resident identity number and return its parsed form.

    Surrounding whitespace is ignored and a lowercase ``x`` check character is normalised
    to ``X``. 15-digit first-generation numbers are rejected: they expired in 2013.

    ``today`` (default: the current date in Asia/Shanghai) bounds the birth date; it is a
    parameter so that tests and batch re-validation are deterministic.
    """
    value = s.strip().upper()
    if len(value) != 18:
        raise InvalidIdNumber(f"身份证号码应为18位，当前为{len(value)}位")
    if not _ID_SHAPE.fullmatch(value):
        raise InvalidIdNumber("身份证号码前17位应为数字，最后一位应为数字或X")
    region_code = value[:6]
    if region_code[:2] not in _PROVINCE_CODES:
        raise InvalidIdNumber("身份证号码前6位地区码无效")

    raw_birth = value[6:14]
    try:
        birth = date(int(raw_birth[:4]), int(raw_birth[4:6]), int(raw_birth[6:]))
    except ValueError:
        raise InvalidIdNumber(f"身份证号码中的出生日期{raw_birth}不是有效日期") from None
    if today is None:
        today = datetime.now(TZ).date()
    if birth > today:
        raise InvalidIdNumber("身份证号码中的出生日期晚于今天")
    if birth.year < _EARLIEST_BIRTH_YEAR:
        raise InvalidIdNumber(f"身份证号码中的出生日期早于{_EARLIEST_BIRTH_YEAR}年")

    # Deliberately not echoing the expected character: the message would then hand out a
    # way to forge a well-formed number from a guessed prefix.
    if _id_check_char(value[:17]) != value[17]:
        raise InvalidIdNumber("身份证号码校验位不正确，请核对号码是否输入有误")

    sex: Literal["male", "female"] = "male" if int(value[16]) % 2 == 1 else "female"
    return IdNumber(value=value, birth_date=birth, sex=sex, region_code=region_code)


# --- unified social credit code (GB 32100-2015) -----------------------------------------

# I, O, S, V and Z are excluded by the standard because they look like 1, 0, 5, U and 2.
_USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {c: i for i, c in enumerate(_USCC_CHARSET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def _uscc_check_char(first17: str) -> str:
    total = sum(_USCC_VALUES[c] * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARSET[(31 - total % 31) % 31]


def validate_uscc(s: str) -> str:
    """Validate a unified social credit code; return it stripped and in upper case.

    Checks length, the character set, that positions 3–8 (登记管理机关行政区划码) are digits,
    and the GB 32100-2015 check character.
    """
    value = s.strip().upper()
    if len(value) != 18:
        raise InvalidCreditCode(f"统一社会信用代码应为18位，当前为{len(value)}位")
    bad = sorted({c for c in value if c not in _USCC_VALUES})
    if bad:
        shown = "、".join(bad)
        raise InvalidCreditCode(f"统一社会信用代码含有无效字符：{shown}（不使用字母I、O、S、V、Z）")
    if not value[2:8].isdigit():
        raise InvalidCreditCode("统一社会信用代码第3至8位应为行政区划码（数字）")
    if _uscc_check_char(value[:17]) != value[17]:
        raise InvalidCreditCode("统一社会信用代码校验位不正确，请核对代码是否输入有误")
    return value


# --- mobile phone -----------------------------------------------------------------------

_PHONE_SEPARATORS = re.compile(r"[\s\-]")
_MOBILE = re.compile(r"1[3-9]\d{9}")


def validate_phone(s: str) -> str:
    """Validate a mainland China mobile number and return its 11 bare digits.

    Spaces, dashes and a ``+86`` / ``0086`` / ``86`` country prefix are removed first, since
    numbers pasted from contacts or WeChat usually carry them.
    """
    digits = _PHONE_SEPARATORS.sub("", s)
    # Stripping is safe without a length check: a mobile starts with 1, so no valid number
    # begins with 86 and whatever remains is still matched as a whole below.
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix):
            digits = digits[len(prefix) :]
            break
    if not _MOBILE.fullmatch(digits):
        raise InvalidPhoneNumber("手机号码应为以1开头的11位数字（第二位为3至9）")
    return digits


# --- masking ----------------------------------------------------------------------------


def _mask_middle(s: str, keep_head: int, keep_tail: int) -> str:
    if len(s) <= keep_head + keep_tail:
        # Too short to keep anything without revealing (almost) all of it.
        return "*" * len(s)
    return s[:keep_head] + "*" * (len(s) - keep_head - keep_tail) + s[-keep_tail:]


def mask_id_number(s: str) -> str:
    """``621002194103050316`` → ``6210**********0316`` (first 4 and last 4 kept)."""
    return _mask_middle(s.strip(), 4, 4)


def mask_phone(s: str) -> str:
    """``13812345678`` → ``138****5678`` (first 3 and last 4 kept).

    A valid mobile in any accepted spelling (``+86 138-1234-5678``) is normalised first so
    the mask has the same shape everywhere; anything else is masked as given.
    """
    try:
        value = validate_phone(s)
    except InvalidPhoneNumber:
        value = s.strip()
    return _mask_middle(value, 3, 4)


# Address levels down to which an address may be shown: the community or the street. What comes
# after (building, unit, door, village group) is the household and is masked.
ADDRESS_AREA = (r"(?:省|自治区|市|自治州|州|地区|盟|区|县|旗|街道|镇|乡|社区|村|大道|路|街|巷|"
                r"小区|花园|家园|新村|家属院|公寓|大厦|苑)")
_NUM = r"(?:[0-9\uFF10-\uFF19]+|[一二三四五六七八九十百零〇两]+)"
_UNIT = r"(?:号楼|号院|号|栋|幢|单元|楼|层|室|户|组|排)"
# The household part of an address: numbered buildings, units, floors and doors ("3号楼2单元501室",
# "12-3-501", "二组"), optionally after a compass section of an estate ("东区").
_DIGITS = r"[0-9\uFF10-\uFF19]+"
ADDRESS_DOOR = (rf"(?:[东西南北中][区院]?)?(?:{_DIGITS}(?:[-－—]{_DIGITS})+{_UNIT}?"
                rf"|{_NUM}{_UNIT})(?:\s?{_NUM}(?:[-－—]{_NUM})*{_UNIT}?)*")
_AREA_RE = re.compile(ADDRESS_AREA)
# Where the household starts: any digit, or a Chinese numeral with a unit (三里店 is a place).
_FIRST_NUM = re.compile(rf"[0-9\uFF10-\uFF19]|{_NUM}{_UNIT}")


def mask_address(s: str) -> str:
    """``甘肃省庆阳市西峰区长庆路12号3号楼501室`` → ``甘肃省庆阳市西峰区长庆路****``: kept down to
    the street or community, enough to recognise one's own address, never the door. Cut at the
    end of the last area word before the first number; an address with no area word keeps its
    first third (a mask shaped like the others rather than nothing)."""
    address = s.strip()
    if not address:
        return ""
    first_num = _FIRST_NUM.search(address)
    head = address[: first_num.start()] if first_num else address
    ends = [m.end() for m in _AREA_RE.finditer(head)]
    keep = ends[-1] if ends else len(address) // 3
    if keep >= len(address):
        return address
    return address[:keep] + "****"


def mask_name(s: str) -> str:
    """``张建国`` → ``*建国``, ``李明`` → ``*明``, ``张`` → ``*`` (surname replaced)."""
    name = s.strip()
    if not name:
        return ""
    return "*" + name[1:]
