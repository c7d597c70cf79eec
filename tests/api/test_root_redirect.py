"""`GET /` is not a 404: it sends a browser to the console and names the API's docs."""

from __future__ import annotations

import httpx
import pytest

from services.api.app import create_app
from services.api.db import Database
from tests.helpers import settings_for_tests


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_root_redirects_to_the_console_and_names_the_docs(db: Database, method: str) -> None:
    app = create_app(settings_for_tests(), database=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        # Open like /healthz: no key needed.
        response = await http.request(method, "/")
        assert response.status_code == 307, response.text
        assert response.headers["location"] == "/console"
        links = response.headers["link"]
        assert '</docs>; rel="service-doc"' in links
        assert '</openapi.json>; rel="service-desc"' in links
        if method == "GET":
            body = response.json()
            assert body == {"console": "/console", "docs": "/docs", "openapi": "/openapi.json"}
        # A browser that follows it lands on the console (its sign-in page, without a session).
        followed = await http.get("/", follow_redirects=True)
        assert followed.status_code == 200
        assert followed.url.path.startswith("/console")


async def test_root_redirect_keeps_a_proxys_root_path(db: Database) -> None:
    app = create_app(settings_for_tests(), database=db)
    transport = httpx.ASGITransport(app=app, root_path="/agent-variants")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/")
        assert response.status_code == 307
        assert response.headers["location"] == "/agent-variants/console"
        assert '</agent-variants/docs>; rel="service-doc"' in response.headers["link"]
