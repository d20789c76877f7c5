"""Test harness: one database and one Redis for the whole run, cleaned between tests.

Backend choice (``XQ_TEST_BACKEND``):
- ``real``: MariaDB/MySQL (``XQ_TEST_MYSQL_URL``, default root@127.0.0.1:3306) in a throwaway
  database created here and dropped at the end, and a real Redis (``XQ_TEST_REDIS_URL``, default
  db 13 on 127.0.0.1:6379, flushed before each test and at the end);
- ``embedded``: an SQLite file in a temporary folder and fakeredis;
- ``auto`` (default): ``real`` when both servers answer, else ``embedded``.
CI runs the suite once each way.

The fixtures own the ORM and Redis; the app is built with ``manage_resources=False`` so
sanic-testing's per-request restarts never reopen or wipe them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("XQ_ENV", "test")
os.environ.setdefault("XQ_LOG_REQUESTS", "false")
os.environ.setdefault("XQ_RUN_BACKGROUND_JOBS", "false")

import httpx
import pytest
from sanic import Sanic
from tortoise import Tortoise, connections

from api.app import create_app
from models.org import Position
from models.users import Role, User, UserRole
from services import bookingref, cache, db, scope
from services.settings import get_settings

MYSQL_URL = os.environ.get("XQ_TEST_MYSQL_URL", "mysql://root:@127.0.0.1:3306")
REDIS_URL = os.environ.get("XQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def _backend() -> str:
    choice = os.environ.get("XQ_TEST_BACKEND", "auto")
    if choice == "auto":
        real = db.server_reachable(MYSQL_URL, 3306) and db.server_reachable(REDIS_URL, 6379)
        return "real" if real else "embedded"
    if choice not in ("real", "embedded"):
        raise pytest.UsageError(f"XQ_TEST_BACKEND must be auto, real or embedded, not {choice}")
    return choice


BACKEND = _backend()


def pytest_report_header() -> str:
    return f"xq backend: {BACKEND} (database {'MariaDB/MySQL' if BACKEND == 'real' else 'SQLite'})"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mysql: needs the real MySQL backend (skipped otherwise)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if BACKEND == "real":
        return
    skip = pytest.mark.skip(reason="proven on MySQL; this run is on the embedded backend")
    for item in items:
        if "mysql" in item.keywords:
            item.add_marker(skip)


@dataclass
class Backend:
    kind: str
    database_url: str


@pytest.fixture(scope="session")
async def backend(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backend]:
    if BACKEND == "real":
        name = f"xq_test_{uuid.uuid4().hex[:10]}"
        url = await db.create_database(MYSQL_URL, name)
        r = cache.connect(REDIS_URL)
        await r.flushdb()
    else:
        name = ""
        url = f"sqlite://{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        r = cache.connect("memory://")
    os.environ["XQ_DATABASE_URL"] = url
    get_settings.cache_clear()
    await Tortoise.init(config=db.tortoise_config(url), _enable_global_fallback=True)
    await Tortoise.generate_schemas()
    cache.use(r)
    try:
        yield Backend(kind=BACKEND, database_url=url)
    finally:
        await Tortoise.close_connections()
        await r.flushdb()
        await r.aclose()
        if name:
            await db.drop_database(MYSQL_URL, name)


def _tables() -> list[str]:
    return [m._meta.db_table for m in Tortoise.apps["models"].values()]


@pytest.fixture(autouse=True)
async def clean(backend: Backend) -> AsyncIterator[None]:
    conn = connections.get("default")
    if backend.kind == "real":
        await conn.execute_script(
            "SET FOREIGN_KEY_CHECKS=0;"
            + "".join(f"DELETE FROM `{t}`;" for t in _tables())
            + "SET FOREIGN_KEY_CHECKS=1;"
        )
    else:
        await conn.execute_script(
            "PRAGMA foreign_keys=OFF;"
            + "".join(f'DELETE FROM "{t}";' for t in _tables())
            + "PRAGMA foreign_keys=ON;"
        )
    await cache.redis().flushdb()
    scope.forget()
    bookingref.forget()
    yield


@pytest.fixture(autouse=True)
def legacy_staff_scope() -> Iterator[None]:
    """Suites written before the organisation log in as plain ``Role.staff``: in tests only,
    a staff account holding NO membership sees everything, as all staff did then. Every scope
    test gives its people memberships (``api.login(..., hall=...)``), and
    ``tests/unit/test_scope.py`` proves that without this fallback such an account sees
    nothing, which is what production does."""
    scope.unassigned_staff_scope = scope.EVERYTHING
    yield
    scope.unassigned_staff_scope = scope.NOTHING


@pytest.fixture(scope="session")
async def app(backend: Backend) -> AsyncIterator[Sanic]:  # type: ignore[type-arg]
    """The app, started once for the session the way an ASGI server's lifespan starts it.

    sanic-testing's client restarts the app around every request (rebuilding routes and the
    OpenAPI document each time, about a second a request); starting it once and calling it
    through httpx's ASGI transport exercises the same request path at a fraction of the cost.
    """
    Sanic.test_mode = True
    application = create_app(manage_resources=False, name="xiaoqing_test")
    application.asgi = True
    await application._startup()
    await application._server_event("init", "before")
    await application._server_event("init", "after")
    yield application
    await application._server_event("shutdown", "before")
    await application._server_event("shutdown", "after")


@pytest.fixture
def fake_wechat(app: Sanic) -> Iterator[Any]:  # type: ignore[type-arg]
    platform = app.ctx.fake_wechat
    platform.reset()
    platform.refused_openids.clear()
    yield platform


class Reply:
    """The parts of a response tests read, with sanic-testing's names (status, json, text)."""

    def __init__(self, resp: httpx.Response) -> None:
        self.status = resp.status_code
        self.headers = resp.headers
        self.content = resp.content
        self.body = resp.content
        self.text = resp.text
        try:
            self.json: Any = resp.json()
        except ValueError:
            self.json = None


