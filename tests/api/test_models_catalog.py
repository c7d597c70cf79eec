"""The model catalog (contract 1.1, "Models"): GET /v1/models, GET/PUT/DELETE
/v1/models/{provider}/{name} (names with `/`), who may do what, and the seed from
`genai-prices` (missing models only, once per source, never over an admin's row).

All on the rolled-back database, which `migrate.upgrade` seeded like a real one.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.app import create_app
from services.api.catalog import seed
from services.api.db import Database
from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from services.shared.identifiers import is_id
from tests.helpers import assert_problem, bearer, every_item, problem_params, settings_for_tests, unique

M = "/v1/models"
FIELDS = {
    "object",
    "id",
    "provider",
    "name",
    "context_window",
    "max_output_tokens",
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "source",
    "version",
    "updated_at",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LIMITS = {"context_window": 8192, "max_output_tokens": 2048, "input_usd_per_mtok": 0.15, "output_usd_per_mtok": 0.6}


def provider() -> str:
    """A provider no other test uses (the catalog is shared by the run's tests)."""
    return unique("prov").replace(" ", "-")


# --- CRUD ----------------------------------------------------------------------------------


async def test_put_creates_then_replaces(client: httpx.AsyncClient):
    p = provider()
    created = await client.put(f"{M}/{p}/small-1", json=LIMITS)
    assert created.status_code == 201, created.text
    model = created.json()
    assert set(model) == FIELDS
    assert model["object"] == "model" and is_id("model", model["id"]) and model["id"].startswith("mdl_")
    assert (model["provider"], model["name"], model["source"], model["version"]) == (p, "small-1", "api", 1)
    assert {key: model[key] for key in LIMITS} == LIMITS
    assert TIMESTAMP.match(model["updated_at"])
    assert created.headers["location"] == f"{M}/{p}/small-1"
    assert created.headers["etag"] == '"1"'

    replaced = await client.put(f"{M}/{p}/small-1", json={"max_output_tokens": 4096})
    assert replaced.status_code == 200, replaced.text
    after = replaced.json()
    assert after["id"] == model["id"] and after["version"] == 2
    # A PUT replaces: what it leaves out is unknown now.
    assert (after["context_window"], after["max_output_tokens"], after["input_usd_per_mtok"]) == (None, 4096, None)
    got = await client.get(f"{M}/{p}/small-1")
    assert got.status_code == 200 and got.json() == after and got.headers["etag"] == '"2"'
    assert (await client.get(f"{M}/{p}/small-1", headers={"If-None-Match": '"2"'})).status_code == 304


async def test_a_put_that_changes_nothing_bumps_nothing(client: httpx.AsyncClient):
    p = provider()
    first = (await client.put(f"{M}/{p}/m", json=LIMITS)).json()
    again = await client.put(f"{M}/{p}/m", json=LIMITS)
    assert again.status_code == 200 and again.json() == first


async def test_names_may_hold_slashes(client: httpx.AsyncClient):
    p = provider()
    path = f"{M}/{p}/meta-llama/Llama-3.1-8B-Instruct"
    created = await client.put(path, json={"context_window": 131072})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert created.headers["location"] == path
    assert (await client.get(path)).json()["context_window"] == 131072
    # An escaped slash is the same name.
    assert (await client.get(f"{M}/{p}/meta-llama%2FLlama-3.1-8B-Instruct")).status_code == 200
    assert (await client.get(f"{M}/{p}/meta-llama")).status_code == 404
    assert (await client.delete(path)).status_code == 204
    assert_problem(await client.get(path), 404, "resource_missing")


async def test_delete_and_404(client: httpx.AsyncClient):
    p = provider()
    await client.put(f"{M}/{p}/gone", json=LIMITS)
    assert (await client.delete(f"{M}/{p}/gone")).status_code == 204
    body = assert_problem(await client.get(f"{M}/{p}/gone"), 404, "resource_missing")
    assert body["detail"] == f"Model '{p}/gone' not found"
    assert_problem(await client.delete(f"{M}/{p}/gone"), 404, "resource_missing")


async def test_if_match_on_put_and_delete(client: httpx.AsyncClient):
    p = provider()
    assert_problem(await client.put(f"{M}/{p}/m", json=LIMITS, headers={"If-Match": "*"}), 412, "precondition_failed")
    await client.put(f"{M}/{p}/m", json=LIMITS)
    assert_problem(await client.put(f"{M}/{p}/m", json={}, headers={"If-Match": '"7"'}), 412, "precondition_failed")
    assert (await client.put(f"{M}/{p}/m", json={}, headers={"If-Match": '"1"'})).status_code == 200
    assert_problem(await client.delete(f"{M}/{p}/m", headers={"If-Match": '"1"'}), 412, "precondition_failed")
    assert (await client.delete(f"{M}/{p}/m", headers={"If-Match": '"2"'})).status_code == 204


@pytest.mark.parametrize("bad", ["OpenAI", "-x", "a b", "x" * 65, "open/ai", "_x"])
async def test_a_bad_provider_is_422(client: httpx.AsyncClient, bad: str):
    response = await client.put(f"{M}/{bad}/m", json=LIMITS)
    if "/" in bad:  # read as provider "open" and name "ai/m": a valid pair
        assert response.status_code == 201
        return
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"provider"}


