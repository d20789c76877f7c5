"""The one settings object, read from the environment (prefix ``XQ_``).

Defaults give a zero-setup laptop run: an SQLite file under ``var/``, an in-process Redis
stand-in and the in-process WeChat stub. Outside development and test the service refuses
to start while a secret still has its placeholder value, so a forgotten variable in
production is a crash at boot, not a forgeable token.

In development an unset ``XQ_JWT_SECRET`` / ``XQ_DATA_KEY`` is not the public placeholder but a
random value made once and kept in ``var/dev-secrets.json`` (mode 0600), so a laptop run
can't be forged into by anyone who read this file. Errors about settings never echo a value:
a refused start must not print a neighbouring secret into a log.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER = "change-me-development-only-not-a-secret"
_PLACEHOLDER_DATA_KEY = base64.urlsafe_b64encode(b"change-me-change-me-change-me-32").decode()


class SettingsError(RuntimeError):
    """The environment can't make a valid ``Settings``. The message names variables and what
    is wrong with them, never their values. Not a ValueError: Sanic's CLI swallows those and
    exits 0."""


class Settings(BaseSettings):
    # hide_input_in_errors: pydantic would otherwise print every input (secrets included) in
    # a validation error, and the whole environment for a model-level one.
    model_config = SettingsConfigDict(env_prefix="XQ_", extra="ignore",
                                      hide_input_in_errors=True)

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite://var/xiaoqing.sqlite3"
    # "memory://" is the in-process stand-in (fakeredis, with Lua); "redis://host:port/db" a server.
    redis_url: str = "memory://"
    # stub: in-process fake platform; http: real wechatpy against wechat_api_base (a real
    # platform, or miniprogram_stub.server standing in for it).
    wechat_mode: Literal["stub", "http"] = "stub"
    wechat_appid: str = "wx_stub_appid"
    wechat_secret: str = PLACEHOLDER
    wechat_api_base: str = "https://api.weixin.qq.com/"
    # Template ids configured in the mini-program admin, by our own name for the message.
    wechat_templates: dict[str, str] = Field(
        default_factory=lambda: {
            "policy_published": "tmpl-policy",
            "appointment_booked": "tmpl-appt-booked",
            "appointment_reminder": "tmpl-appt-reminder",
            "waitlist_promoted": "tmpl-waitlist",
            "case_status": "tmpl-case-status",
            "feedback_reply": "tmpl-feedback-reply",
            "identity_moved": "tmpl-identity-moved",
            "case_supplement": "tmpl-case-supplement",
            "case_result": "tmpl-case-result",
            "helper_offered": "tmpl-helper-offered",
            "helper_assigned": "tmpl-helper-assigned",
            "rating_invite": "tmpl-rating-invite",
            "on_behalf_relay": "tmpl-on-behalf-relay",
        }
    )

    jwt_secret: str = PLACEHOLDER
    jwt_issuer: str = "xiaoqing-bangban"
    access_ttl_seconds: int = 15 * 60
    refresh_ttl_seconds: int = 30 * 24 * 3600
    # 32 bytes, url-safe base64. Encrypts ID numbers, names and phones at rest.
    data_key: str = _PLACEHOLDER_DATA_KEY

    login_rate_limit: int = 10
    login_rate_window_seconds: int = 60

    # Appointments (预约服务).
    appointment_max_active: int = 3
    appointment_cancel_cutoff_minutes: int = 60
    appointment_book_rate_limit: int = 10
    appointment_worker_book_rate_limit: int = 60
    appointment_book_rate_window_seconds: int = 60
    appointment_green_age: int = 65
    appointment_no_show_limit: int = 3
    appointment_no_show_window_days: int = 90
    appointment_no_show_suspension_days: int = 30
    appointment_check_in_early_minutes: int = 60

    public_base_url: str = "https://bangban.qingyang.gov.cn"
    # 一码通: a person code's life, scans per scanner per window, a CJK font for plate sheets.
    person_code_ttl_seconds: int = 60
    scan_rate_limit: int = 60
    scan_rate_window_seconds: int = 60
    cjk_font_path: str = ""
    # Where development keeps the secrets it made up (relative to the working directory, like
    # the default SQLite file).
    dev_secrets_file: str = "var/dev-secrets.json"
    seed_demo_data: bool = True
    run_background_jobs: bool = True
    log_requests: bool = True

    # 投诉建议 / 办不成事: handling limits in working days per kind, and how long a replied
    # report waits for the resident's satisfaction answer before it closes on its own.
    feedback_due_days: dict[str, int] = Field(
        default_factory=lambda: {"complaint": 5, "unresolved": 3, "suggestion": 10}
    )
    feedback_autoclose_days: int = 7
    feedback_daily_limit: int = 20
    feedback_default_department: str = "市政务服务中心"
    # 好差评: 差评整改时限 (working days) and how many more working days each escalation
    # level waits.
    rectification_due_days: int = 15
    rectification_escalate_every_days: int = 5
    rectification_max_level: int = 3

    # 办件: how long after closing an applicant may ask to reopen; how far ahead of the due
    # time staff are warned; how long a helper has to take an offered case before it moves on.
    case_reopen_days: int = 15
    case_due_soon_hours: int = 24
    helper_offer_timeout_minutes: int = 30
    # Bounded waits (issue 16): no request waits on a stalled dependency longer than these.
    # request_deadline_seconds is the whole request's budget and so also every query's; the
    # breaker opens after breaker_failures consecutive failures for breaker_open_seconds.
    request_deadline_seconds: float = 10.0
    db_connect_timeout_seconds: float = 3.0
    db_acquire_timeout_seconds: float = 3.0
    db_statement_timeout_seconds: float = 8.0
    redis_timeout_seconds: float = 1.0
    breaker_failures: int = 3
    breaker_open_seconds: float = 5.0
    # An Idempotency-Key left "in progress" (worker killed, database frozen) is taken over by a
    # retry after this long; longer than the request deadline so a live attempt is never raced.
    idempotency_lease_seconds: float = 30.0
    # How often each worker looks at the outbox table when nothing wakes it.
    outbox_poll_seconds: float = 1.0
    # Retention (services/housekeeping.py): delivered outbox rows are the record of what went
    # out for this long; a retried write with an Idempotency-Key is answered from the stored
    # reply for this long (a day, as payment APIs keep theirs), then runs afresh.
    outbox_keep_days: int = 30
    idempotency_keep_hours: int = 24
    # Where each worker journals the scan-log lines it promised (services/scanjournal.py).
    scan_journal_dir: str = "var/scanlog"

    # 实名 + 实人 (services/verification.py): verification attempts per account and per ID
    # number in a window — binding must not be a way to test which name goes with a number.
    identity_verify_rate_limit: int = 5
    identity_verify_id_rate_limit: int = 10
    identity_verify_rate_window_seconds: int = 3600

    # Behind a reverse proxy (docs/foundation.md): off by default, so a forged
    # X-Forwarded-For can't pick someone else's rate-limit bucket. Set the number of proxies
    # in front of the app (nginx alone: 1), or the header your proxy writes the client's
    # address to (e.g. X-Real-IP), or the secret your proxy puts in ``Forwarded: secret=``.
    # They are Sanic's PROXIES_COUNT / REAL_IP_HEADER / FORWARDED_SECRET.
    proxies_count: int = 0
    real_ip_header: str = ""
    forwarded_secret: str = ""
    # 消息: templates WeChat grants as 长期订阅 to this (政务) mini program — an acceptance of
    # these is recorded as long-term; every other acceptance is worth one message.
    wechat_long_term_templates: list[str] = Field(
        default_factory=lambda: ["appointment_reminder", "case_status", "case_supplement",
                                 "case_result"]
    )
    # SMS fallback for notices that matter. "stub" records what would have been sent;
    # "tencent" calls 腾讯云 SendSms (API 3.0, TC3-HMAC-SHA256) at sms_endpoint.
    sms_mode: Literal["stub", "tencent"] = "stub"
    sms_endpoint: str = "https://sms.tencentcloudapi.com/"
    sms_region: str = "ap-guangzhou"
    sms_secret_id: str = ""
    sms_secret_key: str = ""
    sms_sdk_app_id: str = ""
    sms_sign_name: str = "庆阳小庆帮办"
    sms_timeout_seconds: float = 5
    # Our template name -> the provider's approved template id. Every template takes two
    # parameters: the notice's title and a short text.
    sms_templates: dict[str, str] = Field(default_factory=dict)
    sms_daily_limit: int = 5
    # 代办: attempts to name a person on someone's behalf, per worker and per ID number, so
    # neither one worker nor many together can walk a list of ID numbers or names.
    on_behalf_worker_rate_limit: int = 30
    on_behalf_id_rate_limit: int = 10
    on_behalf_rate_window_seconds: int = 3600
    # 全程网办 (docs/online.md). Object storage: "local" is a folder under var/ (one machine);
    # "s3" any S3-compatible store (MinIO, a 政务云 object service) at online_s3_endpoint.
    online_storage: Literal["local", "s3"] = "local"
    online_storage_dir: str = "var/objects"
    online_s3_endpoint: str = ""
    online_s3_bucket: str = "xiaoqing-materials"
    online_s3_region: str = "cn-northwest-1"
    online_s3_access_key: str = ""
    online_s3_secret_key: str = ""
    # Seconds before a store that does not answer is a 503 rather than a hung upload.
    online_s3_timeout_seconds: float = 5.0
    online_upload_max_bytes: int = 20 * 1024 * 1024
    online_upload_rate_limit: int = 100  # per account per hour
    online_upload_tmp_dir: str = "var/tmp"
    # Longest side kept: documents stay legible, and big photos decode scaled (uploads.py).
    online_image_max_side: int = 2048
    online_thumb_side: int = 320
    # Staff see PDFs rendered page by page with a watermark: bound the work one file can ask.
    online_pdf_max_pages: int = 30
    # Signed material links: short-lived, for <image src> and wx.downloadFile (no headers).
    online_link_ttl_seconds: int = 300
    # How long an accepted material may be reused (免提交) after staff accepted it.
    online_reuse_valid_days: int = 365
    # Retention: drafts untouched this long lose their uploads; uploads never attached to
    # anything are deleted after online_orphan_upload_hours.
    online_draft_retention_days: int = 30
    online_orphan_upload_hours: int = 48
    # Virus scanning: "none" (development), or "clamd" at host:port (INSTREAM protocol).
    online_virus_scan: Literal["none", "clamd"] = "none"
    online_clamd_address: str = "127.0.0.1:3310"
    # /docs (the page and /docs/openapi.json). Unset: on in development and test, off in
    # production, where the intranet page is opt-in with XQ_DOCS_ENABLED=true.
    docs_enabled: bool | None = None

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.env == "development":
            self._fill_development_secrets()
        key = self.data_key_bytes()  # also validates shape in every environment
        if self.env in ("development", "test"):
            return self
        problems = []
        if self.jwt_secret == PLACEHOLDER or len(self.jwt_secret) < 32:
            problems.append("XQ_JWT_SECRET must be set to a random value of 32+ characters")
        if self.data_key == _PLACEHOLDER_DATA_KEY or key == b"change-me-change-me-change-me-32":
            problems.append("XQ_DATA_KEY must be set to 32 random bytes, url-safe base64")
        if self.wechat_mode == "http" and self.wechat_secret == PLACEHOLDER:
            problems.append("XQ_WECHAT_SECRET must be set when XQ_WECHAT_MODE=http")
        if self.wechat_mode == "stub":
            problems.append("XQ_WECHAT_MODE=stub is for development and tests only")
        if self.sms_mode == "tencent" and not (self.sms_secret_id and self.sms_secret_key
                                               and self.sms_sdk_app_id):
            problems.append("XQ_SMS_SECRET_ID, XQ_SMS_SECRET_KEY and XQ_SMS_SDK_APP_ID must be "
                            "set when XQ_SMS_MODE=tencent")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _fill_development_secrets(self) -> None:
        unset_jwt = self.jwt_secret == PLACEHOLDER
        unset_key = self.data_key == _PLACEHOLDER_DATA_KEY
        if not (unset_jwt or unset_key):
            return
        made = _development_secrets(Path(self.dev_secrets_file), self._has_dev_data())
        if unset_jwt:
            self.jwt_secret = made["jwt_secret"]
        if unset_key:
            self.data_key = made["data_key"]

    def _has_dev_data(self) -> bool:
        """Is there a development database already, encrypted with the old placeholder key?
        The configured SQLite file, or any beside the secrets file: the journeys' servers run
        on a throwaway database but share ``var/`` with ``make run``'s."""
        candidates = list(Path(self.dev_secrets_file).parent.glob("*.sqlite3"))
        if self.database_url.startswith("sqlite://"):
            candidates.append(Path(self.database_url.removeprefix("sqlite://")))
        return any(p.is_file() and p.stat().st_size > 0 for p in candidates)
    def docs_on(self) -> bool:
        return self.env != "production" if self.docs_enabled is None else self.docs_enabled

    def data_key_bytes(self) -> bytes:
        try:
            key = base64.urlsafe_b64decode(self.data_key.encode())
        except (binascii.Error, ValueError) as exc:
            raise ValueError("XQ_DATA_KEY is not url-safe base64") from exc
        if len(key) != 32:
            raise ValueError("XQ_DATA_KEY must decode to exactly 32 bytes")
        return key


