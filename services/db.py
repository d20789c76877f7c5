"""The one place that knows how the ORM is configured and opened."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise

from models import MODEL_MODULES
from services.settings import Settings, get_settings

TIMEZONE = "Asia/Shanghai"


def tortoise_config(database_url: str | None = None) -> dict[str, Any]:
    url = database_url or get_settings().database_url
    if url.startswith("mysql://") and "charset=" not in url:
        # utf8mb4: residents' names include characters outside the BMP.
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    return {
        "connections": {"default": url},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "migrations",
            }
        },
        "use_tz": True,
        "timezone": TIMEZONE,
    }


# For Tortoise's own CLI: `tortoise -c services.db.TORTOISE_ORM migrate`.
TORTOISE_ORM = tortoise_config()


async def open_db(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    _ensure_sqlite_folder(settings.database_url)
    await Tortoise.init(config=tortoise_config(settings.database_url))


async def close_db() -> None:
    await Tortoise.close_connections()


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite://") and url != "sqlite://:memory:":
        from pathlib import Path

        Path(url.removeprefix("sqlite://")).parent.mkdir(parents=True, exist_ok=True)
