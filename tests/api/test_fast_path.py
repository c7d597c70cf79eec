"""The resolve fast path (`services/api/resolution/fast_path.py`) answers exactly as the
stack behind it would: the same status, body and headers for any query, key and state, a
hit and a miss alike; it takes one rate-limit token per request, hands every case it does
not answer to the stack unchanged, and leaves browsers' requests to CORS when CORS is on.

"The stack" is `app.front.app`: the same app, the same cache and keys, without the fast
path in front (the access log, the gate, FastAPI's route)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.app import create_app
from services.api.db import Database
from services.api.resolution.fast_path import ResolveFastPath, parse_query
from tests.api.test_resolve_cache import counting
from tests.helpers import admin_key, bearer, config, create_agent, create_variant, settings_for_tests


def answer(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """What a client sees: status, body, headers (in any order)."""
    return response.status_code, response.content, sorted(response.headers.multi_items())


@pytest.fixture
async def pair(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of the whole app and of its stack without the fast path, one key, one cache."""
    app = create_app(settings_for_tests(), database=db)
    front = app.front  # type: ignore[attr-defined]
    assert isinstance(front, ResolveFastPath)
    headers = bearer(await admin_key(db))

    def client(asgi: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://test", headers=headers)

    async with client(app) as whole, client(front.app) as stack:
        yield whole, stack


async def running_experiment(client: httpx.AsyncClient) -> dict[str, Any]:
    agent = await create_agent(client, config=config(system_prompt="base"))
    a = await create_variant(client, agent["id"], overrides={"prompt_version": "a"})
    b = await create_variant(client, agent["id"], overrides={"prompt_version": "b"})
    await client.post(f"/v1/agents/{agent['id']}/variants/{a['id']}/activate")
    arms = [{"variant": "live", "weight": 1}, {"variant": b["id"], "weight": 3}]
    made = await client.post(f"/v1/agents/{agent['id']}/experiments", json={"name": "split", "arms": arms})
    started = await client.post(f"/v1/agents/{agent['id']}/experiments/{made.json()['id']}/start")
    assert started.status_code == 200, started.text
    return agent


QUERIES = [
    "",
    "explain=true",
    "explain=0",
    "subject=user-1",
    "subject=user-1&explain=1",
    "explain=true&subject=user%202",
    "subject=caf%C3%A9+au+lait",
    "subject=",
    "subject=a&subject=b",
    "explain=yes",
    "explain",
    "subject=" + "s" * 257,
    "subject=" + "s" * 256,
    "variant=base",
    "unknown=1",
    "subject=x&variant=base",
    # Contract 1.1: environments and attributes.
    "environment=production",
    "environment=env_00000000000000000000000000&subject=user-1",
    "environment=staging&subject=user-1",  # unknown here: 404 naming `environment`
    "environment=",
    "environment=production&environment=production",
    "attr.plan=pro",
    "subject=user-1&attr.plan=pro",
]


@pytest.mark.parametrize("query", QUERIES)
async def test_the_fast_path_answers_as_the_stack_does(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient], query: str
) -> None:
    whole, stack = pair
    agent = await running_experiment(whole)
    for ref in (agent["id"], agent["slug"], "no-such-agent", "agt_01ARZ3NDEKTSV4RRFFQ69G5FAV"):
        path = f"/v1/agents/{ref}/resolved" + (f"?{query}" if query else "")
        first = await whole.get(path)  # a miss (the fast path queries), then hits
        assert answer(first) == answer(await stack.get(path)), path
        assert answer(await whole.get(path)) == answer(first), path
        if first.status_code == 200:
            conditional = {"If-None-Match": first.headers["etag"]}
            assert answer(await whole.get(path, headers=conditional)) == answer(
                await stack.get(path, headers=conditional)
            )
            assert (await whole.get(path, headers=conditional)).status_code == 304


AGENTS: dict[int, dict[str, Any]] = {}


