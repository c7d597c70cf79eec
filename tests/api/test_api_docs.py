"""The API's docs: /docs and /redoc work offline.

The pages load nothing from another host (no CDN): every script, style and icon they name
is served by the app itself, with its content type and a long cache.

No database is needed: the app is built on one it never connects to.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.api.app import create_app
from services.api.db import Database
from tests.helpers import settings_for_tests

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
A_YEAR = 365 * 24 * 3600


@pytest.fixture
async def anonymous() -> AsyncIterator[httpx.AsyncClient]:
    """The app with access control on, called without a key."""
    engine = create_async_engine("postgresql+asyncpg://unset/unset", poolclass=NullPool)
    app = create_app(settings_for_tests(), database=Database(engine=engine))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http
    await engine.dispose()


class References(HTMLParser):
    """Every URL a page makes the browser load: script `src`, link `href`, ReDoc's `spec-url`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {"script": "src", "link": "href", "img": "src", "redoc": "spec-url"}
        for name, value in attrs:
            if name == names.get(tag) and value:
                self.urls.append(value)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    # Swagger UI is told its document in its inline script: `url: 'openapi.json'`.
    return parser.urls + re.findall(r"\burl: '([^']*)'", html)


# --- offline docs -----------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_nothing_from_another_host(anonymous: httpx.AsyncClient, page: str) -> None:
    response = await anonymous.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "cdn" not in html.lower() and "http://" not in html and "https://" not in html, html
    urls = references(html)
    assert len(urls) >= 3, urls  # the script, the icon, the document (and Swagger UI's styles)
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from another host"
        assert not url.startswith("/"), f"{url}: relative, so the page works under a proxy's root path too"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_every_asset_of_the_docs_pages_is_served(anonymous: httpx.AsyncClient, page: str) -> None:
    html = (await anonymous.get(page)).text
    for url in references(html):
        path = urlsplit(urljoin(f"http://test{page}", url)).path
        response = await anonymous.get(path)
        assert response.status_code == 200, (page, url, path, response.text[:200])
        assert response.content, path
        if path == "/openapi.json":
            assert response.json()["openapi"].startswith("3.1.")
            continue
        suffix = path[path.rfind(".") :]
        assert response.headers["content-type"].split(";")[0] == CONTENT_TYPES[suffix], (path, response.headers)
        max_age = re.search(r"max-age=(\d+)", response.headers["cache-control"])
        assert max_age and int(max_age.group(1)) >= A_YEAR, (path, response.headers["cache-control"])


async def test_only_the_docs_assets_are_served(anonymous: httpx.AsyncClient) -> None:
    html = (await anonymous.get("/docs")).text
    [script] = [url for url in references(html) if url.endswith("swagger-ui-bundle.js")]
    folder = script.rsplit("/", 1)[0]
    assert (await anonymous.get(f"/{folder}/swagger-ui-bundle.js")).status_code == 200
    for other in ("index.html", "__init__.py", "..%2F__init__.py", "swagger-ui-bundle.js.map"):
        assert (await anonymous.get(f"/{folder}/{other}")).status_code == 404, other
    # Another version's URL is not served: the cached files are never stale.
    assert (await anonymous.get("/docs/assets/0.0.0/swagger-ui-bundle.js")).status_code == 404
