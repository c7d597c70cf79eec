"""The interactive API docs, `/docs` (Swagger UI) and `/redoc` (ReDoc), served whole by the service.

Their scripts and styles come from the `fastapi-offline` package (its `static/` folder holds
Swagger UI 5, which reads OpenAPI 3.1, and ReDoc 2); we serve its files, not its app. So
the docs work offline, like the console, and load nothing from another host.

Every URL in the pages is relative (`openapi.json`, `docs/assets/...`), so they also work
under a proxy's root path, and each page is the same bytes for every request: built once,
its content security policy (`security_headers.docs_policy`) naming the hash of its one
inline script. Asset URLs carry the package's version, so browsers may keep them a year:
an upgrade changes the URLs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import metadata, resources

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from services.api.exceptions import NotFound
from services.api.security_headers import docs_policy

TITLE = "agent-variants"
ASSETS_PACKAGE = "fastapi_offline"
VERSION = metadata.version("fastapi-offline")
# The files the pages load, with their media types; nothing else is served from the package.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
ASSET_CACHE = "public, max-age=31536000, immutable"  # a year: the version is in the URL
# Relative to /docs and /redoc (which sit at the root), so under a root path too.
ASSETS_URL = f"docs/assets/{VERSION}"
SWAGGER_UI_PARAMETERS = {
    "validatorUrl": None,  # no badge fetched from swagger.io's validator
    "persistAuthorization": True,  # the bearer key survives a reload
    "tryItOutEnabled": True,
}

router = APIRouter(include_in_schema=False)


def _inline_scripts(html: str) -> list[str]:
    """The text of each `<script>` without `src`, as the browser hashes it."""
    return re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _page(response: HTMLResponse, *, inline_styles: bool = False) -> tuple[str, str]:
    """The page and its policy: its own inline scripts by hash, everything else from here."""
    html = bytes(response.body).decode()
    hashes = [_sha256(script) for script in _inline_scripts(html)]
    return html, docs_policy(script_hashes=hashes, inline_styles=inline_styles)


def _answer(page: tuple[str, str]) -> HTMLResponse:
    html, policy = page
    return HTMLResponse(html, headers={"Content-Security-Policy": policy, "Cache-Control": "no-cache"})


@cache
def swagger_ui_page() -> tuple[str, str]:
    return _page(
        get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{TITLE} - API docs",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
    )


@cache
def redoc_page() -> tuple[str, str]:
    # ReDoc styles itself with <style> elements it writes at run time (styled-components).
    return _page(
        get_redoc_html(
            openapi_url="openapi.json",
            title=f"{TITLE} - API reference",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        ),
        inline_styles=True,
    )


@router.get("/docs")
async def swagger_ui() -> Response:
    return _answer(swagger_ui_page())


@router.get("/redoc")
async def redoc() -> Response:
    return _answer(redoc_page())


@router.get("/docs/assets/{version}/{asset}")
async def asset_file(version: str, asset: str) -> Response:
    if version != VERSION or asset not in ASSETS:
        raise NotFound("File", f"{version}/{asset}")
    return Response(_read(asset), media_type=ASSETS[asset], headers={"Cache-Control": ASSET_CACHE})


@cache
def _read(name: str) -> bytes:
    """Read once per process: the files are a few MB together and never change while it runs."""
    return (resources.files(ASSETS_PACKAGE) / "static" / name).read_bytes()