def _development_secrets(path: Path, keep_legacy_data_key: bool) -> dict[str, str]:
    """The development secrets in ``path``, made on first use. Several workers starting at once
    agree: the file appears whole (written aside, then hard-linked into place, which fails if
    another worker won) and everyone reads the winner's.

    The data key is random too, unless a development database from before this file existed is
    there: its names and ID numbers are encrypted with the old placeholder key, so that key is
    written down instead (``"legacy_data_key": true``) and the data stays readable. Delete
    ``var/`` (``make clean``) to start over with a random key."""
    if not path.exists():
        made = {"jwt_secret": secrets.token_urlsafe(48),
                "data_key": (_PLACEHOLDER_DATA_KEY if keep_legacy_data_key
                             else base64.urlsafe_b64encode(os.urandom(32)).decode())}
        body = {**made, "legacy_data_key": keep_legacy_data_key,
                "note": "development only; made by services/settings.py, never commit"}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, indent=1)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another worker made it first: theirs is the one
        finally:
            tmp.unlink()
    stored: dict[str, str] = json.loads(path.read_text())
    return stored


def describe_errors(exc: ValidationError) -> str:
    """What is wrong with which variable, without any value."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        name = "_".join(str(p) for p in err["loc"]).upper()
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"XQ_{name}: {msg}" if name else msg)
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(f"invalid settings: {describe_errors(exc)}") from None
