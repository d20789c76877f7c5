"""The API docs page, served whole by the service itself.

sanic-ext's own page loads Swagger UI 4.10 from a CDN: on the government intranet (政务外网)
it stays blank, and 4.x cannot render the document anyway (it is OpenAPI 3.1). Here the
page and every script and style come from the ``swagger-ui-bundle-v2`` package (Swagger UI
5, which renders 3.1), so the page needs nothing but this service. sanic-ext still builds
``/docs/openapi.json`` and serves ``docs_page.html`` at ``/docs`` (``api/app.py`` says from
which of its slots, and why); this module serves the page's assets.

Everything under ``/docs`` stays out of the document itself (sanic-ext skips its prefix).
The page's Content-Security-Policy allows only this origin, so a future bundle that tried to
fetch from elsewhere would fail loudly in the headless-browser check
(``scripts/docs_browser_check.py``), not quietly in a hall.
"""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, file, raw
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from services.errors import not_found

ASSETS = Path(str(swagger_ui_path))
# "swagger-ui-5.31.0" -> "5.31.0": named on the page (and in its asset URLs, so an upgrade
# is never served from a stale browser cache); the tests check it is 5 or later.
SWAGGER_UI_VERSION = ASSETS.name.removeprefix("swagger-ui-")

# Only what the page loads; nothing else in the package is reachable.
_ASSET_TYPES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

# The bundle checks documents against validator.swagger.io unless told not to. Operations
# are listed collapsed under their tags, models folded: 110 operations stay scannable.
_INIT_JS = """\
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: document.getElementById("swagger-ui").dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""

# The page itself. sanic-ext serves it at /docs from its "redoc" slot: that slot serves any
# HTML file and adds no other route, while its swagger slot would also add an
# oauth2-redirect route that fetches its page from a CDN on every cold request.
PAGE = Path(__file__).with_name("docs_page.html")

bp = Blueprint("docs_ui", url_prefix="/docs")


@bp.get("/assets/<name:str>")
async def asset(_request: Request, name: str) -> HTTPResponse:
    # The files change only with the package version, which the page's asset URLs carry.
    headers = {"Cache-Control": "public, max-age=86400"}
    if name == "init.js":
        return raw(_INIT_JS.encode(), content_type="text/javascript; charset=utf-8",
                   headers=headers)
    content_type = _ASSET_TYPES.get(name)
    if content_type is None:
        raise not_found("文件")
    return await file(ASSETS / name, mime_type=content_type, headers=headers)
