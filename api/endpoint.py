"""One decorator that makes a handler typed, guarded and documented from the same models.

``@endpoint(body=In, query=Q, response=Out, roles=...)`` validates the JSON body and the query
string with pydantic (422 with per-field messages on failure), authenticates the caller and
checks roles, serialises the returned model, and writes all of it into the OpenAPI document —
so the document can't drift from what the handler really accepts and returns.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from enum import Enum
from functools import cache, wraps
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from sanic import Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import OperationStore
from sanic_ext.extensions.openapi.definitions import (
    Component,
    Parameter,
    Reference,
    RequestBody,
    Response,
)
from sanic_ext.extensions.openapi.types import Schema

from api.deadline import within_deadline
from api.schemas import ErrorBody
from models.users import Role
from services import outbox
from services.auth import Principal, decode_access_token, effective_principal
from services.errors import AppError, ErrorCode

Handler = Callable[..., Awaitable[Any]]
M = TypeVar("M", bound=BaseModel)

_MESSAGES = {
    "missing": "必填",
    "string_too_short": "内容过短",
    "string_too_long": "内容过长",
    "string_type": "应为文本",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "float_parsing": "应为数字",
    "bool_parsing": "应为是或否",
    "date_from_datetime_parsing": "日期格式应为 YYYY-MM-DD",
    "date_parsing": "日期格式应为 YYYY-MM-DD",
    "datetime_parsing": "时间格式应为 ISO 8601",
    "literal_error": "取值不在允许范围内",
    "enum": "取值不在允许范围内",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "greater_than": "数值过小",
    "less_than": "数值过大",
    "extra_forbidden": "不支持的字段",
    "too_long": "条目过多",
    "too_short": "条目过少",
    "list_type": "应为列表",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "string_pattern_mismatch": "格式不正确",
}


def validation_error(exc: ValidationError) -> AppError:
    fields: dict[str, str] = {}
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        msg = _MESSAGES.get(err["type"])
        if msg is None:
            ctx_error = err.get("ctx", {}).get("error")
            msg = str(ctx_error) if ctx_error else str(err["msg"])
        fields.setdefault(loc, msg)
    return AppError(ErrorCode.validation_failed, fields=fields)


def current_principal(request: Request) -> Principal:
    principal: Principal | None = getattr(request.ctx, "principal", None)
    if principal is not None:
        return principal
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError(ErrorCode.unauthenticated)
    principal = decode_access_token(token.strip())
    request.ctx.principal = principal
    return principal


async def authorized(request: Request, roles: Sequence[Role] | None = None) -> Principal:
    """The signed-in caller, holding one of ``roles`` (None: any signed-in user): every
    signed-in route's guard. Narrowed to the roles the account still holds: a token issued
    before a revocation keeps naming the role, but grants nothing with it."""
    principal = await effective_principal(current_principal(request))
    request.ctx.principal = principal
    if roles and not principal.has(*roles):
        raise AppError(ErrorCode.forbidden)
    return principal


def _out_of_range(value: Any, path: str = "") -> str | None:
    """The first integer no database column can hold (ids, cursors, counts), by field path."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return path or "body" if abs(value) > _MAX_ID else None
    if isinstance(value, BaseModel):
        value = dict(value)
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _out_of_range(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


_INT_FREE = (str, float, bool, bytes, type(None), date, datetime, dt_time, timedelta, Decimal)


def _can_hold_int(hint: Any, seen: frozenset[type] = frozenset()) -> bool:
    """Whether a value of this annotation can be (or contain) an int. Unknown shapes can."""
    origin = get_origin(hint)
    if origin is Annotated:
        return _can_hold_int(get_args(hint)[0], seen)
    if origin is Literal:
        return any(isinstance(v, int) and not isinstance(v, bool) for v in get_args(hint))
    if origin is not None:  # list[...], X | None, dict[...]: what they hold
        args = get_args(hint)
        return not args or any(_can_hold_int(a, seen) for a in args if a is not Ellipsis)
    if isinstance(hint, type):
        if issubclass(hint, Enum):
            return any(isinstance(m.value, int) for m in hint)
        if issubclass(hint, BaseModel):
            return hint not in seen and any(
                _can_hold_int(f.annotation, seen | {hint}) for f in hint.model_fields.values())
        return not issubclass(hint, _INT_FREE)
    return True


@cache
def _may_hold_int(model: type[BaseModel]) -> bool:
    """Most bodies are text: ``_out_of_range`` needn't walk a model that can't hold an int."""
    return _can_hold_int(model)


def _validated(model: type[M], raw: dict[str, Any]) -> M:
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from exc
    # A 30-digit id validates as an int but overflows the driver: refuse it here, as input.
    bad = _out_of_range(parsed)
    if bad:
        raise AppError(ErrorCode.validation_failed, fields={bad: "数值超出范围"})
    return parsed


def parse_body(request: Request, model: type[M]) -> M:
    if not request.body:
        raw: Any = {}
    else:
        content_type = request.headers.get("content-type", "application/json")
        if "json" not in content_type:
            raise AppError(ErrorCode.unsupported_media_type)
        # Validation straight from the bytes (pydantic's Rust parser, no dict in between):
        # the common case, a well-formed body, costs one pass. Anything it refuses goes the
        # long way below, so every refusal keeps its status and message.
        try:
            parsed = model.model_validate_json(request.body)
        except ValueError:
            pass
        else:
            if not _may_hold_int(model) or not _out_of_range(parsed):
                return parsed
        try:
            raw = request.json
        except Exception as exc:  # sanic raises BadRequest subclasses on malformed JSON
            raise AppError(ErrorCode.bad_request, "请求体不是合法的 JSON") from exc
    if not isinstance(raw, dict):
        raise AppError(ErrorCode.validation_failed, "请求体应为 JSON 对象",
                       fields={"body": "应为 JSON 对象"})
    return _validated(model, raw)


def _parse_query(request: Request, model: type[BaseModel]) -> BaseModel:
    raw: dict[str, Any] = {}
    # Blank values are kept ("kind=" is a bad kind, not an absent one).
    args = request.get_args(keep_blank_values=True)
    for name, field in model.model_fields.items():
        key = field.alias or name
        values = args.getlist(key)
        if not values:
            continue
        raw[key] = values if _is_list(field.annotation) else values[0]
    return _validated(model, raw)


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        return True
    return any(get_origin(a) is list for a in get_args(annotation))


class _RawSchema(Schema):
    """A JSON schema passed through untouched: sanic-ext's Schema keeps only the keys it knows
    (it would drop ``items``) and turns a plain dict into an object with those keys as
    properties, which documented every query parameter as an object."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._fields = schema


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """Resolve pydantic's local ``$ref``s and drop its ``null`` alternatives: a query parameter
    is optional by being absent, and OpenAPI 3.0 has no ``null`` type."""
    if isinstance(schema, list):
        return [_inline(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return _inline({**target, **rest}, defs)
    out = {k: _inline(v, defs) for k, v in schema.items() if k != "title"}
    alternatives = [a for a in out.get("anyOf", []) if a.get("type") != "null"]
    if "anyOf" in out and len(alternatives) == 1:
        merged = {**{k: v for k, v in out.items() if k != "anyOf"}, **alternatives[0]}
        if merged.get("default", 0) is None:
            merged.pop("default")
        return merged
    return out


def _query_parameters(model: type[BaseModel]) -> list[Parameter]:
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        resolved = _inline(prop, defs)
        description = resolved.pop("description", None)
        kwargs: dict[str, Any] = {"description": description} if description else {}
        params.append(
            Parameter(name, _RawSchema(resolved), location="query", required=name in required,
                      **kwargs)
        )
    return params


_MAX_ID = 2**63 - 1  # BIGINT: a larger id can't exist, and the driver would overflow on it
_MAX_PATH_TEXT = 64


def _check_path_params(params: dict[str, Any]) -> None:
    """An id or code no row can have is simply not found; checking here keeps impossible values
    (a 30-digit id, a 500-character code, control characters) away from the database."""
    for value in params.values():
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and not 0 < value <= _MAX_ID:
            raise AppError(ErrorCode.not_found)
        if isinstance(value, str) and (len(value) > _MAX_PATH_TEXT or not value.isprintable()):
            raise AppError(ErrorCode.not_found)


class SchemaNameClash(RuntimeError):
    """Two different classes under one OpenAPI component name."""


# Component name -> the one class documented under it. sanic-ext keys components by class
# name and keeps whichever registers first (nested models are even overwritten by the last),
# so two `GrantIn`s silently documented the admin role grant as the proxy-authorization body.
_COMPONENT_OWNERS: dict[str, type] = {}


def _documented_types(model: type, seen: set[type] | None = None) -> Iterator[type]:
    """The model and every model or enum nested in its fields: each becomes a component."""
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    yield model
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return
    for field in model.model_fields.values():
        stack: list[Any] = [field.annotation]
        while stack:
            hint = stack.pop()
            stack.extend(get_args(hint))
            if isinstance(hint, type) and issubclass(hint, BaseModel | Enum):
                yield from _documented_types(hint, seen)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def schema_component(model: type[BaseModel]) -> Reference:
    """The one way a pydantic model enters the OpenAPI document. A second class under a name
    already taken raises at import, so an app with a clash cannot start (prefix the newer
    class with its domain: `ProxyGrantIn`, `CaseReopenIn`)."""
    for cls in _documented_types(model):
        owner = _COMPONENT_OWNERS.setdefault(cls.__name__, cls)
        if owner is not cls:
            raise SchemaNameClash(
                f"OpenAPI component {cls.__name__!r} would document both {_where(owner)} "
                f"and {_where(cls)}: rename one (prefix it with its domain)"
            )
    ref: Reference = Component(model)
    return ref


# What each status means to a caller, shown beside it in the document.
STATUS_DESCRIPTIONS = {
    200: "成功",
    201: "已创建",
    202: "已受理，稍后完成",
    204: "成功，无内容",
    400: "请求格式错误（如不是合法的 JSON）",
    401: "未登录，或令牌无效、已过期",
    403: "无权执行此操作（角色或范围不符）",
    404: "不存在，或无权查看",
    405: "不支持此请求方法",
    409: "与当前状态冲突（如已约满、已处理、重复提交）",
    410: "已失效",
    412: "前提条件不满足",
    413: "请求体或地址过长",
    415: "请求体类型不支持，应为 application/json",
    422: "输入校验失败，fields 逐字段说明",
    423: "已锁定",
    429: "请求过于频繁，请按 Retry-After 稍后再试",
    500: "服务内部错误",
    502: "上游服务返回异常",
    503: "依赖服务暂不可用，请稍后再试",
    504: "上游服务超时",
}


def status_description(status: int) -> str:
    return STATUS_DESCRIPTIONS.get(status, f"HTTP {status}")


# Every tag an operation uses, with what a front-end developer finds under it. A tag missing
# here shows bare in the document; tests/api/test_contract.py refuses that.
TAG_DESCRIPTIONS = {
    "ops": "运维：存活与就绪探针",
    "auth": "登录与令牌：微信登录、刷新、退出",
    "me": "我的：实名认证、手机号、个人信息访问记录",
    "admin": "管理后台：用户与角色、个人信息查看（留审计）、审计日志、统计",
    "guide": "办事指南：事项、材料、办理流程与搜索",
    "map": "地图：政务大厅、窗口与服务网点（GCJ-02 坐标）",
    "policies": "政策：惠民政策发布、匹配与订阅",
    "cases": "办件：申请、补正、进度、重新办理",
    "helpers": "帮办代办：帮办人员、代办授权与代办办件",
    "codes": "一码通：个人码、门牌码、扫码记录",
    "feedback": "投诉建议与办不成事反映",
    "ratings": "好差评与差评整改",
    "appointments": "预约服务：时段、预约、候补、取号签到",
    "messages": "站内消息：通知中心、订阅授权与短信兜底",
    "online": "全程网办：电子表单、材料上传、补正与材料复用",
    "org": "组织机构：行政区划、部门、大厅人员岗位与数据权限",
    "window": "综窗：现场受理、首问负责、受理前一次性告知、容缺受理、告知承诺、不予受理",
    "approval": "综窗后台审批与统一出件：审批队列、认领、审批、退回窗口、领取方式、窗口领取与邮寄",
}


# 413 can answer any request: Sanic refuses an oversized body or URL before routing.
# 503: any route may meet a dependency outage or its deadline (issue 16).
_ERROR_STATUSES = {
    "public": (400, 413, 422, 429, 503),
    "auth": (400, 401, 403, 404, 409, 413, 422, 429, 503),
}


def endpoint(
    *,
    response: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    status: int = 200,
    roles: Sequence[Role] | None = None,
    public: bool = False,
    summary: str | None = None,
    tag: str | None = None,
    errors: Sequence[int] = (),
    no_store: bool | None = None,
) -> Callable[[Handler], Handler]:
    """``roles``: any one of them admits the caller (None: any signed-in user).

    ``no_store``: answer ``Cache-Control: no-store``. Default: every signed-in route (what a
    user sees is theirs: tokens such as check-in codes, revealed personal data, their own
    records), and no public one, which stays cacheable. A public route that hands out tokens
    (login, refresh) sets it."""
    store_header = {"Cache-Control": "no-store"} if (not public if no_store is None
                                                     else no_store) else None

    def decorate(fn: Handler) -> Handler:
        params = inspect.signature(fn).parameters

        @wraps(fn)
        async def handler(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            _check_path_params(kwargs)
            if not public:
                principal = await authorized(request, roles)
                if "principal" in params:
                    kwargs["principal"] = principal
            if body is not None:
                kwargs["body"] = parse_body(request, body)
            if query is not None:
                kwargs["query"] = _parse_query(request, query)
            promised = outbox.begin_request()
            try:
                result = await within_deadline(fn(request, *args, **kwargs))
            finally:
                # The handler's transactions are over: wake the outbox dispatchers if it
                # promised an after-commit effect.
                await outbox.end_request(promised)
            if isinstance(result, HTTPResponse):
                if store_header:
                    result.headers.update(store_header)
                return result
            if isinstance(result, BaseModel):
                # One pass in pydantic's Rust core: half the cost of dump-then-json.dumps.
                return HTTPResponse(result.model_dump_json(), status=status,
                                    content_type="application/json", headers=store_header)
            return json(result, status=status, headers=store_header)

        return documented(response=response, body=body, query=query, status=status,
                          public=public, summary=summary, tag=tag, errors=errors)(handler)

    return decorate


def documented(
    *,
    response: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    status: int = 200,
    public: bool = False,
    summary: str | None = None,
    tag: str | None = None,
    errors: Sequence[int] = (),
) -> Callable[[Handler], Handler]:
    """The route's OpenAPI operation, exactly as ``@endpoint`` documents it, and the handler
    itself back — unwrapped. ``@endpoint`` uses it; so does a route that guards and parses for
    itself to skip the generic layers on a hot path (``POST /codes/scan``, api/codes.py),
    which must then do what it documents: ``authorized``, ``parse_body``, ``within_deadline``.
    """

    def decorate(fn: Handler) -> Handler:
        responses = []
        if response is not None:
            responses.append(
                Response({"application/json": schema_component(response)}, status=status,
                         description=status_description(status))
            )
        for code in sorted({*_ERROR_STATUSES["public" if public else "auth"], *errors}):
            responses.append(
                Response({"application/json": schema_component(ErrorBody)}, status=code,
                         description=status_description(code))
            )
        definition: dict[str, Any] = {"response": responses}
        if summary:
            definition["summary"] = summary
        if tag:
            definition["tag"] = tag
        if query is not None:
            definition["parameter"] = _query_parameters(query)
        if not public:
            definition["secured"] = {"bearer": []}
        same: Handler = openapi.definition(**definition)(fn)
        if body is not None:
            # Straight onto the operation: sanic-ext's ``openapi.body`` would wrap the handler
            # in a coroutine of its own that runs on every request (for a validation we never
            # ask it to do).
            content = RequestBody({"application/json": schema_component(body)}, required=True)
            OperationStore()[same].body(**content.fields)  # type: ignore[no-untyped-call]
        return same

    return decorate
