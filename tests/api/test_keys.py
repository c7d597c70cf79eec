"""API keys: create, list, get, revoke; secrets shown once and stored nowhere; the key ring
(read-your-writes, expiry, last use); revisions' attribution; idempotency per key; the
first admin key; the `agent-variants keys` CLI.

Most tests run in-process on the rolled-back database (`client`, `db`, `conn`). The ones
that need commits seen by other connections or processes (first admin key races, the CLI,
logs with SQL logging on) use a live database or a fresh, empty one of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from services.api import migrate
from services.api.access.keyring import KeyRefused, KeyRing
from services.api.app import create_app
from services.api.cli import duration
from services.api.db import Database
from services.api.exceptions import LastAdminKey
from services.api.keys import repository, service, tokens
from services.api.keys.schemas import KeyCreate
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, new_id
from tests.helpers import (
    TEST_KEY_NAME,
    admin_key,
    app_of,
    assert_problem,
    bearer,
    config,
    create_agent,
    every_item,
    problem_params,
    settings_for_tests,
    unique,
)

ROOT = Path(__file__).resolve().parents[2]
KEY_ID = re.compile(r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")
SECRET = re.compile(r"^avk_[A-Za-z0-9]{43}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
FIELDS = {
    "object",
    "id",
    "name",
    "scope",
    "secret",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "environment",
}
_names = itertools.count()


def key_name(prefix: str = "k") -> str:
    """A key name no other test in this run uses (the live database keeps what tests commit)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}-{new_id('api_key')[-6:].lower()}"


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def anonymous(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client on the same app that sends no API key."""
    return httpx.AsyncClient(transport=client._transport, base_url="http://test")


async def create_key(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("name", key_name())
    body.setdefault("scope", "read")
    response = await client.post("/v1/keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def every_key(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return await every_item(client, "/v1/keys")


# ------------------------------------------------------------------------ create, list, get


async def test_create_answers_201_with_the_key_and_its_secret_once(client: httpx.AsyncClient) -> None:
    name = key_name("ci")
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    response = await client.post("/v1/keys", json={"name": name, "scope": "write", "expires_at": expires.isoformat()})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
    key = response.json()
    assert set(key) == FIELDS
    assert key["object"] == "api_key"
    assert KEY_ID.match(key["id"]), key["id"]
    assert response.headers["location"] == f"/v1/keys/{key['id']}"
    assert (key["name"], key["scope"]) == (name, "write")
    assert SECRET.match(key["secret"]), key["secret"]
    assert TIMESTAMP.match(key["created_at"]) and TIMESTAMP.match(key["expires_at"])
    assert parse(key["expires_at"]) == expires
    assert key["last_used_at"] is None and key["revoked_at"] is None


async def test_expires_at_in_any_offset_is_returned_in_utc_and_null_means_never(client: httpx.AsyncClient) -> None:
    key = await create_key(client, expires_at="2099-06-01T12:00:00+02:00")
    assert key["expires_at"] == "2099-06-01T10:00:00.000000Z"
    assert (await create_key(client, expires_at=None))["expires_at"] is None
    assert (await create_key(client))["expires_at"] is None


async def test_two_keys_never_share_a_secret_or_an_id(client: httpx.AsyncClient) -> None:
    keys = [await create_key(client, scope=scope) for scope in ("resolve", "read", "write", "admin")]
    assert len({k["secret"] for k in keys}) == len({k["id"] for k in keys}) == 4
    assert [k["scope"] for k in keys] == ["resolve", "read", "write", "admin"]


async def test_list_and_get_never_show_a_secret(client: httpx.AsyncClient) -> None:
    created = [await create_key(client, scope="read") for _ in range(3)]
    response = await client.get("/v1/keys")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = response.json()
    assert page["object"] == "list"
    listed = {k["id"]: k for k in page["data"]}
    for key in created:
        assert key["secret"] not in response.text
        assert listed[key["id"]] == {**key, "secret": None}
        for ref in (key["id"], key["name"]):
            one = await client.get(f"/v1/keys/{ref}")
            assert one.status_code == 200, one.text
            assert one.headers["cache-control"] == "no-store"
            assert one.json() == {**key, "secret": None}
            assert key["secret"] not in one.text
    assert all(set(k) == FIELDS and k["secret"] is None for k in page["data"])
    assert TEST_KEY_NAME in {k["name"] for k in page["data"]}  # the client's own key, listed too


async def test_the_list_pages_newest_first_without_repeats(client: httpx.AsyncClient) -> None:
    created = [(await create_key(client))["id"] for _ in range(5)]
    seen, after, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"after": after} if after else {})
        page = (await client.get("/v1/keys", params=params)).json()
        pages += 1
        assert len(page["data"]) <= 2
        if page["data"]:
            assert (page["first_id"], page["last_id"]) == (page["data"][0]["id"], page["data"][-1]["id"])
        seen += [k["id"] for k in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    assert seen[:5] == created[::-1]  # newest first
    assert len(seen) == 6 and pages == 3  # and the client's own admin key, oldest
    empty = (await client.get("/v1/keys", params={"after": seen[-1]})).json()
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize(
    "after", ["nope", "agt_01JD0000000000000000000000", "key_01jd0000000000000000000000", "key_", "admin"]
)
async def test_an_after_that_is_not_a_key_id_is_invalid_cursor(client: httpx.AsyncClient, after: str) -> None:
    response = await client.get("/v1/keys", params={"after": after})
    assert_problem(response, 422, "invalid_cursor")
    assert problem_params(response) == {"after"}


@pytest.mark.parametrize("name", ["a", "0", "ci-deploy", "bob@example.com", "v1.2.3", "9lives", "a" * 64, "a-"])
async def test_names_that_are_allowed(client: httpx.AsyncClient, name: str) -> None:
    key = await create_key(client, name=name)
    assert key["name"] == name
    assert (await client.get(f"/v1/keys/{name}")).json()["id"] == key["id"]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Bad",
        "ADMIN",
        "bad_name",
        "key_01JD0000000000000000000000",
        "-lead",
        ".lead",
        "@lead",
        "a" * 65,
        "has space",
        "tab\tin",
        "trailing\n",
        "josé",
        "slash/in",
        "colon:in",
        7,
        None,
    ],
)
async def test_names_that_are_refused_name_the_field(client: httpx.AsyncClient, name: Any) -> None:
    response = await client.post("/v1/keys", json={"name": name, "scope": "read"})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"name"}


async def test_unknown_fields_are_refused(client: httpx.AsyncClient) -> None:
    for field, value in (
        ("secret", "avk_" + "a" * 43),
        ("id", new_id("api_key")),
        ("owner", "bob"),
        ("revoked_at", None),
        ("last_used_at", "2030-01-01T00:00:00Z"),
    ):
        response = await client.post("/v1/keys", json={"name": key_name(), "scope": "read", field: value})
        assert_problem(response, 422, "validation_error")
        assert problem_params(response) == {field}, field
    assert len(await every_key(client)) == 1  # none was made: only the client's own


@pytest.mark.parametrize("scope", ["superuser", "Admin", "", "read ", None, 1, ["read"]])
async def test_an_unknown_scope_is_refused(client: httpx.AsyncClient, scope: Any) -> None:
    response = await client.post("/v1/keys", json={"name": key_name(), "scope": scope})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"scope"}


async def test_name_and_scope_are_required(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/keys", json={})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"name", "scope"}


@pytest.mark.parametrize(
    "expires_at",
    [
        "2020-01-01T00:00:00Z",  # the past
        "five seconds ago",  # made in the test, so the ids stay the same across xdist workers
        "2030-01-01T00:00:00",  # naive: no offset
        "2030-01-01",
        "tomorrow",
        "",
        17179869184,  # a number is not an RFC 3339 string (pydantic read it as seconds since 1970)
        4102444800.5,
        True,
    ],
)
async def test_a_bad_expiry_names_expires_at(client: httpx.AsyncClient, expires_at: object) -> None:
    if expires_at == "five seconds ago":
        expires_at = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    response = await client.post("/v1/keys", json={"name": key_name(), "scope": "read", "expires_at": expires_at})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"expires_at"}


async def test_an_expiry_a_minute_ahead_is_accepted(client: httpx.AsyncClient) -> None:
    """Control for the test above: the same form, in the future, is accepted."""
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    assert (await create_key(client, expires_at=soon))["expires_at"] is not None


async def test_every_bad_field_is_named_at_once(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/keys", json={"name": "Bad_Name", "scope": "root", "expires_at": "2000-01-01T00:00:00Z", "x": 1}
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"name", "scope", "expires_at", "x"}


async def test_an_expiry_beyond_the_last_representable_instant_is_a_422_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    """9999-12-31T23:59:59-01:00 is 10000-01-01T00:59:59Z, past what a timestamp can hold
    here; GET .../resolved?at= refuses the same instant with a 422 naming `at`."""
    response = await client.post(
        "/v1/keys", json={"name": key_name(), "scope": "read", "expires_at": "9999-12-31T23:59:59-01:00"}
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"expires_at"}


async def test_a_taken_name_is_409_even_when_its_key_is_revoked(client: httpx.AsyncClient) -> None:
    key = await create_key(client)
    again = await client.post("/v1/keys", json={"name": key["name"], "scope": "admin"})
    body = assert_problem(again, 409, "key_name_taken")
    assert key["name"] in body["detail"]
    assert (await client.delete(f"/v1/keys/{key['name']}")).status_code == 204
    after_revoke = await client.post("/v1/keys", json={"name": key["name"], "scope": "read"})
    assert_problem(after_revoke, 409, "key_name_taken")
    assert [k["id"] for k in await every_key(client) if k["name"] == key["name"]] == [key["id"]]


@pytest.mark.parametrize("ref", ["nobody", "key_01JD0000000000000000000000"])
async def test_an_unknown_key_is_404(client: httpx.AsyncClient, ref: str) -> None:
    body = assert_problem(await client.get(f"/v1/keys/{ref}"), 404, "resource_missing")
    assert ref in body["detail"]
    assert_problem(await client.delete(f"/v1/keys/{ref}"), 404, "resource_missing")


# --------------------------------------------------------------- using, revoking, expiring


async def test_a_new_key_works_at_once_with_exactly_its_scope(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    resolved = f"/v1/agents/{agent['id']}/resolved"
    new_agent = {"name": unique(), "config": config()}
    async with anonymous(client) as http:
        # Each scope: a route it may call, and the nearest one it may not.
        resolve = bearer((await create_key(client, scope="resolve"))["secret"])
        assert (await http.get(resolved, headers=resolve)).status_code == 200
        assert_problem(await http.get("/v1/agents", headers=resolve), 403, "insufficient_scope")

        read = bearer((await create_key(client, scope="read"))["secret"])
        assert (await http.get(resolved, headers=read)).status_code == 200
        assert (await http.get(f"/v1/agents/{agent['id']}", headers=read)).status_code == 200
        assert_problem(await http.post("/v1/agents", json=new_agent, headers=read), 403, "insufficient_scope")

        write = bearer((await create_key(client, scope="write"))["secret"])
        assert (await http.post("/v1/agents", json=new_agent, headers=write)).status_code == 201
        assert_problem(await http.get("/v1/keys", headers=write), 403, "insufficient_scope")
        assert_problem(
            await http.post("/v1/keys", json={"name": key_name(), "scope": "read"}, headers=write),
            403,
            "insufficient_scope",
        )

        admin = bearer((await create_key(client, scope="admin"))["secret"])
        assert (await http.get("/v1/keys", headers=admin)).status_code == 200
        made = await http.post("/v1/keys", json={"name": key_name(), "scope": "read"}, headers=admin)
        assert made.status_code == 201
        # A key made by the new key works at once as well.
        assert (await http.get("/v1/agents", headers=bearer(made.json()["secret"]))).status_code == 200


async def test_a_forbidden_answer_names_the_scope_needed(client: httpx.AsyncClient) -> None:
    key = await create_key(client, scope="read")
    async with anonymous(client) as http:
        response = await http.get("/v1/keys", headers=bearer(key["secret"]))
    body = assert_problem(response, 403, "insufficient_scope")
    assert key["name"] in body["detail"] and "admin" in body["detail"]
    assert 'scope="admin"' in response.headers["www-authenticate"]


async def test_a_revoked_key_is_refused_at_once_and_revoking_again_is_204(client: httpx.AsyncClient) -> None:
    key = await create_key(client, scope="write")
    async with anonymous(client) as http:
        assert (await http.get("/v1/agents", headers=bearer(key["secret"]))).status_code == 200
        response = await client.delete(f"/v1/keys/{key['name']}")
        assert response.status_code == 204 and response.content == b""
        refused = await http.get("/v1/agents", headers=bearer(key["secret"]))
        body = assert_problem(refused, 401, "unauthorized")
        assert "revoked" in body["detail"] and key["name"] in body["detail"]
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        revoked_at = (await client.get(f"/v1/keys/{key['id']}")).json()["revoked_at"]
        assert revoked_at is not None and TIMESTAMP.match(revoked_at)
        # Idempotent, by name or by id, and the first revocation time is kept.
        assert (await client.delete(f"/v1/keys/{key['name']}")).status_code == 204
        assert (await client.delete(f"/v1/keys/{key['id']}")).status_code == 204
        assert (await client.get(f"/v1/keys/{key['id']}")).json()["revoked_at"] == revoked_at
        assert_problem(await http.get("/v1/agents", headers=bearer(key["secret"])), 401, "unauthorized")


async def test_a_revoked_key_is_refused_on_cached_resolutions_too(client: httpx.AsyncClient) -> None:
    """The gate stands before the resolve cache's fast path: a hit is no way around it."""
    agent = await create_agent(client)
    path = f"/v1/agents/{agent['id']}/resolved"
    key = await create_key(client, scope="resolve")
    async with anonymous(client) as http:
        assert (await http.get(path, headers=bearer(key["secret"]))).status_code == 200
        assert app_of(client).state.resolve_cache.get(agent["id"], PRODUCTION_ENVIRONMENT_ID, False) is not None
        assert (await http.get(path, headers=bearer(key["secret"]))).status_code == 200  # a hit
        assert (await client.delete(f"/v1/keys/{key['id']}")).status_code == 204
        assert (
            app_of(client).state.resolve_cache.get(agent["id"], PRODUCTION_ENVIRONMENT_ID, False) is not None
        )  # still cached
        assert_problem(await http.get(path, headers=bearer(key["secret"])), 401, "unauthorized")
        assert_problem(await http.get(path), 401, "unauthorized")


async def test_revoking_one_key_leaves_the_others_working(client: httpx.AsyncClient) -> None:
    gone, kept = await create_key(client), await create_key(client)
    assert (await client.delete(f"/v1/keys/{gone['id']}")).status_code == 204
    async with anonymous(client) as http:
        assert (await http.get("/v1/agents", headers=bearer(kept["secret"]))).status_code == 200
        assert (await http.get("/v1/agents", headers=bearer(gone["secret"]))).status_code == 401
    assert (await client.get("/v1/keys")).status_code == 200  # and the admin key itself


async def test_the_last_live_admin_key_cannot_be_revoked(client: httpx.AsyncClient, conn: AsyncConnection) -> None:
    """Issue 16, item 10: a key could revoke itself, the last admin key included, leaving no
    way to manage keys but the database. Revoked and expired admin keys do not count."""
    refused = await client.delete(f"/v1/keys/{TEST_KEY_NAME}")  # the only admin key, revoking itself
    body = assert_problem(refused, 409, "last_admin_key")
    assert TEST_KEY_NAME in body["detail"]
    assert (await client.get(f"/v1/keys/{TEST_KEY_NAME}")).json()["revoked_at"] is None  # and it still works
    gone, old = await create_key(client, scope="admin"), await create_key(client, scope="admin")
    assert (await client.delete(f"/v1/keys/{gone['id']}")).status_code == 204
    await conn.execute(
        text("UPDATE api_keys SET expires_at = now() - interval '1 hour' WHERE id = :id"), {"id": old["id"]}
    )
    assert_problem(await client.delete(f"/v1/keys/{TEST_KEY_NAME}"), 409, "last_admin_key")
    # With another live admin key, a key may revoke itself; then that one is the last.
    other = await create_key(client, scope="admin")
    assert (await client.delete(f"/v1/keys/{TEST_KEY_NAME}")).status_code == 204
    async with anonymous(client) as http:
        last = await http.delete(f"/v1/keys/{other['name']}", headers=bearer(other["secret"]))
        assert_problem(last, 409, "last_admin_key")
        # Admin keys already revoked or expired can be revoked (again), as before.
        assert (await http.delete(f"/v1/keys/{old['id']}", headers=bearer(other["secret"]))).status_code == 204
        assert (await http.delete(f"/v1/keys/{gone['id']}", headers=bearer(other["secret"]))).status_code == 204


async def test_a_key_is_refused_once_it_has_expired(client: httpx.AsyncClient) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    key = await create_key(client, expires_at=expires.isoformat())
    async with anonymous(client) as http:
        assert (await http.get("/v1/agents", headers=bearer(key["secret"]))).status_code == 200
        await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
        refused = await http.get("/v1/agents", headers=bearer(key["secret"]))
    body = assert_problem(refused, 401, "unauthorized")
    assert "expired" in body["detail"]
    assert (await client.get(f"/v1/keys/{key['id']}")).json()["revoked_at"] is None  # expired, not revoked


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "avk_" + "a" * 43,
        "Bearer avk_" + "a" * 43,
        "Bearer not-a-key",
    ],
)
async def test_a_missing_or_bad_key_is_401_with_a_bearer_challenge(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with anonymous(client) as http:
        response = await http.get("/v1/keys", headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith('Bearer realm="agent-variants"')


async def test_open_paths_need_no_key(client: httpx.AsyncClient) -> None:
    async with anonymous(client) as http:
        for path in ("/healthz", "/openapi.json", "/docs"):
            assert (await http.get(path)).status_code == 200, path


# ------------------------------------------------------------------------ idempotency


async def test_a_replayed_create_returns_the_same_key_without_its_secret(
    client: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    body = {"name": key_name(), "scope": "read"}
    headers = {"Idempotency-Key": f"create-{key_name()}"}
    first = await client.post("/v1/keys", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    key = first.json()
    assert SECRET.match(key["secret"])
    replay = await client.post("/v1/keys", json=body, headers=headers)
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["location"] == first.headers["location"]
    assert replay.headers["cache-control"] == "no-store"
    assert replay.json() == {**key, "secret": None}
    assert key["secret"] not in replay.text
    # One key was made, and its secret (from the first answer) works.
    assert [k["id"] for k in await every_key(client) if k["name"] == body["name"]] == [key["id"]]
    async with anonymous(client) as http:
        assert (await http.get("/v1/agents", headers=bearer(key["secret"]))).status_code == 200
    # The stored response has the key, without its secret.
    rows = (await conn.execute(text("SELECT key, response_body FROM idempotency_keys"))).all()
    stored = [bytes(row.response_body) for row in rows if row.key.endswith(headers["Idempotency-Key"])]
    assert len(stored) == 1 and key["id"].encode() in stored[0]
    for row in rows:
        assert key["secret"].encode() not in bytes(row.response_body or b"")
        assert key["secret"][4:].encode() not in bytes(row.response_body or b"")
    # The same Idempotency-Key with another body is refused.
    other = await client.post("/v1/keys", json={**body, "scope": "write"}, headers=headers)
    assert_problem(other, 409, "idempotency_key_reused")


async def test_a_replayed_name_conflict_stays_a_conflict(client: httpx.AsyncClient) -> None:
    taken = await create_key(client)
    headers = {"Idempotency-Key": f"dup-{key_name()}"}
    body = {"name": taken["name"], "scope": "read"}
    assert_problem(await client.post("/v1/keys", json=body, headers=headers), 409, "key_name_taken")
    replay = await client.post("/v1/keys", json=body, headers=headers)
    assert_problem(replay, 409, "key_name_taken")
    assert replay.headers["idempotent-replayed"] == "true"


async def test_idempotency_keys_belong_to_each_api_key(client: httpx.AsyncClient, db: Database) -> None:
    """Key B sending the Idempotency-Key key A used, with the same body, makes its own
    object: B is never handed A's response."""
    a = await service.create_key(db, KeyCreate(name=key_name("a"), scope="write"))
    b = await service.create_key(db, KeyCreate(name=key_name("b"), scope="write"))
    body = {"name": unique(), "config": config()}
    idem = {"Idempotency-Key": f"shared-{key_name()}"}
    async with anonymous(client) as http:
        by_a = await http.post("/v1/agents", json=body, headers={**idem, **bearer(a["secret"])})
        by_b = await http.post("/v1/agents", json=body, headers={**idem, **bearer(b["secret"])})
        assert by_a.status_code == by_b.status_code == 201, (by_a.text, by_b.text)
        assert "idempotent-replayed" not in by_b.headers
        assert by_a.json()["id"] != by_b.json()["id"]
        # Each key still replays its own.
        again_a = await http.post("/v1/agents", json=body, headers={**idem, **bearer(a["secret"])})
        again_b = await http.post("/v1/agents", json=body, headers={**idem, **bearer(b["secret"])})
    assert again_a.headers["idempotent-replayed"] == again_b.headers["idempotent-replayed"] == "true"
    assert (again_a.json()["id"], again_b.json()["id"]) == (by_a.json()["id"], by_b.json()["id"])
    revisions = (await client.get(f"/v1/agents/{by_b.json()['id']}/revisions")).json()["data"]
    assert [r["api_key"] for r in revisions] == [b["name"]]


# ------------------------------------------------------------------ secrets stay secret


async def database_text(conn: AsyncConnection) -> dict[str, list[str]]:
    """Every row of every table in schema public, as PostgreSQL writes it as text."""
    tables = (
        (
            await conn.execute(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
                )
            )
        )
        .scalars()
        .all()
    )
    return {
        table: list((await conn.execute(text(f'SELECT t::text FROM public."{table}" t'))).scalars()) for table in tables
    }


def forms_of(secret: str) -> list[str]:
    """The secret as it would show in a row's text: itself, its random part, and as
    bytea hex (how a stored response body would show it)."""
    return [secret, secret[len(tokens.PREFIX) :], secret.encode().hex(), secret[len(tokens.PREFIX) :].encode().hex()]


async def test_no_secret_is_stored_anywhere_in_the_database(
    client: httpx.AsyncClient, db: Database, conn: AsyncConnection
) -> None:
    via_http = (
        await client.post(
            "/v1/keys", json={"name": key_name(), "scope": "write"}, headers={"Idempotency-Key": f"scan-{key_name()}"}
        )
    ).json()
    via_service = await service.create_key(db, KeyCreate(name=key_name(), scope="admin"))
    # Use them: revisions, idempotency rows and last_used_at are written too.
    async with anonymous(client) as http:
        for key in (via_http, via_service):
            response = await http.post(
                "/v1/agents",
                json={"name": unique(), "config": config()},
                headers={**bearer(key["secret"]), "Idempotency-Key": key_name()},
            )
            assert response.status_code == 201, response.text
    await app_of(client).state.key_ring.flush_usage()
    assert (await client.delete(f"/v1/keys/{via_http['id']}")).status_code == 204

    rows = await database_text(conn)
    assert {"api_keys", "idempotency_keys", "revisions", "agents"} <= set(rows)
    everything = "\n".join(line for lines in rows.values() for line in lines)
    for key in (via_http, via_service):
        # Controls: the scan sees the key's row, its digest and the idempotency rows.
        assert key["name"] in everything and key["id"] in everything
        assert hashlib.sha256(key["secret"].encode()).hexdigest() in "\n".join(rows["api_keys"])
        for form in forms_of(key["secret"]):
            leaks = [table for table, lines in rows.items() if any(form.lower() in line.lower() for line in lines)]
            assert leaks == [], f"the secret of {key['name']} is stored in {leaks}"
        stored = await conn.scalar(text("SELECT secret_hash FROM api_keys WHERE id = :id"), {"id": key["id"]})
        assert bytes(stored) == hashlib.sha256(key["secret"].encode()).digest() == tokens.digest(key["secret"])
    assert any(via_http["id"].encode().hex() in line for line in rows["idempotency_keys"])


async def test_no_answer_after_the_first_shows_the_secret(client: httpx.AsyncClient) -> None:
    body = {"name": key_name(), "scope": "read"}
    idem = {"Idempotency-Key": f"later-{key_name()}"}
    first = await client.post("/v1/keys", json=body, headers=idem)
    key = first.json()
    assert key["secret"] in first.text  # control
    async with anonymous(client) as http:
        answers = [
            await client.get("/v1/keys"),
            await client.get("/v1/keys", params={"limit": 1}),
            await client.get(f"/v1/keys/{key['id']}"),
            await client.get(f"/v1/keys/{key['name']}"),
            await client.post("/v1/keys", json=body, headers=idem),
            await client.post("/v1/keys", json=body),  # 409: name taken
            await http.get("/v1/agents", headers=bearer(key["secret"])),
            await http.get("/v1/keys", headers=bearer(key["secret"])),  # 403
            await client.delete(f"/v1/keys/{key['id']}"),
            await client.get(f"/v1/keys/{key['id']}"),
            await http.get("/v1/agents", headers=bearer(key["secret"])),  # 401: revoked
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 201, 409, 200, 403, 204, 200, 401]
    for answer in answers:
        for form in forms_of(key["secret"]):
            assert form not in answer.text
            assert all(form not in value for value in answer.headers.values())


@pytest.mark.live
async def test_no_secret_reaches_the_logs(live_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Everything logged at DEBUG, SQL statements and their parameters included (the
    engine is made after the levels are set, so SQLAlchemy logs every statement)."""
    for name in ["", *list(logging.root.manager.loggerDict)]:
        caplog.set_level(logging.DEBUG, logger=name or None)
    database = Database.from_url(live_url, pool_size=2, max_overflow=0)
    wrong = tokens.new_secret()
    try:
        app = create_app(settings_for_tests(), database=database)
        admin = await admin_key(database, key_name("logs-admin"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            body = {"name": key_name("logs"), "scope": "write"}
            idem = {"Idempotency-Key": key_name("logs-idem"), **bearer(admin)}
            created = await http.post("/v1/keys", json=body, headers=idem)
            assert created.status_code == 201, created.text
            key = created.json()
            assert (await http.post("/v1/keys", json=body, headers=idem)).status_code == 201  # replay
            assert (await http.get("/v1/agents", headers=bearer(key["secret"]))).status_code == 200
            made = await http.post(
                "/v1/agents",
                json={"name": unique(), "config": config()},
                headers={**bearer(key["secret"]), "X-Actor": "logs"},
            )
            assert made.status_code == 201, made.text
            assert (await http.get("/v1/agents", headers=bearer(wrong))).status_code == 401
            assert (await http.get("/v1/agents", headers={"Authorization": wrong})).status_code == 401
            assert (await http.delete(f"/v1/keys/{key['id']}", headers=bearer(admin))).status_code == 204
            assert (await http.get("/v1/agents", headers=bearer(key["secret"]))).status_code == 401
        await app.state.key_ring.flush_usage()
    finally:
        await database.dispose()

    records = caplog.records
    # Control: statements on api_keys were logged, so the scan below looks at real traffic.
    assert any("api_keys" in record.getMessage() for record in records)
    for record in records:
        logged = "\n".join(
            [record.getMessage(), repr(record.args), record.exc_text or "", str(record.msg), repr(record.__dict__)]
        )
        for secret in (key["secret"], admin, wrong):
            for form in forms_of(secret):
                assert form not in logged, f"{record.name} logged a secret: {record.getMessage()[:200]}"


# ------------------------------------------------------------------------ last used


async def test_last_used_at_is_written_by_the_flush_and_never_moves_back(
    client: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    ring: KeyRing = app_of(client).state.key_ring
    await ring.flush_usage()  # the client's own key, used to make keys below, is written now
    key = await create_key(client)
    async with anonymous(client) as http:
        before = datetime.now(UTC)
        assert (await http.get("/v1/agents", headers=bearer(key["secret"]))).status_code == 200
        after = datetime.now(UTC)
        # Noted in memory only, until the flush.
        assert (await client.get(f"/v1/keys/{key['id']}")).json()["last_used_at"] is None
        await ring.flush_usage()
        first = (await client.get(f"/v1/keys/{key['id']}")).json()["last_used_at"]
        assert first is not None and before - timedelta(milliseconds=1) <= parse(first) <= after
        # An older time never overwrites a newer one.
        await repository.record_use(conn, {key["id"]: parse(first) - timedelta(hours=1)})
        assert (await client.get(f"/v1/keys/{key['id']}")).json()["last_used_at"] == first
        # A later use moves it forward.
        await asyncio.sleep(0.01)
        assert (await http.get("/v1/agents", headers=bearer(key["secret"]))).status_code == 200
        await ring.flush_usage()
        second = (await client.get(f"/v1/keys/{key['id']}")).json()["last_used_at"]
        assert parse(second) > parse(first)
        await ring.flush_usage()  # nothing new: nothing changes
        assert (await client.get(f"/v1/keys/{key['id']}")).json()["last_used_at"] == second


async def test_a_refused_key_is_not_recorded_as_used(client: httpx.AsyncClient) -> None:
    ring: KeyRing = app_of(client).state.key_ring
    revoked, expired = (
        await create_key(client),
        await create_key(client, expires_at=(datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()),
    )
    assert (await client.delete(f"/v1/keys/{revoked['id']}")).status_code == 204
    await asyncio.sleep(0.6)
    async with anonymous(client) as http:
        for key in (revoked, expired):
            assert (await http.get("/v1/agents", headers=bearer(key["secret"]))).status_code == 401
    await ring.flush_usage()
    for key in (revoked, expired):
        assert (await client.get(f"/v1/keys/{key['id']}")).json()["last_used_at"] is None
    own = next(k for k in await every_key(client) if k["name"] == TEST_KEY_NAME)
    assert own["last_used_at"] is not None  # control: the admin key's use was recorded


# ------------------------------------------------------------------------ attribution


async def revisions_of(client: httpx.AsyncClient, agent_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/agents/{agent_id}/revisions")
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_revisions_record_the_key_and_the_actor(client: httpx.AsyncClient, db: Database) -> None:
    writer = await service.create_key(db, KeyCreate(name=key_name("x"), scope="write"))
    async with anonymous(client) as http:
        made = await http.post(
            "/v1/agents", json={"name": unique(), "config": config()}, headers=bearer(writer["secret"])
        )
        assert made.status_code == 201, made.text
        agent = made.json()
        patched = await http.patch(
            f"/v1/agents/{agent['id']}",
            json={"description": "by alice"},
            headers={**bearer(writer["secret"]), "X-Actor": "alice"},
        )
        assert patched.status_code == 200, patched.text
    update, create = await revisions_of(client, agent["id"])
    assert (create["action"], create["actor"], create["api_key"]) == ("create", writer["name"], writer["name"])
    assert (update["action"], update["actor"], update["api_key"]) == ("update", "alice", writer["name"])
    # The client's admin key, for comparison: its own name.
    await client.patch(f"/v1/agents/{agent['id']}", json={"description": "by admin"})
    latest = (await revisions_of(client, agent["id"]))[0]
    assert (latest["actor"], latest["api_key"]) == (TEST_KEY_NAME, TEST_KEY_NAME)


async def test_with_auth_disabled_revisions_name_no_key(db: Database) -> None:
    app = create_app(settings_for_tests(auth_disabled=True), database=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        made = await http.post("/v1/agents", json={"name": unique(), "config": config()})
        assert made.status_code == 201, made.text
        agent = made.json()
        patched = await http.patch(f"/v1/agents/{agent['id']}", json={"description": "d"}, headers={"X-Actor": "alice"})
        assert patched.status_code == 200, patched.text
        # A bearer header is ignored: nobody checks it, so nobody is recorded for it.
        ignored = await http.patch(
            f"/v1/agents/{agent['id']}", json={"description": "e"}, headers=bearer(tokens.new_secret())
        )
        assert ignored.status_code == 200, ignored.text
        revisions = await revisions_of(http, agent["id"])
    assert [(r["action"], r["actor"], r["api_key"]) for r in revisions] == [
        ("update", None, None),
        ("update", "alice", None),
        ("create", None, None),
    ]


# ------------------------------------------------------------------------ first admin key


async def test_no_first_admin_key_when_a_key_exists(db: Database, conn: AsyncConnection) -> None:
    await admin_key(db)
    before = await conn.scalar(text("SELECT count(*) FROM api_keys"))
    assert await service.create_first_admin_key(db) is None
    assert await conn.scalar(text("SELECT count(*) FROM api_keys")) == before == 1


@pytest.fixture
async def fresh_url(empty_url: str) -> str:
    """A migrated database of this test's own, with no key at all; dropped after."""
    await migrate.upgrade(empty_url)
    return empty_url


async def key_rows(url: str) -> list[Any]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text("SELECT * FROM api_keys ORDER BY id"))).mappings())
    finally:
        await engine.dispose()


@pytest.mark.live
async def test_processes_starting_together_make_exactly_one_first_admin_key(fresh_url: str) -> None:
    databases = [Database.from_url(fresh_url, pool_size=1, max_overflow=0) for _ in range(5)]
    try:
        results = await asyncio.gather(*(service.create_first_admin_key(db) for db in databases))
        made = [result for result in results if result is not None]
        assert len(made) == 1, results
        rows = await key_rows(fresh_url)
        assert len(rows) == 1
        assert (rows[0]["id"], rows[0]["name"], rows[0]["scope"]) == (made[0]["id"], "admin", "admin")
        assert made[0]["scope"] == "admin" and SECRET.match(made[0]["secret"])
        assert bytes(rows[0]["secret_hash"]) == tokens.digest(made[0]["secret"])
        # It authenticates, as admin.
        ring = KeyRing(lambda: databases[0], listening=False)
        assert (await ring.verify(made[0]["secret"].encode())).scope == "admin"
        # Later starts find it and make none, even once it is revoked (the service refuses
        # to revoke the last admin key, so the row is revoked directly).
        assert await service.create_first_admin_key(databases[1]) is None
        await databases[2].transaction(lambda conn: repository.revoke(conn, made[0]["id"]))
        assert await service.create_first_admin_key(databases[3]) is None
        assert len(await key_rows(fresh_url)) == 1
    finally:
        for db in databases:
            await db.dispose()


@pytest.mark.live
async def test_concurrent_revocations_of_the_last_two_admin_keys_never_both_succeed(fresh_url: str) -> None:
    """Issue 16, item 10: each revocation alone leaves an admin key; both together would
    leave none. Rounds of two concurrent revocations, each through its own connection."""
    databases = [Database.from_url(fresh_url, pool_size=1, max_overflow=0) for _ in range(2)]
    survivor: str | None = None
    try:
        for round_ in range(8):
            pair = [
                (await service.create_key(databases[0], KeyCreate(name=f"admin-{round_}-{n}", scope="admin")))["id"]
                for n in range(2)
            ]
            if survivor is not None:
                await service.revoke_key(databases[0], survivor)  # two others are live: allowed
            results = await asyncio.gather(
                *(service.revoke_key(db, key_id) for db, key_id in zip(databases, pair, strict=True)),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, LastAdminKey)]
            assert len(refused) == 1 and len([r for r in results if isinstance(r, dict)]) == 1, results
            live = [
                row["id"] for row in await key_rows(fresh_url) if row["scope"] == "admin" and row["revoked_at"] is None
            ]
            assert len(live) == 1 and live[0] in pair, (round_, live)
            survivor = live[0]
    finally:
        for db in databases:
            await db.dispose()