async def test_every_bad_field_is_named(client: httpx.AsyncClient):
    response = await client.put(
        f"{M}/{provider()}/m",
        json={
            "context_window": 0,
            "max_output_tokens": True,
            "input_usd_per_mtok": -1,
            "output_usd_per_mtok": "0.6",
            "name": "other",
        },
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {
        "context_window",
        "max_output_tokens",
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "name",
    }


async def test_the_list_pages_newest_first_and_filters_by_provider(client: httpx.AsyncClient):
    p = provider()
    made = [(await client.put(f"{M}/{p}/m{i}", json=LIMITS)).json() for i in range(5)]
    page = (await client.get(M, params={"provider": p, "limit": 2})).json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [m["id"] for m in page["data"]] == [made[4]["id"], made[3]["id"]]
    assert (page["first_id"], page["last_id"]) == (made[4]["id"], made[3]["id"])
    everything = await every_item(client, M, provider=p)
    assert [m["name"] for m in everything] == ["m4", "m3", "m2", "m1", "m0"]
    assert_problem(await client.get(M, params={"after": "agt_01JDQ3V0Y8K2M4N6P8R0S2T4V6"}), 422, "invalid_cursor")
    assert_problem(await client.get(M, params={"provider": "Bad!"}), 422, "validation_error")


# --- scopes --------------------------------------------------------------------------------


async def test_reads_need_read_and_writes_need_admin(db: Database):
    app = create_app(settings_for_tests(), database=db)
    keys = {
        scope: (await keys_service.create_key(db, KeyCreate(name=f"models-{scope}", scope=scope)))["secret"]
        for scope in ("resolve", "read", "write", "admin")
    }
    p = provider()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:

        async def as_(scope: str, method: str, path: str, body: Any = None) -> httpx.Response:
            return await http.request(method, path, json=body, headers=bearer(keys[scope]))

        assert (await as_("admin", "PUT", f"{M}/{p}/a/b", LIMITS)).status_code == 201
        assert_problem(await as_("resolve", "GET", M), 403, "insufficient_scope")
        assert_problem(await as_("resolve", "GET", f"{M}/{p}/a/b"), 403, "insufficient_scope")
        for scope in ("read", "write", "admin"):
            assert (await as_(scope, "GET", M)).status_code == 200
            assert (await as_(scope, "GET", f"{M}/{p}/a/b")).status_code == 200
        for scope in ("resolve", "read", "write"):
            body = assert_problem(await as_(scope, "PUT", f"{M}/{p}/a/b", LIMITS), 403, "insufficient_scope")
            assert "admin" in body["detail"]
            assert_problem(await as_(scope, "DELETE", f"{M}/{p}/a/b"), 403, "insufficient_scope")
        assert (await as_("admin", "DELETE", f"{M}/{p}/a/b")).status_code == 204


# --- the seed ------------------------------------------------------------------------------


async def test_the_database_is_seeded_from_genai_prices(client: httpx.AsyncClient, conn: AsyncConnection):
    source = seed.package_source()
    assert re.fullmatch(r"genai-prices \d+\.\d+\.\d+ \(prices of \d{4}-\d\d-\d\d\)", source)
    recorded = (await conn.execute(text("SELECT inserted FROM model_seeds WHERE source = :s"), {"s": source})).one()
    assert recorded.inserted > 1000
    model = (await client.get(f"{M}/openai/gpt-4o")).json()
    assert model["source"] == source
    assert model["context_window"] == 128000
    assert (model["input_usd_per_mtok"], model["output_usd_per_mtok"]) == (2.5, 10)
    assert model["max_output_tokens"] is None  # the package gives no output limits
    # Exact in the database, as the package has them.
    stored = await conn.scalar(
        text("SELECT input_usd_per_mtok FROM models WHERE provider = 'openai' AND name = 'gpt-4o'")
    )
    assert stored == Decimal("2.5")


async def test_the_seed_inserts_missing_models_only_and_never_overwrites(
    client: httpx.AsyncClient, conn: AsyncConnection
):
    p = provider()
    await client.put(f"{M}/{p}/kept", json={"max_output_tokens": 100})
    await client.put(f"{M}/{p}/deleted", json=LIMITS)
    await client.delete(f"{M}/{p}/deleted")
    rows = [
        seed.SeedModel(p, "kept", context_window=9, max_output_tokens=9, input_usd_per_mtok=Decimal(9)),
        seed.SeedModel(p, "new/one", context_window=4096, input_usd_per_mtok=Decimal("0.1")),
        seed.SeedModel(p, "deleted", context_window=4096),
    ]
    assert await seed.seed(conn, source="test-source 1 (2026-12-06)", models=lambda: rows) == 2
    kept = (await client.get(f"{M}/{p}/kept")).json()
    assert (kept["source"], kept["context_window"], kept["max_output_tokens"], kept["version"]) == ("api", None, 100, 1)
    new = (await client.get(f"{M}/{p}/new/one")).json()
    assert (new["source"], new["context_window"], new["input_usd_per_mtok"]) == (
        "test-source 1 (2026-12-06)",
        4096,
        0.1,
    )
    # A source seeds once: what an admin deletes afterwards stays deleted, and the data is not even read.
    assert (await client.delete(f"{M}/{p}/new/one")).status_code == 204

    def unread() -> list[seed.SeedModel]:
        raise AssertionError("a source seeded before is not read again")

    assert await seed.seed(conn, source="test-source 1 (2026-12-06)", models=unread) is None
    assert (await client.get(f"{M}/{p}/new/one")).status_code == 404
    # The installed package's source was seeded by the migration already.
    assert await seed.seed_from_package(conn) is None


def test_the_package_gives_models_that_fit_the_catalog():
    models = seed.package_models()
    assert len(models) > 1000
    assert len({(m.provider, m.name) for m in models}) == len(models)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", m.provider) for m in models)
    assert all(1 <= len(m.name) <= 256 for m in models)
    priced = [m for m in models if m.input_usd_per_mtok is not None]
    assert len(priced) > 1000 and all(isinstance(m.input_usd_per_mtok, Decimal) for m in priced)
