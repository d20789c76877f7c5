"""Checking filled-in values against a form: per-field Chinese messages, normalised values."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from services import identity
from services.errors import AppError, ErrorCode
from services.forms.schema import FieldType

_MAX_TEXT = 200
_MAX_TEXTAREA = 2000
_MAX_AMOUNT = Decimal("100000000")


def _one(field: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    """(normalised value, error message or None) for a present, non-empty value."""
    t = FieldType(field["type"])
    if t in (FieldType.text, FieldType.textarea):
        if not isinstance(value, str):
            return None, "应为文本"
        limit = field.get("max_length") or (_MAX_TEXT if t is FieldType.text else _MAX_TEXTAREA)
        v = value.strip()
        return (v, None) if len(v) <= limit else (None, f"不能超过 {limit} 字")
    if t is FieldType.date:
        if not isinstance(value, str):
            return None, "日期格式应为 YYYY-MM-DD"
        try:
            return date.fromisoformat(value.strip()).isoformat(), None
        except ValueError:
            return None, "日期格式应为 YYYY-MM-DD"
    if t is FieldType.id_number:
        try:
            return identity.validate_id_number(str(value)).value, None
        except identity.InvalidIdNumber as exc:
            return None, str(exc)
    if t is FieldType.phone:
        try:
            return identity.validate_phone(str(value)), None
        except identity.InvalidPhoneNumber as exc:
            return None, str(exc)
    if t is FieldType.uscc:
        try:
            return identity.validate_uscc(str(value)), None
        except identity.InvalidCreditCode as exc:
            return None, str(exc)
    if t in (FieldType.amount, FieldType.integer):
        if isinstance(value, bool):
            return None, "应为数字"
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            return None, "应为数字"
        if not d.is_finite():
            return None, "应为数字"
        if t is FieldType.integer and d != d.to_integral_value():
            return None, "应为整数"
        if t is FieldType.amount and d.as_tuple().exponent < -2:  # type: ignore[operator]
            return None, "金额最多保留两位小数"
        if d < 0 or d > _MAX_AMOUNT:
            return None, "数值超出范围"
        if "min" in field and d < Decimal(str(field["min"])):
            return None, f"不能小于 {field['min']}"
        if "max" in field and d > Decimal(str(field["max"])):
            return None, f"不能大于 {field['max']}"
        return (int(d) if t is FieldType.integer else f"{d:.2f}"), None
    if t is FieldType.choice:
        return (value, None) if value in field.get("choices", []) else (None, "请从选项中选择")
    if t is FieldType.multi_choice:
        if not isinstance(value, list) or not all(v in field.get("choices", []) for v in value):
            return None, "请从选项中选择"
        return list(dict.fromkeys(value)), None
    if t is FieldType.boolean:
        return (value, None) if isinstance(value, bool) else (None, "应为是或否")
    return None, "不支持的字段类型"


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def validate(fields: list[dict[str, Any]], values: dict[str, Any], *,
             complete: bool) -> dict[str, Any]:
    """Normalised values, or a 422 naming every bad field by its key with a Chinese message.
    ``complete=False`` (saving a draft) skips the required check but still refuses bad values,
    so a draft never holds something the submission would have to reject later."""
    by_key = {f["key"]: f for f in fields}
    errors: dict[str, str] = {}
    for key in values:
        if key not in by_key:
            errors[f"values.{key}"] = "表单中没有该项"
    out: dict[str, Any] = {}
    for key, field in by_key.items():
        value = values.get(key)
        if _empty(value):
            if complete and field.get("required"):
                errors[f"values.{key}"] = f"请填写{field['label']}"
            continue
        clean, err = _one(field, value)
        if err:
            errors[f"values.{key}"] = f"{field['label']}：{err}"
        else:
            out[key] = clean
    if errors:
        raise AppError(ErrorCode.validation_failed, "申请表填写有误，请按提示修改", fields=errors)
    return out