# ------------------------------------------------------------------------ the CLI


def cli(url: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "warning", "DATA_DIR": str(tmp_path)}
    env.pop("RATE_LIMITS", None)
    return subprocess.run(
        [sys.executable, "-m", "services.api.cli", "keys", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.live
async def test_the_cli_creates_lists_and_revokes_keys(fresh_url: str, tmp_path: Path) -> None:
    created = cli(
        fresh_url, "create", "--name", "ci-reader", "--scope", "read", "--expires-in", "1h", tmp_path=tmp_path
    )
    assert created.returncode == 0, created.stderr
    lines = created.stdout.strip().splitlines()
    secret = lines[-1]
    assert SECRET.match(secret), created.stdout
    assert secret not in created.stderr
    assert "ci-reader" in created.stdout

    (row,) = await key_rows(fresh_url)
    assert (row["name"], row["scope"]) == ("ci-reader", "read")
    assert bytes(row["secret_hash"]) == tokens.digest(secret)
    lifetime = (row["expires_at"] - row["created_at"]).total_seconds()
    assert 3600 - 60 < lifetime <= 3600 + 60

    database = Database.from_url(fresh_url, pool_size=2, max_overflow=0)
    try:
        app = create_app(settings_for_tests(), database=database)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            assert (await http.get("/v1/agents", headers=bearer(secret))).status_code == 200
            assert (
                await http.post("/v1/agents", json={"name": unique(), "config": config()}, headers=bearer(secret))
            ).status_code == 403  # read only

        listed = cli(fresh_url, "list", tmp_path=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert "ci-reader" in listed.stdout and row["id"] in listed.stdout
        for form in forms_of(secret):
            assert form not in listed.stdout + listed.stderr

        revoked = cli(fresh_url, "revoke", "ci-reader", tmp_path=tmp_path)
        assert revoked.returncode == 0, revoked.stderr
        assert "ci-reader" in revoked.stdout
        (row,) = await key_rows(fresh_url)
        assert row["revoked_at"] is not None
        with pytest.raises(KeyRefused, match="revoked"):
            await KeyRing(lambda: database, listening=False).verify(secret.encode())
        again = cli(fresh_url, "revoke", row["id"], tmp_path=tmp_path)  # by id, and idempotent
        assert again.returncode == 0, again.stderr
    finally:
        await database.dispose()

    missing = cli(fresh_url, "revoke", "missing", tmp_path=tmp_path)
    assert missing.returncode == 1
    assert "missing" in missing.stderr and "not found" in missing.stderr
    assert missing.stdout == ""

    duplicate = cli(fresh_url, "create", "--name", "ci-reader", "--scope", "admin", tmp_path=tmp_path)
    assert duplicate.returncode == 1
    assert "ci-reader" in duplicate.stderr and not SECRET.search(duplicate.stdout)


@pytest.mark.live
async def test_the_cli_refuses_to_revoke_the_last_admin_key(fresh_url: str, tmp_path: Path) -> None:
    created = cli(fresh_url, "create", "--name", "only-admin", "--scope", "admin", tmp_path=tmp_path)
    assert created.returncode == 0, created.stderr
    refused = cli(fresh_url, "revoke", "only-admin", tmp_path=tmp_path)
    assert refused.returncode == 1, refused.stdout
    assert "only-admin" in refused.stderr and "last" in refused.stderr
    (row,) = await key_rows(fresh_url)
    assert row["revoked_at"] is None


@pytest.mark.live
async def test_the_cli_binds_a_key_to_an_environment(fresh_url: str, tmp_path: Path) -> None:
    created = cli(
        fresh_url,
        "create",
        "--name",
        "prod-agent",
        "--scope",
        "resolve",
        "--environment",
        "production",
        tmp_path=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    assert "bound to environment 'production'" in created.stdout
    (row,) = await key_rows(fresh_url)
    assert row["environment_id"] == PRODUCTION_ENVIRONMENT_ID
    listed = cli(fresh_url, "list", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.strip().splitlines()
    assert header.split()[:3] == ["name", "scope", "environment"] and line.split()[:3] == [
        "prod-agent",
        "resolve",
        "production",
    ]
    unknown = cli(
        fresh_url, "create", "--name", "lost", "--scope", "read", "--environment", "nowhere", tmp_path=tmp_path
    )
    assert unknown.returncode == 1 and "nowhere" in unknown.stderr and "not found" in unknown.stderr
    assert len(await key_rows(fresh_url)) == 1


@pytest.mark.live
@pytest.mark.parametrize(
    "args",
    [
        ("create", "--name", "Bad_Name", "--scope", "read"),
        ("create", "--name", "ok", "--scope", "superuser"),
        ("create", "--name", "ok", "--scope", "read", "--expires-in", "0"),
        ("create", "--name", "ok", "--scope", "read", "--expires-in", "soon"),
        ("create", "--scope", "read"),
    ],
)
async def test_the_cli_refuses_bad_arguments_with_exit_2(fresh_url: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    result = cli(fresh_url, *args, tmp_path=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip() and "Traceback" not in result.stderr
    assert await key_rows(fresh_url) == []


@pytest.mark.live
@pytest.mark.parametrize("expires_in", ["3000000d", "99999999999w"])
async def test_the_cli_refuses_an_expiry_too_far_away_with_exit_2(
    fresh_url: str, tmp_path: Path, expires_in: str
) -> None:
    result = cli(fresh_url, "create", "--name", "far", "--scope", "read", "--expires-in", expires_in, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text_", "seconds"),
    [
        ("90s", 90),
        ("45m", 2700),
        ("12h", 43200),
        ("30d", 2592000),
        ("2w", 1209600),
        ("3600", 3600),
        ("1.5h", 5400),
        (" 12H ", 43200),
    ],
)
def test_durations(text_: str, seconds: float) -> None:
    assert duration(text_) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text_", ["0", "0s", "0.0h", "-1", "-1h", "abc", "", "h", "1y", "1 h", "1hm", "1e3"])
def test_durations_refused(text_: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text_)


def test_a_new_secret_has_its_prefix_and_256_random_bits() -> None:
    secrets_ = {tokens.new_secret() for _ in range(200)}
    assert len(secrets_) == 200 and all(SECRET.match(s) for s in secrets_)
    # Every character of the alphabet shows up across them (not a narrower alphabet).
    assert set("".join(s[4:] for s in secrets_)) == set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    )
    assert tokens.digest("avk_x") == hashlib.sha256(b"avk_x").digest() and len(tokens.digest("avk_x")) == 32


@pytest.mark.parametrize("disabled", [True, False])
async def test_auth_disabled_is_explicit_and_warned_at_every_start(
    db: Database, caplog: pytest.LogCaptureFixture, disabled: bool
) -> None:
    app = create_app(settings_for_tests(auth_disabled=disabled), database=db)
    with caplog.at_level(logging.WARNING):
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as anonymous:
                status = (await anonymous.get("/v1/agents")).status_code
    warned = [r for r in caplog.records if "AUTH_DISABLED" in r.getMessage()]
    if disabled:
        assert status == 200 and len(warned) == 1 and warned[0].levelno == logging.WARNING
    else:
        assert status == 401 and warned == []
