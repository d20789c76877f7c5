import pytest
from pydantic import ValidationError

from services.settings import Settings


def test_development_accepts_placeholders():
    assert Settings(env="development").env == "development"


def test_production_refuses_placeholder_secrets():
    with pytest.raises(ValidationError) as exc:
        Settings(env="production", wechat_mode="http")
    text = str(exc.value)
    assert "XQ_JWT_SECRET" in text and "XQ_DATA_KEY" in text and "XQ_WECHAT_SECRET" in text


def test_production_with_real_secrets_starts():
    import base64
    import os

    s = Settings(env="production", wechat_mode="http", jwt_secret="s" * 48,
                 data_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
                 wechat_secret="real-secret")
    assert s.env == "production"


def test_malformed_data_key_is_refused_everywhere():
    with pytest.raises(ValidationError):
        Settings(env="development", data_key="short")
