"""Time travel: `GET /resolved?at=` answers what `/resolved` returned at that instant.

Instants are read from the clock between steps (the database runs on the same host, and a
revision's `created_at` is read while its change is being made), and from revisions'
own `created_at` to check the inclusive comparison to the microsecond.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.revisions import repository
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID as PROD
from tests.api.history_support import all_revisions, newest_revision
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params

SPAN = 10_000
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # revisions inserted for the performance property


def iso(at: datetime) -> str:
    return at.isoformat()


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    response = await response
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


async def resolved(client: httpx.AsyncClient, agent: str, at: datetime | str | None = None) -> dict[str, Any]:
    params = {} if at is None else {"at": at if isinstance(at, str) else iso(at)}
    return await ok(client.get(f"/v1/agents/{agent}/resolved", params=params))


async def test_at_answers_what_resolved_returned_at_each_step(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, config=config(max_tokens=100, system_prompt="base"))
    aid = agent["id"]
    base = f"/v1/agents/{aid}/variants"
    seen: list[tuple[datetime, dict[str, Any]]] = []

    async def record() -> None:
        seen.append((datetime.now(UTC), await resolved(client, aid)))

    await record()
    await ok(client.patch(f"/v1/agents/{aid}", json={"config": {"temperature": 0.3, "system_prompt": "v2"}}))
    await record()
    a = await create_variant(client, aid, slug="a", overrides={"max_tokens": 50})
    b = await create_variant(client, aid, slug="b", overrides={"system_prompt": "from b"})
    await record()
    await ok(client.post(f"{base}/a/activate"))
    await record()
    await ok(client.patch(f"{base}/a", json={"overrides": {"temperature": 1.5, "max_tokens": None}}))
    await record()
    await ok(client.patch(f"{base}/a", json={"slug": "a-renamed"}))
    await record()
    await ok(client.patch(f"/v1/agents/{aid}", json={"slug": agent["slug"] + "-moved", "config": {"max_retries": 6}}))
    await record()
    await ok(client.post(f"{base}/{b['id']}/activate"))
    await record()
    await ok(client.post(f"{base}/{b['id']}/deactivate"))
    await record()
    await ok(client.delete(f"{base}/{b['id']}"), 204)
    await record()
    await ok(client.post(f"{base}/{a['id']}/activate"))
    await record()
    await ok(client.post(f"/v1/agents/{aid}/undo"))  # a inactive again
    await record()
    await ok(client.post(f"/v1/agents/{aid}/undo"))  # b back, inactive
    await record()
    await ok(client.post(f"/v1/agents/{aid}/undo"))  # b active again
    await record()
    await ok(
        client.post(
            f"{base}/{b['id']}/restore",
            json={"revision_id": (await all_revisions(client, aid, target_id=b["id"]))[-1]["id"]},
        )
    )
    await record()

    # The steps really moved resolution around (else the check below would prove little).
    assert (
        len(
            {
                (
                    body["variant_slug"],
                    body["agent_slug"],
                    body["temperature"],
                    body["system_prompt"],
                    body["max_tokens"],
                )
                for _, body in seen
            }
        )
        >= 8
    )
    assert {body["variant_id"] for _, body in seen} == {None, a["id"], b["id"]}
    for at, body in seen:
        assert await resolved(client, aid, at) == body, at
    # By slug too: the agent's slug of today names it, whatever its slug was then.
    assert await resolved(client, agent["slug"] + "-moved", seen[0][0]) == seen[0][1]


async def test_at_compares_with_created_at_inclusively(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    aid = agent["id"]
    creation = await newest_revision(client, aid)
    created_at = parse(creation["created_at"])
    first = await resolved(client, aid)
    v = await create_variant(client, aid, overrides={"temperature": 0.4})
    await ok(client.post(f"/v1/agents/{aid}/variants/{v['id']}/activate"))
    activation = await newest_revision(client, aid)
    active = await resolved(client, aid)
    assert active["variant_id"] == v["id"]

    tick = timedelta(microseconds=1)
    assert_problem(
        await client.get(f"/v1/agents/{aid}/resolved", params={"at": iso(created_at - tick)}), 404, "resource_missing"
    )
    assert await resolved(client, aid, created_at) == first
    assert await resolved(client, aid, creation["created_at"]) == first  # the `Z` form as returned
    at = parse(activation["created_at"])
    assert await resolved(client, aid, at - tick) == first
    assert await resolved(client, aid, at) == active


async def test_before_the_agent_existed_is_404(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}/resolved", params={"at": "2001-01-01T00:00:00Z"})
    body = assert_problem(response, 404, "resource_missing")
    assert agent["id"] in body["detail"]
    response = await client.get("/v1/agents/no-such-agent/resolved", params={"at": iso(datetime.now(UTC))})
    assert_problem(response, 404, "resource_missing")


async def test_other_offsets_name_the_same_instant(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"], overrides={"max_retries": 8})
    before = datetime.now(UTC)
    await ok(client.post(f"/v1/agents/{agent['id']}/variants/{v['id']}/activate"))
    after = datetime.now(UTC)
    plus_two, minus_five = timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))
    for zone in (plus_two, minus_five):
        old = await resolved(client, agent["id"], before.astimezone(zone).isoformat())
        new = await resolved(client, agent["id"], after.astimezone(zone).isoformat())
        assert (old["variant_id"], old["max_retries"]) == (None, 2)
        assert (new["variant_id"], new["max_retries"]) == (v["id"], 8)


@pytest.mark.parametrize("other", [{"variant": "x"}, {"subject": "user-1"}])
async def test_at_with_variant_or_subject_is_422(client: httpx.AsyncClient, other: dict[str, str]) -> None:
    agent = await create_agent(client)
    await create_variant(client, agent["id"], slug="x")
    params = {"at": iso(datetime.now(UTC)), **other}
    response = await client.get(f"/v1/agents/{agent['id']}/resolved", params=params)
    assert_problem(response, 422, "validation_error")
    assert "at" in problem_params(response)


@pytest.mark.parametrize("at", ["2026-01-01T10:00:00", "2026-01-01 10:00:00", "yesterday", "2026-13-01T00:00:00Z"])
async def test_at_without_offset_or_not_a_time_is_422(client: httpx.AsyncClient, at: str) -> None:
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}/resolved", params={"at": at})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"at"}


async def test_at_with_explain_names_where_values_came_from(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"], overrides={"temperature": 0.1})
    await ok(client.post(f"/v1/agents/{agent['id']}/variants/{v['id']}/activate"))
    now = datetime.now(UTC)
    body = await ok(client.get(f"/v1/agents/{agent['id']}/resolved", params={"at": iso(now), "explain": "true"}))
    assert body["provenance"]["temperature"] == "variant"
    assert body["provenance"]["max_tokens"] == "agent"
    assert body == await ok(client.get(f"/v1/agents/{agent['id']}/resolved", params={"explain": "true"}))


# ---------------------------------------------------------------- a long history


INSERT_HISTORY = text("""
INSERT INTO revisions (
    id, agent_id, target, target_id, action, active_variant_id, active_variants, before, after, created_at
)
SELECT
    id,
    CAST(:agent AS text),
    CASE WHEN i % 2500 = 0 THEN 'agent' ELSE 'variant' END,
    CASE WHEN i % 2500 = 0 THEN CAST(:agent AS text) ELSE CAST(:variant AS text) END,
    'update',
    CAST(:variant AS text),
    jsonb_build_object(CAST(:production AS text), CAST(:variant AS text)),
    NULL,
    CASE WHEN i % 2500 = 0
        THEN CAST(:agent_json AS jsonb)
             || jsonb_build_object('config', CAST(:agent_json AS jsonb) -> 'config'
                                             || jsonb_build_object('temperature', i / 10000.0))
        ELSE CAST(:variant_json AS jsonb) || jsonb_build_object('overrides', jsonb_build_object('max_tokens', 100 + i))
    END,
    CAST(:start AS timestamptz) + i * interval '1 second'
FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS numbered(id, i)
""")


def revision_id_at(at: datetime) -> str:
    """A revision id whose ULID carries the time `at`, as ids made then would."""
    value = (int(at.timestamp() * 1000) << 80) | int.from_bytes(os.urandom(10), "big") >> 1
    return "rev_" + "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every plan node that reads a relation, depth first."""
    found = [plan] if "Relation Name" in plan else []
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def test_a_long_history_is_answered_by_index_lookups(client: httpx.AsyncClient, conn: AsyncConnection) -> None:
    agent = await create_agent(client, config=config(max_tokens=100))
    aid = agent["id"]
    v = await create_variant(client, aid, overrides={"max_tokens": 1})
    await ok(client.post(f"/v1/agents/{aid}/variants/{v['id']}/activate"))
    agent_now = await ok(client.get(f"/v1/agents/{aid}"))
    v_now = await ok(client.get(f"/v1/agents/{aid}/variants/{v['id']}"))
    # The history so far moves a day back; ten thousand revisions follow it, a second apart.
    start = datetime.now(UTC) - timedelta(days=1)
    await conn.execute(
        text("UPDATE revisions SET created_at = created_at - interval '1 day' - interval '1 hour' WHERE agent_id = :a"),
        {"a": aid},
    )
    ids = [revision_id_at(start + timedelta(seconds=i)) for i in range(1, SPAN + 1)]
    await conn.execute(
        INSERT_HISTORY,
        {
            "agent": aid,
            "variant": v["id"],
            "agent_json": json.dumps(agent_now),
            "production": PROD,
            "variant_json": json.dumps(v_now),
            "start": start,
            "ids": ids,
        },
    )
    await conn.execute(text("ANALYZE revisions"))
    assert await conn.scalar(text("SELECT count(*) FROM revisions WHERE agent_id = :a"), {"a": aid}) == SPAN + 3

    # In the middle: the newest agent revision is i = 5000, the variant's i = 7499.
    middle = start + timedelta(seconds=7499, milliseconds=500)
    body = await resolved(client, aid, middle)
    assert (body["variant_id"], body["temperature"], body["max_tokens"]) == (v["id"], 0.5, 100 + 7499)
    assert body["agent_slug"] == agent["slug"] and body["variant_slug"] == v["slug"]
    before_history = await resolved(client, aid, start)
    assert (before_history["temperature"], before_history["max_tokens"]) == (1.0, 1)

    # The statements state_at runs, as it runs them: each must be an index lookup.
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    sync = conn.sync_connection
    assert sync is not None
    event.listen(sync, "before_cursor_execute", capture)
    try:
        state = await repository.state_at(conn, aid, middle, environment_id=PROD)
    finally:
        event.remove(sync, "before_cursor_execute", capture)
    assert state is not None and state["variant"]["overrides"] == {"max_tokens": 100 + 7499}
    assert statements
    reads = []
    for statement, parameters in statements:
        explained = await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
        plan = explained.scalar_one()[0]["Plan"]
        reads += [(statement, node) for node in scans(plan) if node["Relation Name"] == "revisions"]
    # Four lookups: the agent's own newest revision, the newest of any target, the variant's,
    # the environment's rule set's.
    assert len(reads) == 4, reads
    for statement, node in reads:
        assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (statement, node)
        # One lookup, not a replay: the scan stops at the first matching entry instead
        # of filtering its way back through the history.
        assert node.get("Rows Removed by Filter", 0) <= 10, (statement, node)
        assert node["Actual Rows"] <= 2, (statement, node)


async def test_at_the_timestamps_an_object_shows_sees_that_change(client):
    """The instant a change stamps on its objects is the instant its revision records."""
    agent = await create_agent(client)
    at_creation = await client.get(f"/v1/agents/{agent['id']}/resolved", params={"at": agent["created_at"]})
    assert at_creation.status_code == 200, at_creation.text
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.3})
    activated = (await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")).json()
    assert activated["activated_at"] == activated["updated_at"]
    at_activation = await client.get(f"/v1/agents/{agent['id']}/resolved", params={"at": activated["activated_at"]})
    assert at_activation.json()["variant_id"] == variant["id"]
    patched = (await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"max_retries": 7}})).json()
    at_patch = await client.get(f"/v1/agents/{agent['id']}/resolved", params={"at": patched["updated_at"]})
    assert at_patch.json()["max_retries"] == 7
    revisions = (await client.get(f"/v1/agents/{agent['id']}/revisions")).json()["data"]
    assert revisions[0]["created_at"] == patched["updated_at"]


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+01:00"])
async def test_an_instant_outside_the_calendar_is_422_not_500(client, at):
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}/resolved", params={"at": at})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"at"}
