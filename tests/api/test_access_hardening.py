"""Access control where it must fail closed: unknown routes, refused keys in bulk,
unexpected errors in the gate, uses that are not uses, and the first admin key's file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.api import cli, migrate
from services.api.access.gate import FAILURE_LIMIT
from services.api.app import create_app
from services.api.db import Database
from services.api.keys import service
from services.api.keys.schemas import KeyCreate
from services.api.settings import Settings
from tests.helpers import assert_problem, bearer, settings_for_tests

WRONG = "avk_" + "x" * 43


async def key(db: Database, name: str, scope: str) -> str:
    return (await service.create_key(db, KeyCreate(name=name, scope=scope)))["secret"]


@pytest.fixture
async def app_and_http(db: Database) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    app = create_app(settings_for_tests(), database=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield app, http


@pytest.mark.parametrize(
    ("method", "path", "scope", "status"),
    [
        # No route serves these: the path itself decides, never less than its method asks.
        ("POST", "/v1/keys/x/rotate", "write", 403),  # under /v1/keys: admin
        ("POST", "/v1/agents/x/nothing-here", "read", 403),  # a change: write
        ("GET", "/v1/nothing-here", "resolve", 403),  # a read: read
        ("GET", "/v1/nothing-here", "read", 404),
        ("POST", "/v1/agents/x/nothing-here", "write", 404),
    ],
)
async def test_a_path_no_route_serves_fails_closed(app_and_http, db, method, path, scope, status) -> None:
    _, http = app_and_http
    secret = await key(db, f"unrouted-{scope}", scope)
    response = await http.request(method, path, headers=bearer(secret))
    assert response.status_code == status, response.text
    assert (await http.request(method, path)).status_code == 401


async def test_a_client_sending_refused_keys_is_slowed_down_but_good_keys_are_not(app_and_http, db) -> None:
    _, http = app_and_http
    good = await key(db, "good-neighbour", "read")
    statuses = [
        (await http.get("/v1/agents", headers=bearer(WRONG))).status_code for _ in range(FAILURE_LIMIT.burst + 5)
    ]
    assert statuses[: FAILURE_LIMIT.burst] == [401] * FAILURE_LIMIT.burst
    limited = await http.get("/v1/agents", headers=bearer(WRONG))
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    # A key the process holds in memory is checked without the slow path: not held up.
    assert (await http.get("/v1/agents", headers=bearer(good))).status_code == 200


async def test_an_unexpected_error_while_checking_a_key_is_a_problem_document(app_and_http, db) -> None:
    app, http = app_and_http
    ring = app.state.key_ring  # type: ignore[attr-defined]

    async def broken(_secret: bytes) -> None:
        raise RuntimeError("a bug in the key ring")

    ring.invalidate()  # so the request takes the slow path
    ring.verify = broken
    response = await http.get("/v1/agents", headers=bearer(WRONG))
    assert_problem(response, 500, "internal_error")
    assert "a bug" not in response.text


async def test_refused_requests_are_not_uses_of_the_key(app_and_http, db, conn) -> None:
    app, http = app_and_http
    reader = await key(db, "only-reads", "read")
    assert (await http.delete("/v1/agents/nobody", headers=bearer(reader))).status_code == 403
    await app.state.key_ring.flush_usage()  # type: ignore[attr-defined]
    used = await conn.scalar(text("SELECT last_used_at FROM api_keys WHERE name = 'only-reads'"))
    assert used is None
    assert (await http.get("/v1/agents", headers=bearer(reader))).status_code == 200
    await app.state.key_ring.flush_usage()  # type: ignore[attr-defined]
    assert await conn.scalar(text("SELECT last_used_at FROM api_keys WHERE name = 'only-reads'")) is not None


# ------------------------------------------------------------------ the first admin key


async def key_count(url: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT count(*) FROM api_keys"))
    finally:
        await engine.dispose()


@pytest.mark.live
async def test_no_first_admin_key_is_made_where_it_could_not_be_saved(empty_url: str, tmp_path: Path) -> None:
    await migrate.upgrade(empty_url)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        await _in_thread(cli._first_admin_key, empty_url, Settings(database_url=None, data_dir=blocker / "data"))
    assert await key_count(empty_url) == 0  # nobody would ever have seen it

    settings = Settings(database_url=None, data_dir=tmp_path / "data")
    await _in_thread(cli._first_admin_key, empty_url, settings)
    saved = tmp_path / "data" / cli.ADMIN_KEY_FILE
    assert saved.stat().st_mode & 0o777 == 0o600 and saved.read_text().startswith("avk_")
    assert sorted(p.name for p in saved.parent.iterdir()) == [cli.ADMIN_KEY_FILE]  # no leftovers
    assert await key_count(empty_url) == 1
    await _in_thread(cli._first_admin_key, empty_url, settings)  # a second start makes none
    assert await key_count(empty_url) == 1


@pytest.mark.live
async def test_the_keys_cli_refuses_a_database_not_at_head(
    empty_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    code = await _in_thread(cli.main, ["keys", "list"])
    assert code == 1
    assert "agent-variants migrate" in capsys.readouterr().err
    engine = create_async_engine(empty_url, poolclass=NullPool)
    async with engine.connect() as conn:  # and it did not migrate by itself
        assert await migrate.current_revision(conn) is None
    await engine.dispose()


async def _in_thread(function, *args):  # type: ignore[no-untyped-def]
    """The CLI runs its own event loop (asyncio.run), so it cannot run on the test's."""
    import asyncio

    return await asyncio.to_thread(function, *args)


async def test_with_no_key_at_all_the_log_says_how_to_make_one(db, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings_for_tests(), database=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        assert (await http.get("/v1/agents", headers=bearer(WRONG))).status_code == 401
    assert any("No API key exists" in r.getMessage() and "keys create" in r.getMessage() for r in caplog.records)
