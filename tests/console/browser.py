"""Fixtures and helpers for the console's browser tests: Debian's Chromium (installed when
missing), Playwright driving it, and a real `serve` process on a database of its own.

Playwright never downloads a browser here: it launches `/usr/bin/chromium` (or `$CHROMIUM`).
When that is missing, the session installs Debian's `chromium` package with apt, under a
file lock so that parallel xdist workers do not run apt at the same time.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    async_playwright,
    expect,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.api import embedded
from tests.helpers import config, unique
from tests.system.test_replicas import Server, start, stop, wait_ready

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
INSTALL_LOCK = Path("/tmp/agent-variants-chromium-install.lock")
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", ROOT / ".data" / "screenshots"))
VIEWPORT = ViewportSize(width=1280, height=900)
# Generous: the suite runs these next to the rest of it, on two cores.
TIMEOUT_MS = 15_000


# ------------------------------------------------------------------------------ Chromium


def _works(path: Path) -> bool:
    if not (path.is_file() and os.access(path, os.X_OK)):
        return False
    try:
        run = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0


def ensure_chromium() -> Path:
    """The path of a working Chromium, installing Debian's package when there is none."""
    if _works(CHROMIUM):
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.skip(
            f"{CHROMIUM} is missing and only root can install Debian's chromium package "
            "(run `apt-get install chromium` as root, or set CHROMIUM to a Chromium binary)"
        )
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium package")
    with INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing it right now
        if _works(CHROMIUM):
            return CHROMIUM
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        wait = ["-o", "DPkg::Lock::Timeout=300"]  # another apt (not ours) may hold dpkg's lock for a while
        for command in (
            ["apt-get", *wait, "update"],
            ["apt-get", *wait, "install", "-y", "--no-install-recommends", "chromium"],
        ):
            run = subprocess.run(
                command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900
            )
            if run.returncode != 0:
                pytest.fail(
                    f"`{' '.join(command)}` failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
                )
    if not _works(CHROMIUM):
        pytest.fail(f"Debian's chromium package was installed but {CHROMIUM} does not run")
    return CHROMIUM


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    return ensure_chromium()


@pytest.fixture(scope="session")
async def playwright_driver() -> AsyncIterator[Playwright]:
    async with async_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
async def chromium(playwright_driver: Playwright, chromium_path: Path) -> AsyncIterator[Browser]:
    expect.set_options(timeout=TIMEOUT_MS)
    browser = await playwright_driver.chromium.launch(
        executable_path=str(chromium_path),
        headless=True,
        # Containers have a small /dev/shm; no GPU here.
        args=["--disable-dev-shm-usage", "--disable-gpu"],
    )
    yield browser
    await browser.close()


# -------------------------------------------------------------------------------- server


@dataclass
class Console:
    """The server under test, and an API client with its first admin key."""

    server: Server
    admin_key: str
    api: httpx.AsyncClient  # sends the admin key

    @property
    def url(self) -> str:
        return self.server.url

    async def call(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = await self.api.request(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.text[:1000])
        return response.json() if response.content else None

    async def agent(self, **config_fields: Any) -> dict[str, Any]:
        """A new agent, made through the API, with a name no other test uses."""
        body = {"name": unique("browser"), "config": config(temperature=0.2, **config_fields)}
        return await self.call("POST", "/v1/agents", 201, json=body)

    async def variant(self, agent: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        body = {"variant_name": unique("variant"), "overrides": overrides}
        return await self.call("POST", f"/v1/agents/{agent['id']}/variants", 201, json=body)

    async def key(self, scope: str) -> tuple[str, str]:
        """(name, secret) of a new key with that scope."""
        name = re.sub(r"[^a-z0-9.@-]", "-", unique(f"browser-{scope}").lower())
        made = await self.call("POST", "/v1/keys", 201, json={"name": name, "scope": scope})
        return name, made["secret"]


@pytest.fixture(scope="module")
async def console(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    """A real `serve` process on a fresh database of its own (dropped after the module);
    the admin key it made at its first start."""
    database = f"av_browser_{os.getpid()}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{database}"'))
    log_dir = tmp_path_factory.mktemp("browser")
    server = start("console", embedded.with_database(server_url, database), log_dir, migrate=True)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await wait_ready(http, server)
        secret = (log_dir / "admin-key").read_text().strip()
        async with httpx.AsyncClient(
            base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {secret}"}
        ) as api:
            yield Console(server, secret, api)
    finally:
        stop(server)
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def context(chromium: Browser, console: Console) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) for one test."""
    made = await chromium.new_context(viewport=VIEWPORT, base_url=console.url)
    made.set_default_timeout(TIMEOUT_MS)
    yield made
    await made.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A tab of the test's own profile; the test fails if a page logs an error (a script's,
    or a style or script the Content-Security-Policy blocked)."""
    made = await context.new_page()
    errors = watch(made)
    yield made
    assert not errors, errors


def watch(page: Page) -> list[str]:
    """The page's errors, as they happen: uncaught exceptions and console errors, except the
    browser's note on each 4xx answer (the console answers a refused form with one)."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    return errors


# ------------------------------------------------------------------------------- helpers


async def sign_in(page: Page, secret: str) -> None:
    """Sign in from the sign-in page, as a person would, and land on the agents list."""
    await page.goto("/console/sign-in")
    await page.get_by_label("API key").fill(secret)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/console/agents$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Agents")


async def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG of what the page shows now, as `<SCREENSHOT_DIR>/<name>.png`; and,
    on every page so saved, every form control has a label."""
    assert await unlabelled(page) == [], f"{page.url}: form controls without a label"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def unlabelled(page: Page) -> list[str]:
    """The names of the visible form controls that no label names."""
    return await page.evaluate("""() => [...document.querySelectorAll("input, select, textarea")]
        .filter((e) => e.type !== "hidden" && e.labels.length === 0 && !e.getAttribute("aria-label")
                       && !e.getAttribute("aria-labelledby"))
        .map((e) => e.name || e.id || e.outerHTML.slice(0, 80))""")


async def post_forms(page: Page) -> list[str]:
    """The actions of every form on the page that would POST (whatever its markup's case),
    and of every button that would turn its form into a POST."""
    return await page.evaluate("""() => [
        ...[...document.forms].filter((f) => f.method === "post").map((f) => f.getAttribute("action")),
        ...[...document.querySelectorAll("[formmethod]")].filter((b) => b.formMethod === "post")
            .map((b) => "formmethod:" + (b.getAttribute("formaction") || "")),
    ]""")
