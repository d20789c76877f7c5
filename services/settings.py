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
        if self.sms_mode == "tencent" and not (self.sms_secret_id and self.sms_secret_key
                                               and self.sms_sdk_app_id):
            problems.append("XQ_SMS_SECRET_ID, XQ_SMS_SECRET_KEY and XQ_SMS_SDK_APP_ID must be "
                            "set when XQ_SMS_MODE=tencent")
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