@given(subject=st.text(min_size=1, max_size=40), explain=st.sampled_from(["", "&explain=true", "&explain=0"]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_subject_gets_the_arm_the_stack_gives(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient], subject: str, explain: str
) -> None:
    whole, stack = pair
    if id(whole) not in AGENTS:  # one agent per fixture, for every example
        AGENTS[id(whole)] = await running_experiment(whole)
    agent = AGENTS[id(whole)]
    params = httpx.QueryParams({"subject": subject})
    path = f"/v1/agents/{agent['slug']}/resolved?{params}{explain}"
    assert answer(await whole.get(path)) == answer(await stack.get(path))


async def test_subject_hits_run_no_query(pair: tuple[httpx.AsyncClient, httpx.AsyncClient], conn: Any) -> None:
    whole, _ = pair
    agent = await running_experiment(whole)
    path = f"/v1/agents/{agent['slug']}/resolved?subject="
    arms = {(await whole.get(path + f"user-{n}")).json()["arm"] for n in range(40)}
    assert arms == {0, 1}
    async with counting(conn) as statements:
        for n in range(40):
            assert (await whole.get(path + f"user-{n}")).status_code == 200
    assert len(statements) == 0


async def test_plain_and_subject_resolutions_never_reach_the_stack(db: Database) -> None:
    """Hits and misses alike are answered in front (no gate, access log wrapper or FastAPI);
    what the fast path does not answer (a preview, an unknown agent) reaches the stack."""
    app = create_app(settings_for_tests(), database=db)
    front = app.front  # type: ignore[attr-defined]
    reached: list[str] = []
    stack = front.app

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            reached.append(scope["path"] + "?" + scope["query_string"].decode())
        await stack(scope, receive, send)

    headers = bearer(await admin_key(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers) as c:
        agent = await running_experiment(c)
        front.app = counted
        path = f"/v1/agents/{agent['slug']}/resolved"
        for query in ("", "?explain=true", "?subject=u1", "?subject=u2&explain=1", "", "?subject=u1"):
            assert (await c.get(path + query)).status_code == 200
        assert reached == []
        assert (await c.get(path + "?variant=base")).status_code == 200
        assert (await c.get("/v1/agents/nobody-at-all/resolved")).status_code == 404
    assert reached == [path + "?variant=base", "/v1/agents/nobody-at-all/resolved?"]


async def test_one_token_per_request_whoever_answers(db: Database) -> None:
    """A request the fast path admits and then hands on (an unknown agent's 404) takes no
    second token from the gate: with bursts of 3 at a trickle, the 4th request is the 429."""
    app = create_app(settings_for_tests(rate_limits={"admin": {"per_second": 0.001, "burst": 3}}), database=db)
    headers = bearer(await admin_key(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers) as c:
        statuses = [(await c.get("/v1/agents/nobody-at-all/resolved")).status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 429]


async def test_refusals_are_the_gates(pair: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    whole, stack = pair
    agent = await create_agent(whole)
    path = f"/v1/agents/{agent['slug']}/resolved"
    await whole.get(path)  # cached
    for headers in ({"Authorization": ""}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer avk_nope"}):
        refused = await whole.get(path, headers=headers)
        assert refused.status_code == 401
        assert answer(refused) == answer(await stack.get(path, headers=headers))


async def test_with_cors_a_browsers_request_gets_corss_headers(db: Database) -> None:
    app = create_app(settings_for_tests(cors_allow_origins=["https://app.example"]), database=db)
    headers = bearer(await admin_key(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers) as c:
        agent = await create_agent(c)
        path = f"/v1/agents/{agent['slug']}/resolved"
        assert (await c.get(path)).status_code == 200  # cached now
        browser = await c.get(path, headers={"Origin": "https://app.example"})
        assert browser.status_code == 200
        assert browser.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-origin" not in (await c.get(path)).headers


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        (b"", (False, None, None)),
        (b"explain=true", (True, None, None)),
        (b"explain=1&subject=a", (True, "a", None)),
        (b"subject=a%20b+c", (False, "a b c", None)),
        (b"subject=%FF", (False, "\ufffd", None)),
        (b"environment=staging&subject=a", (False, "a", "staging")),
        (b"environment=", None),
        (b"attr.plan=pro", None),
        (b"subject=", None),
        (b"subject=a&subject=a", None),
        (b"explain=TRUE", None),
        (b"at=2026-01-01T00:00:00Z", None),
        (b"subject", None),
    ],
)
def test_parse_query(query: bytes, parsed: tuple[bool, str | None, str | None] | None) -> None:
    assert parse_query(query) == parsed


async def test_a_repeated_header_counts_as_the_stack_counts_it(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient], db: Database
) -> None:
    """The first of two `Authorization` or `If-None-Match` headers decides, as in the gate and
    Starlette (review finding: the fast path took the last)."""
    whole, stack = pair
    agent = await create_agent(whole)
    path = f"/v1/agents/{agent['slug']}/resolved"
    first = await whole.get(path)  # cached now
    valid = whole.headers["authorization"]
    for headers in (
        [("Authorization", "Bearer avk_wrong0000000000000000000000000000000000000"), ("Authorization", valid)],
        [("Authorization", valid), ("If-None-Match", '"nope"'), ("If-None-Match", first.headers["etag"])],
        [("Authorization", valid), ("If-None-Match", first.headers["etag"]), ("If-None-Match", '"nope"')],
    ):
        request = httpx.Request("GET", f"http://test{path}", headers=headers)
        fast, slow = await whole.send(request), await stack.send(request)
        assert answer(fast) == answer(slow), headers
