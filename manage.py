"""Operator commands: ``python manage.py migrate | seed | jobs | bootstrap-admin OPENID``
(and ``check-migrations``, CI's drift guard).

Migrations are Tortoise's own (``migrations/``); see docs/migrations.md for why not aerich.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from tortoise import Tortoise

from services import db
from services.settings import SettingsError, get_settings


async def migrate() -> None:
    from tortoise.migrations.api import migrate as migrate_api

    settings = get_settings()
    db._ensure_sqlite_folder(settings.database_url)
    db.patch_sqlite_migration_comments()
    config = db.tortoise_config(settings.database_url)
    await Tortoise.init(config=config)
    try:
        await migrate_api(config=config, app_labels=None, target=None)
    finally:
        await Tortoise.close_connections()


async def check_migrations() -> int:
    """Exit 1 when the models differ from what the migrations build: CI's drift guard."""
    from tortoise.migrations.autodetector import MigrationAutodetector

    config = db.tortoise_config("sqlite://:memory:")
    await Tortoise.init(config=config)
    try:
        detector = MigrationAutodetector(Tortoise.apps, config["apps"])
        writers = await detector.changes()
    finally:
        await Tortoise.close_connections()
    if writers:
        for w in writers:
            print(f"models and migrations disagree: {w.app_label} needs a new migration "
                  f"({w.name}); run `make migration`")
        return 1
    print("migrations match the models")
    return 0


async def seed() -> None:
    from services import cache
    from services import seed as seed_service

    settings = get_settings()
    await db.open_db(settings)
    await cache.open_cache(settings.redis_url)
    try:
        await seed_service.run()
        if settings.wechat_mode == "stub":
            from miniprogram_stub import demo_accounts

            await demo_accounts.seed(settings.wechat_appid)
    finally:
        await cache.close_cache()
        await db.close_db()


async def run_jobs() -> int:
    """The background work — outbox deliveries, queued jobs, sweeps — in a process of its own, so
    its CPU stays off the serving event loops (serving workers then run with
    ``XQ_RUN_BACKGROUND_JOBS=false``; docs/foundation.md "Jobs"). Any number may run: the
    outbox's row claims and Redis' leases and tick claims keep each piece of work to one taker.
    SIGTERM/SIGINT finish the step in hand and stop."""
    from api import observability
    from api.app import build_wechat
    from services import cache, jobs, wechat

    settings = get_settings()
    if settings.redis_url.startswith("memory://"):
        # The embedded Redis lives inside one process: a job process would wait on a queue
        # nobody else can see. The embedded default runs its jobs in the server (make run).
        print("refused: `jobs` needs a shared Redis (XQ_REDIS_URL); the embedded default "
              "runs background jobs inside the server", file=sys.stderr)
        return 78
    observability.configure_logging()
    jobs.load_registrations()
    # The composition root's gateway, so a notice sent from here goes where the server's would.
    gateway, _platform = build_wechat(settings)
    wechat.configure(gateway)
    await db.open_db(settings)
    await cache.open_cache(settings.redis_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await jobs.worker_loop(stop)
    finally:
        await cache.close_cache()
        await db.close_db()
    return 0


async def bootstrap_admin(openid: str) -> None:
    from services import users

    await db.open_db()
    try:
        user = await users.bootstrap_admin(openid=openid)
        print(f"user {user.id} ({openid}) is now an admin")
    finally:
        await db.close_db()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply migrations to XQ_DATABASE_URL")
    sub.add_parser("check-migrations", help="fail if models and migrations disagree")
    sub.add_parser("seed", help="load the demo data (idempotent)")
    sub.add_parser("jobs", help="run background work (outbox, queue, sweeps) in this process")
    boot = sub.add_parser("bootstrap-admin", help="make the account with this openid an admin")
    boot.add_argument("openid")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except SettingsError as exc:
        # The message names variables, never values; no traceback to dig a value out of.
        print(f"refused: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG


def _run(args: argparse.Namespace) -> int:
    if args.command == "migrate":
        asyncio.run(migrate())
    elif args.command == "check-migrations":
        return asyncio.run(check_migrations())
    elif args.command == "seed":
        asyncio.run(seed())
    elif args.command == "jobs":
        return asyncio.run(run_jobs())
    elif args.command == "bootstrap-admin":
        asyncio.run(bootstrap_admin(args.openid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