class Api:
    """A thin HTTP client over the app that remembers who is logged in."""

    def __init__(self, app: Sanic) -> None:  # type: ignore[type-arg]
        self.app = app
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                      base_url="http://testserver")

    async def request(self, method: str, path: str, *, token: str | None = None,
                      json: Any = None, headers: dict[str, str] | None = None,
                      data: str | bytes | None = None, **kwargs: Any) -> Reply:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if data is not None:
            kwargs["content"] = data
        elif json is not None:
            kwargs["json"] = json
        resp = await self.http.request(method, path, headers=h, **kwargs)
        return Reply(resp)

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Any:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Any:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Any:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Any:
        return await self.request("DELETE", path, **kw)

    async def login(self, code: str, *roles: Role, hall: str | None = None,
                    position: Position | None = None, department: str | None = None,
                    region: str | None = None) -> Session:
        """Log in through the stub as ``code``; grant ``roles`` directly in the database first
        (granting over the API is tested on its own), so the token carries them.

        ``hall`` (a hall code) makes the account a clerk there (or ``position``, e.g.
        hall_manager / helper); ``department`` (a department name; the city's unless
        ``region`` says) an approver; ``region`` alone (a region code) a supervisor. The
        organisation must be seeded (``seed.run()``)."""
        unit = hall or department or region
        if roles or unit:
            user, _ = await User.get_or_create(openid=self.app.ctx.fake_wechat.openid_for(code))
            for role in roles:
                await UserRole.get_or_create(user=user, role=role)
            if unit:
                await grant_position(user.id, hall=hall, position=position,
                                     department=department, region=region)
        resp = await self.post("/api/v1/auth/wechat-login", json={"code": code})
        assert resp.status == 200, resp.text
        body = resp.json
        return Session(api=self, token=body["access_token"], refresh=body["refresh_token"],
                       user_id=body["user_id"])


async def grant_position(user_id: int, *, hall: str | None = None,
                         position: Position | None = None, department: str | None = None,
                         region: str | None = None) -> None:
    """A membership straight in the database (the admin API is tested on its own)."""
    from models.org import Department
    from services import org

    if hall:
        await org.add_membership(actor=None, user_id=user_id, position=position or Position.clerk,
                                 hall_code=hall)
    elif department:
        dept = await Department.get(name=department, region__code=region or "621000")
        await org.add_membership(actor=None, user_id=user_id,
                                 position=position or Position.approver, department_id=dept.id)
    elif region:
        await org.add_membership(actor=None, user_id=user_id,
                                 position=position or Position.supervisor, region_code=region)


@dataclass
class Session:
    api: Api
    token: str
    refresh: str
    user_id: int

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.api.get(path, token=self.token, **kw)

    async def post(self, path: str, **kw: Any) -> Any:
        return await self.api.post(path, token=self.token, **kw)

    async def put(self, path: str, **kw: Any) -> Any:
        return await self.api.put(path, token=self.token, **kw)

    async def patch(self, path: str, **kw: Any) -> Any:
        return await self.api.patch(path, token=self.token, **kw)

    async def delete(self, path: str, **kw: Any) -> Any:
        return await self.api.delete(path, token=self.token, **kw)

    async def bind_identity(self, name: str, id_number: str) -> Any:
        """Bind the way a resident must: WeChat face verification, with this phone's owner
        declared to the stub platform as the person named (so the face matches). Returns
        ``GET /api/v1/me``."""
        user = await User.get(id=self.user_id)
        self.api.app.ctx.fake_wechat.register_face(user.openid, name=name, id_number=id_number)
        started = await self.post("/api/v1/me/identity/verifications",
                                  json={"name": name, "id_number": id_number})
        assert started.status == 201, started.text
        step = await self.api.post("/_stub/face/verify",
                                   json={"verify_id": started.json["verify_id"]})
        assert step.json["verify_ret"] == 10000, step.text
        done = await self.post(f"/api/v1/me/identity/verifications/{started.json['id']}/finish")
        assert done.status == 200, done.text
        me = await self.get("/api/v1/me")
        assert me.status == 200, me.text
        return me.json


@pytest.fixture
def api(app: Sanic, fake_wechat: Any) -> Api:  # type: ignore[type-arg]
    return Api(app)
