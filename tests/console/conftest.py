"""Fixtures for the console's in-process tests: the app on the test's rolled-back
database, and a browser-like client (cookies, form posts, no Authorization header)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from services.api.app import create_app
from services.api.db import Database
from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from services.shared.identifiers import new_id
from tests.helpers import settings_for_tests

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """An httpx client used the way a browser uses the console."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def sign_in(self, secret: str) -> httpx.Response:
        form = await self.http.get("/console/sign-in")
        return await self.http.post("/console/sign-in", data={"csrf": csrf_of(form.text), "key": secret})

    async def page(self, path: str, status: int = 200) -> str:
        response = await self.http.get(path)
        assert response.status_code == status, (path, response.status_code, response.text[:500])
        return response.text

    async def submit(self, path: str, data: dict[str, str], *, from_page: str) -> httpx.Response:
        """POST a form the way the page at `from_page` would (with its CSRF token)."""
        page = await self.page(from_page)
        return await self.http.post(path, data={"csrf": csrf_of(page), **data})


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def make_key(db: Database, scope: str) -> tuple[str, str]:
    """(name, secret) of a new key with that scope."""
    name = f"console-{scope}-{new_id('api_key').lower()[-10:]}"
    key = await keys_service.create_key(db, KeyCreate(name=name, scope=scope))
    return name, key["secret"]


@pytest.fixture
async def browser(db: Database) -> AsyncIterator[Browser]:
    app = create_app(settings_for_tests(), database=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield Browser(http)


@pytest.fixture
async def admin(browser: Browser, db: Database) -> Browser:
    """The browser, signed in with a `write`-and-above (admin) key."""
    _, secret = await make_key(db, "admin")
    response = await browser.sign_in(secret)
    assert response.status_code == 303, response.text
    return browser
