"""The shape of a form definition, and merging several into one (一件事, 一表申请)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from services.errors import AppError, ErrorCode


class FieldType(StrEnum):
    text = "text"
    textarea = "textarea"
    date = "date"
    id_number = "id_number"
    phone = "phone"
    uscc = "uscc"
    amount = "amount"  # yuan, up to two decimals
    integer = "integer"
    choice = "choice"
    multi_choice = "multi_choice"
    boolean = "boolean"


class Prefill(StrEnum):
    """Where a field's value can come from without the resident typing it."""

    person_name = "person.name"
    person_id_number = "person.id_number"
    person_birth_date = "person.birth_date"
    person_sex = "person.sex"
    user_phone = "user.phone"
    enterprise_name = "enterprise.name"
    enterprise_uscc = "enterprise.uscc"
    doorplate_address = "doorplate.address"


# Identity comes from the verified record, never from typing: these prefills are locked, and
# submission re-applies them whatever the client sent.
LOCKED_PREFILLS = frozenset({Prefill.person_name, Prefill.person_id_number,
                             Prefill.person_birth_date, Prefill.person_sex,
                             Prefill.enterprise_name, Prefill.enterprise_uscc})

# Types whose values are personal data: masked whenever someone other than the applicant reads.
SENSITIVE_TYPES = frozenset({FieldType.id_number, FieldType.phone})

_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_FIELDS = 60


def check_definition(raw: Any) -> list[dict[str, Any]]:
    """A form definition as staff send it, checked and normalised; 422 per problem."""
    errors: dict[str, str] = {}
    if not isinstance(raw, list) or not raw:
        raise AppError(ErrorCode.validation_failed, "表单至少包含一个字段",
                       fields={"fields": "至少包含一个字段"})
    if len(raw) > MAX_FIELDS:
        raise AppError(ErrorCode.validation_failed, fields={"fields": f"最多 {MAX_FIELDS} 个字段"})
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, f in enumerate(raw):
        at = f"fields.{i}"
        if not isinstance(f, dict):
            errors[at] = "应为对象"
            continue
        # A form read back from the API carries nulls for what a field doesn't use.
        f = {k: v for k, v in f.items() if v is not None}
        key = str(f.get("key", ""))
        if not _KEY.fullmatch(key):
            errors[f"{at}.key"] = "字段标识应为小写字母开头的字母、数字或下划线"
        elif key in seen:
            errors[f"{at}.key"] = "字段标识重复"
        seen.add(key)
        label = str(f.get("label", "")).strip()
        if not 1 <= len(label) <= 40:
            errors[f"{at}.label"] = "请填写 1–40 字的中文名称"
        ftype = f.get("type")
        if ftype not in FieldType.__members__:
            errors[f"{at}.type"] = "不支持的字段类型"
            continue
        field: dict[str, Any] = {"key": key, "label": label, "type": ftype,
                                 "required": bool(f.get("required", False))}
        if ftype in (FieldType.choice, FieldType.multi_choice):
            choices = f.get("choices")
            if (not isinstance(choices, list) or not choices
                    or not all(isinstance(c, str) and c.strip() for c in choices)
                    or len(set(choices)) != len(choices)):
                errors[f"{at}.choices"] = "请列出不重复的选项"
            else:
                field["choices"] = [c.strip() for c in choices]
        prefill = f.get("prefill")
        if prefill is not None:
            if prefill not in {p.value for p in Prefill}:
                errors[f"{at}.prefill"] = "不支持的预填来源"
            else:
                field["prefill"] = prefill
        for bound in ("min", "max"):
            if bound in f and f[bound] is not None:
                if ftype not in (FieldType.amount, FieldType.integer):
                    errors[f"{at}.{bound}"] = "仅数值字段可设范围"
                elif not isinstance(f[bound], int | float) or isinstance(f[bound], bool):
                    errors[f"{at}.{bound}"] = "应为数字"
                else:
                    field[bound] = f[bound]
        if "max_length" in f:
            ml = f["max_length"]
            if not isinstance(ml, int) or isinstance(ml, bool) or not 1 <= ml <= 2000:
                errors[f"{at}.max_length"] = "应为 1–2000 的整数"
            else:
                field["max_length"] = ml
        if f.get("hint"):
            field["hint"] = str(f["hint"])[:100]
        out.append(field)
    if errors:
        raise AppError(ErrorCode.validation_failed, "表单定义有误", fields=errors)
    return out


def merge(forms: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """一表申请: the fields of several forms, each key once, in first-asked order. A field is
    required if any form requires it; choices must agree (the first form's win otherwise —
    staff see the conflict when they save the bundle's own form)."""
    merged: dict[str, dict[str, Any]] = {}
    for fields in forms:
        for f in fields:
            got = merged.get(f["key"])
            if got is None:
                merged[f["key"]] = dict(f)
            else:
                got["required"] = got["required"] or f["required"]
    return list(merged.values())
