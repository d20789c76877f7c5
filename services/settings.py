"""The one settings object, read from the environment (prefix ``XQ_``).

Defaults give a zero-setup laptop run: an SQLite file under ``var/``, an in-process Redis
stand-in and the in-process WeChat stub. Outside development and test the service refuses
to start while a secret still has its placeholder value, so a forgotten variable in
production is a crash at boot, not a forgeable token.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER = "change-me-development-only-not-a-secret"
_PLACEHOLDER_DATA_KEY = base64.urlsafe_b64encode(b"change-me-change-me-change-me-32").decode()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XQ_", extra="ignore")

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
    # Where each worker journals the scan-log lines it promised (services/scanjournal.py).
    scan_journal_dir: str = "var/scanlog"

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
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
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def data_key_bytes(self) -> bytes:
        try:
            key = base64.urlsafe_b64decode(self.data_key.encode())
        except (binascii.Error, ValueError) as exc:
            raise ValueError("XQ_DATA_KEY is not url-safe base64") from exc
        if len(key) != 32:
            raise ValueError("XQ_DATA_KEY must decode to exactly 32 bytes")
        return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
