import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from services import settings as settings_module
from services.settings import PLACEHOLDER, Settings, SettingsError, get_settings


def test_development_accepts_placeholders(tmp_path: Path) -> None:
    settings = Settings(env="development", dev_secrets_file=str(tmp_path / "dev-secrets.json"))
    assert settings.env == "development"


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


def test_malformed_data_key_is_refused_everywhere(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(env="development", data_key="short",
                 dev_secrets_file=str(tmp_path / "dev-secrets.json"))


# --- refused starts don't leak, development makes its own secrets ---------------------------

ROOT = Path(__file__).resolve().parents[2]
REAL_KEY = "Dl5cLlDBWvFaJNESJ-zwejemHT2EK8EncbyR5CrQvac="


def _leaks(text: str) -> bool:
    """Any 8-character piece of the data key in ``text`` (the probe saw its tail)."""
    return any(REAL_KEY[i:i + 8] in text for i in range(len(REAL_KEY) - 7))


def test_validation_error_never_echoes_values() -> None:
    with pytest.raises(ValidationError) as exc:
        Settings(env="production", wechat_mode="http", jwt_secret="short",
                 data_key=REAL_KEY, wechat_secret="real-secret")
    assert "XQ_JWT_SECRET" in str(exc.value)
    assert not _leaks(str(exc.value)) and "real-secret" not in str(exc.value)


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_get_settings_refuses_with_names_not_values(
        monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> None:
    for name, value in {"XQ_ENV": "production", "XQ_JWT_SECRET": "short",
                        "XQ_DATA_KEY": REAL_KEY, "XQ_WECHAT_MODE": "http",
                        "XQ_WECHAT_SECRET": "real-secret"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as exc:
        get_settings()
    text = str(exc.value)
    assert "XQ_JWT_SECRET" in text and not _leaks(text) and "real-secret" not in text
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
    # A malformed field is named, its value is not repeated.
    monkeypatch.setenv("XQ_LOGIN_RATE_LIMIT", "ten-per-minute")
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as exc:
        get_settings()
    assert "XQ_LOGIN_RATE_LIMIT" in str(exc.value)
    assert "ten-per-minute" not in str(exc.value) and not _leaks(str(exc.value))


def test_development_makes_random_secrets_once(tmp_path: Path) -> None:
    secrets_file = tmp_path / "var" / "dev-secrets.json"
    db_url = f"sqlite://{tmp_path}/var/none.sqlite3"
    first = Settings(env="development", dev_secrets_file=str(secrets_file), database_url=db_url)
    assert first.jwt_secret != PLACEHOLDER and len(first.jwt_secret) >= 32
    assert first.data_key != settings_module._PLACEHOLDER_DATA_KEY
    assert len(first.data_key_bytes()) == 32
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    again = Settings(env="development", dev_secrets_file=str(secrets_file), database_url=db_url)
    assert (again.jwt_secret, again.data_key) == (first.jwt_secret, first.data_key)
    other = Settings(env="development", dev_secrets_file=str(tmp_path / "other.json"),
                     database_url=db_url)
    assert other.jwt_secret != first.jwt_secret
    # Set explicitly, a value wins and nothing is made for it.
    mine = Settings(env="development", jwt_secret="x" * 40,
                    dev_secrets_file=str(tmp_path / "mine.json"), database_url=db_url)
    assert mine.jwt_secret == "x" * 40


def test_existing_development_data_keeps_its_key(tmp_path: Path) -> None:
    db = tmp_path / "xiaoqing.sqlite3"
    db.write_bytes(b"SQLite format 3\x00")  # data encrypted with the old placeholder key
    s = Settings(env="development", database_url=f"sqlite://{db}",
                 dev_secrets_file=str(tmp_path / "dev-secrets.json"))
    assert s.data_key == settings_module._PLACEHOLDER_DATA_KEY
    assert s.jwt_secret != PLACEHOLDER  # the token secret has no data to keep readable
    stored = json.loads((tmp_path / "dev-secrets.json").read_text())
    assert stored["legacy_data_key"] is True

    # Also when this process runs on another database (the journeys' throwaway one) but the
    # secrets are shared with the old one beside them.
    elsewhere = Settings(env="development", database_url=f"sqlite://{tmp_path}/other/x.sqlite3",
                         dev_secrets_file=str(tmp_path / "dev-secrets-2.json"))
    assert elsewhere.data_key == settings_module._PLACEHOLDER_DATA_KEY


def test_refused_start_exits_non_zero_without_the_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XQ_")}
    env.update({"XQ_ENV": "production", "XQ_JWT_SECRET": "short", "XQ_DATA_KEY": REAL_KEY,
                "XQ_WECHAT_MODE": "http", "XQ_WECHAT_SECRET": "real-secret",
                "PYTHONPATH": str(ROOT)})
    sanic = Path(sys.executable).with_name("sanic")
    done = subprocess.run(
        [str(sanic), "api.app:create_app", "--factory", "--single-process", "--port", "8497"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "refused to start" in output and "XQ_JWT_SECRET" in output
    assert not _leaks(output) and "real-secret" not in output


def test_manage_refuses_with_a_config_exit_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XQ_")}
    env.update({"XQ_ENV": "production", "XQ_JWT_SECRET": "short", "XQ_DATA_KEY": REAL_KEY})
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 78, done.stdout + done.stderr
    assert "XQ_JWT_SECRET" in done.stderr and not _leaks(done.stdout + done.stderr)
