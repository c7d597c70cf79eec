"""Config as code against real servers: `agent-variants export`, `plan` and `apply` run as
commands against `serve` processes, each on a database of its own.

export -> apply on an empty service -> export gives the same bytes; `plan` exits 0 or 2 and
says what would change, field by field; `apply` is idempotent, deletes only with `--prune`,
stops at the first refusal with the API's message, and a change made between reading and
writing is a 412 that stops it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.api import config_as_code
from tests.helpers import unique
from tests.system.test_replicas import ROOT, Server, own_database, start, stop, wait_ready

pytestmark = pytest.mark.live


@dataclass
class Service:
    server: Server
    key: str

    @property
    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=10)

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> dict[str, Any]:
        with self.http as http:
            response = http.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else {}

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The command as a user runs it, the URL and key from the environment."""
        env = {**os.environ, "AGENT_VARIANTS_URL": self.server.url, "AGENT_VARIANTS_KEY": self.key}
        return subprocess.run(
            [sys.executable, "-m", "services.api.cli", *args],
            cwd=ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def export(self) -> str:
        done = self.cli("export")
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
async def services(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Service]]:
    """Two servers, each on an empty database of its own: `a` for the tests, `empty` for the round trip."""
    found: dict[str, Service] = {}
    servers: list[Server] = []
    tag = f"{os.getpid()}_{random.getrandbits(24)}"
    async with (
        own_database(server_url, f"av_cac_a_{tag}") as url_a,
        own_database(server_url, f"av_cac_b_{tag}") as url_b,
        httpx.AsyncClient(timeout=10) as http,
    ):
        try:
            for name, url in (("a", url_a), ("empty", url_b)):
                log_dir = tmp_path_factory.mktemp(f"cac-{name}")
                servers.append(start(name, url, log_dir, migrate=True))
                await wait_ready(http, servers[-1])
                found[name] = Service(servers[-1], (log_dir / "admin-key").read_text().strip())
            yield found
        finally:
            for server in servers:
                stop(server)


PROMPT = 'You are {{ persona }}.\n  Indented line, trailing spaces   \nJSON stays literal: {"a": [1, 2]}\nÜnïcödé ✓\n'
TOOL = {
    "description": "Look an order up",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    "strict": True,
}


def seed(service: Service, slug: str, environments: tuple[str, str]) -> None:
    """An agent with every kind of field, three variants, active in two environments, with rules."""
    for environment in environments:
        service.call(
            "POST",
            "/v1/environments",
            201,
            json={"name": environment.title(), "slug": environment, "description": f"The {environment} one"},
        )
    service.call(
        "POST",
        "/v1/agents",
        201,
        json={
            "name": f"Agent {slug}",
            "slug": slug,
            "description": "Answers questions",
            "metadata": {"team": "support", "cost-center": "42"},
            "config": {
                "model_provider": "openai",
                "model_name": "gpt-4o",
                "system_prompt": PROMPT,
                "user_prompt_template": "{{question}}",
                "temperature": 0.7,
                "max_tokens": 800,
                "context_window": 128000,
                "params": {"top_p": 0.9, "seed": 7, "stop": ["\n\n"], "response_format": {"type": "text"}},
                "tools": {"lookup_order": TOOL, "escalate": {"description": "", "parameters": {"type": "object"}}},
                "variables": {
                    "persona": {"type": "string", "default": "a helpful agent", "description": "Who speaks"},
                    "question": {"type": "string"},
                    "tries": {"type": "integer", "required": False},
                },
            },
            "params_schema": {"type": "object", "properties": {"top_p": {"type": "number", "maximum": 1}}},
        },
    )
    base = f"/v1/agents/{slug}"
    service.call(
        "POST",
        f"{base}/variants",
        201,
        json={
            "variant_name": "Concise",
            "slug": "concise",
            "metadata": {"owner": "ana"},
            "overrides": {"temperature": 0.2, "max_tokens": 300, "params": {"top_p": 0.5}},
        },
    )
    service.call(
        "POST",
        f"{base}/variants",
        201,
        json={
            "variant_name": "Reasoning",
            "slug": "reasoning",
            "description": "A reasoning model",
            "overrides": {
                "model_name": "o3",
                "params_unset": ["top_p", "seed"],
                "params": {"reasoning_effort": "low"},
                "tools": {"escalate": {"disabled": True}},
            },
        },
    )
    service.call("POST", f"{base}/variants", 201, json={"variant_name": "Plain", "slug": "plain"})
    service.call("POST", f"{base}/variants/concise/activate", params={"environment": "production"})
    service.call("POST", f"{base}/variants/reasoning/activate", params={"environment": environments[0]})
    service.call(
        "PUT",
        f"{base}/rules",
        params={"environment": "production"},
        json={
            "rules": [
                {
                    "name": "Pro plans",
                    "when": [
                        {"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]},
                        {"attribute": "seats", "op": "gte", "value": 10},
                    ],
                    "serve": {"variant": "reasoning"},
                },
                {
                    "name": "Beta",
                    "when": [{"attribute": "beta", "op": "eq", "value": True}],
                    "serve": {"variant": "base"},
                },
            ]
        },
    )
    service.call(
        "PUT",
        f"{base}/rules",
        params={"environment": environments[1]},
        json={
            "rules": [
                {
                    "name": "Internal",
                    "when": [
                        {"attribute": "email", "op": "ends_with", "value": "@example.com"},
                        {"attribute": "subject", "op": "exists"},
                    ],
                    "serve": {"variant": "plain"},
                },
            ]
        },
    )


def slug_of(prefix: str) -> str:
    return unique(prefix).replace(" ", "-")


async def test_export_then_apply_on_an_empty_service_then_export_gives_the_same_bytes(
    services: dict[str, Service], tmp_path: Path
) -> None:
    a, empty = services["a"], services["empty"]
    slug = slug_of("round")
    seed(a, slug, ("staging", "eu"))
    seed(a, slug + "-two", ("dev", "canary"))
    first = a.export()
    document = yaml.safe_load(first)
    # By slug, without ids, versions or timestamps.
    for word in ("agt_", "var_", "env_", "rul_", " version:", "created_at", "updated_at"):
        assert word not in first, word
    agent = next(entry for entry in document["agents"] if entry["slug"] == slug)
    assert agent["active"] == {"production": "concise", "staging": "reasoning"}
    assert agent["rules"]["production"][0]["serve"] == {"variant": "reasoning"}
    assert [variant["slug"] for variant in agent["variants"]] == ["concise", "plain", "reasoning"]
    assert agent["config"]["system_prompt"] == PROMPT
    assert agent["config"]["tools"]["lookup_order"] == TOOL

    file = tmp_path / "config.yaml"
    file.write_text(first)
    planned = empty.cli("plan", "-f", str(file))
    assert planned.returncode == 2, planned.stderr
    assert f"+ create agent {slug}\n" in planned.stdout
    applied = empty.cli("apply", "-f", str(file))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    second = empty.export()
    assert second == first

    # And again: nothing to do, nothing written.
    revisions = empty.call("GET", f"/v1/agents/{slug}/revisions", params={"limit": 100})["data"]
    again = empty.cli("apply", "-f", str(file))
    assert again.returncode == 0, again.stderr
    assert "No changes" in again.stdout
    assert empty.call("GET", f"/v1/agents/{slug}/revisions", params={"limit": 100})["data"] == revisions
    assert empty.cli("plan", "-f", str(file)).returncode == 0


def edited(text: str, slug: str, change: Any) -> str:
    """The exported file with `change(agent_entry, document)` made to the agent `slug`."""
    document = yaml.safe_load(text)
    change(next(entry for entry in document["agents"] if entry["slug"] == slug), document)
    return config_as_code.dump(document)


async def test_plan_exits_2_and_says_what_changes_and_apply_is_idempotent(
    services: dict[str, Service], tmp_path: Path
) -> None:
    a = services["a"]
    slug = slug_of("plan")
    a.call(
        "POST",
        "/v1/agents",
        201,
        json={
            "name": "Plan",
            "slug": slug,
            "config": {
                "model_provider": "openai",
                "model_name": "gpt-4o",
                "temperature": 0.7,
                "tools": {"lookup": TOOL},
            },
        },
    )
    a.call("POST", f"/v1/agents/{slug}/variants", 201, json={"variant_name": "Short", "slug": "short"})
    file = tmp_path / "config.yaml"
    file.write_text(a.export())
    unchanged = a.cli("plan", "-f", str(file))
    assert (unchanged.returncode, unchanged.stdout) == (0, "No changes: the service matches the file.\n")

    def change(agent: dict[str, Any], document: dict[str, Any]) -> None:
        agent["config"]["temperature"] = 0.5
        agent["config"]["tools"]["lookup"]["description"] = "Find an order"
        agent["metadata"] = {"team": "care"}
        agent["variants"].append({"slug": "long", "variant_name": "Long", "overrides": {"max_tokens": 4000}})
        agent["active"] = {"production": "long"}
        agent["rules"] = {
            "production": [
                {"name": "VIP", "when": [{"attribute": "vip", "op": "exists"}], "serve": {"variant": "short"}}
            ]
        }

    file.write_text(edited(file.read_text(), slug, change))
    before = a.call("GET", f"/v1/agents/{slug}")
    planned = a.cli("plan", "-f", str(file))
    assert planned.returncode == 2, planned.stderr
    out = planned.stdout
    assert f"~ update agent {slug}\n" in out
    assert "    ~ config.temperature: 0.7 -> 0.5\n" in out
    assert '    ~ config.tools.lookup.description: "Look an order up" -> "Find an order"\n' in out
    assert '    + metadata.team: "care"\n' in out and "metadata: {}" not in out
    assert f"+ create variant {slug}/long\n" in out and "    + overrides.max_tokens: 4000\n" in out
    assert f"+ create activation {slug} in production\n" in out
    assert f"~ update rules {slug} in production\n" in out
    assert '    + rules[0].name: "VIP"\n' in out
    assert "Plan: 2 to create, 2 to update, 0 to delete." in out
    # The plan wrote nothing, and lists the changes in the order apply makes them.
    assert a.call("GET", f"/v1/agents/{slug}")["version"] == before["version"]
    order = [
        out.index(f"agent {slug}\n"),
        out.index(f"variant {slug}/long"),
        out.index("activation"),
        out.index("rules"),
    ]
    assert order == sorted(order)

    applied = a.cli("apply", "-f", str(file))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Applied 4 changes." in applied.stdout
    agent = a.call("GET", f"/v1/agents/{slug}")
    assert agent["config"]["temperature"] == 0.5 and agent["metadata"] == {"team": "care"}
    assert a.call("GET", f"/v1/agents/{slug}/variants/long")["active_in"] == ["production"]
    assert a.call("GET", f"/v1/agents/{slug}/resolved", params={"attr.vip": "1"})["variant_slug"] == "short"

    # Idempotent: the second apply changes nothing and writes nothing.
    again = a.cli("apply", "-f", str(file))
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr
    assert a.call("GET", f"/v1/agents/{slug}")["version"] == agent["version"]
    assert a.cli("plan", "-f", str(file)).returncode == 0
    # The service holds what the file says (export sorts the variants by slug).
    exported = next(entry for entry in yaml.safe_load(a.export())["agents"] if entry["slug"] == slug)
    written = next(entry for entry in yaml.safe_load(file.read_text())["agents"] if entry["slug"] == slug)
    written["variants"].sort(key=lambda variant: variant["slug"])
    assert exported == written


async def test_apply_deletes_only_with_prune(services: dict[str, Service], tmp_path: Path) -> None:
    a = services["a"]
    slug = slug_of("prune")
    environment = slug_of("env")
    a.call("POST", "/v1/environments", 201, json={"name": "Temporary", "slug": environment})
    a.call(
        "POST",
        "/v1/agents",
        201,
        json={"name": "Prune", "slug": slug, "config": {"model_provider": "openai", "model_name": "gpt-4o"}},
    )
    for name in ("keep", "drop"):
        a.call("POST", f"/v1/agents/{slug}/variants", 201, json={"variant_name": name, "slug": name})
    a.call("POST", f"/v1/agents/{slug}/variants/drop/activate", params={"environment": environment})
    a.call(
        "PUT",
        f"/v1/agents/{slug}/rules",
        params={"environment": environment},
        json={"rules": [{"name": "r", "when": [{"attribute": "x", "op": "exists"}], "serve": {"variant": "keep"}}]},
    )
    gone = slug_of("gone")
    a.call(
        "POST",
        "/v1/agents",
        201,
        json={"name": "Gone", "slug": gone, "config": {"model_provider": "openai", "model_name": "gpt-4o"}},
    )

    def change(agent: dict[str, Any], document: dict[str, Any]) -> None:
        agent["variants"] = [variant for variant in agent["variants"] if variant["slug"] != "drop"]
        del agent["active"], agent["rules"]
        document["environments"] = [e for e in document["environments"] if e["slug"] != environment]
        document["agents"] = [entry for entry in document["agents"] if entry["slug"] != gone]

    file = tmp_path / "config.yaml"
    file.write_text(edited(a.export(), slug, change))

    kept = a.cli("apply", "-f", str(file))
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "No changes" in kept.stdout
    assert f"--prune removes them): activation {slug} in {environment}, rules {slug} in {environment}" in kept.stdout
    a.call("GET", f"/v1/agents/{slug}/variants/drop")
    a.call("GET", f"/v1/environments/{environment}")
    a.call("GET", f"/v1/agents/{gone}")
    assert a.cli("plan", "-f", str(file)).returncode == 0

    planned = a.cli("plan", "--prune", "-f", str(file))
    assert planned.returncode == 2, planned.stderr
    for line in (
        f"- delete activation {slug} in {environment}",
        f"- delete rules {slug} in {environment}",
        f"- delete variant {slug}/drop",
        f"- delete agent {gone}",
        f"- delete environment {environment}",
    ):
        assert line in planned.stdout
    assert "delete environment production" not in planned.stdout  # it cannot be deleted: never pruned
    pruned = a.cli("apply", "--prune", "-f", str(file))
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    a.call("GET", f"/v1/agents/{slug}/variants/drop", 404)
    a.call("GET", f"/v1/environments/{environment}", 404)
    a.call("GET", f"/v1/agents/{gone}", 404)  # archived
    a.call("GET", f"/v1/agents/{slug}/variants/keep")
    assert a.cli("plan", "--prune", "-f", str(file)).returncode == 0


async def test_apply_stops_at_the_first_refusal_with_the_apis_message(
    services: dict[str, Service], tmp_path: Path
) -> None:
    a = services["a"]
    slug, later = slug_of("refused"), slug_of("later")
    a.call(
        "POST",
        "/v1/agents",
        201,
        json={"name": "Refused", "slug": slug, "config": {"model_provider": "openai", "model_name": "gpt-4o"}},
    )

    def break_it(agent: dict[str, Any], document: dict[str, Any]) -> None:
        agent["description"] = "changed first"
        agent["config"]["system_prompt"] = "Hello {{user.name}}"  # not a placeholder: invalid_template
        agent["variants"] = [{"slug": "after", "variant_name": "After"}]
        document["agents"].insert(
            0, {"slug": later, "name": "Later", "config": {"model_provider": "openai", "model_name": "gpt-4o"}}
        )

    file = tmp_path / "config.yaml"
    file.write_text(edited(a.export(), slug, break_it))
    refused = a.cli("apply", "-f", str(file))
    assert refused.returncode == 1
    assert f"apply stopped at `update agent {slug}`" in refused.stderr
    assert "422 invalid_template" in refused.stderr
    assert "config.system_prompt" in refused.stderr
    # Changes are made in order: the agent created before is there; nothing after the refusal is.
    assert f"+ create agent {later}: done" in refused.stdout
    agent = a.call("GET", f"/v1/agents/{slug}")
    assert agent["description"] == "" and agent["variant_count"] == 0

    def inconsistent(agent: dict[str, Any], document: dict[str, Any]) -> None:
        agent["config"].update(context_window=1000, input_token_limit=600, max_tokens=600)

    file.write_text(edited(a.export(), slug, inconsistent))
    refused = a.cli("apply", "-f", str(file))
    assert refused.returncode == 1
    assert "422 inconsistent_config" in refused.stderr and "config.max_tokens" in refused.stderr


async def test_a_change_between_reading_and_writing_stops_apply_with_412(services: dict[str, Service]) -> None:
    a = services["a"]
    slug = slug_of("raced")
    a.call(
        "POST",
        "/v1/agents",
        201,
        json={"name": "Raced", "slug": slug, "config": {"model_provider": "openai", "model_name": "gpt-4o"}},
    )
    a.call("POST", f"/v1/agents/{slug}/variants", 201, json={"variant_name": "v", "slug": "v"})
    with config_as_code.client_for(a.server.url, a.key) as client:
        read = config_as_code.read_service(client)
        document = config_as_code.load(config_as_code.dump(config_as_code.export(read)))
        agent = next(entry for entry in document["agents"] if entry["slug"] == slug)
        agent["config"]["temperature"] = 0.1
        agent["variants"][0]["overrides"] = {"max_tokens": 10}
        changes = config_as_code.plan(document, read)
        assert [change.what for change in changes] == [f"agent {slug}", f"variant {slug}/v"]
        # Someone else changes the variant after the plan was made.
        a.call("PATCH", f"/v1/agents/{slug}/variants/v", json={"description": "theirs"})
        said: list[str] = []
        with pytest.raises(config_as_code.Refused) as refused:
            config_as_code.apply(client, changes, read, say=said.append)
    assert said == [f"~ update agent {slug}: done"]
    assert f"apply stopped at `update variant {slug}/v` (1 of 2 changes made)" in str(refused.value)
    assert "412 precondition_failed" in str(refused.value) and "run plan again" in str(refused.value)
    assert a.call("GET", f"/v1/agents/{slug}/variants/v")["overrides"] == {}


def test_the_file_is_checked_before_anything_is_read() -> None:
    for text, message in (
        ("agents: [{slug: a, name: A, config: {}}, {slug: a, name: B, config: {}}]", "'a' is repeated"),
        ("environments: [{slug: x, name: X, colour: red}]", "unknown field(s) colour"),
        ("agents:\n- slug: a\n  slug: b\n", "the key 'slug' is repeated"),
        ("format: 9", "format must be 1"),
        ("agents: [{slug: a, name: A}]", "agents[0].config must be given"),
        ("agents: [{slug: a, name: A, config: {}, variants: [{slug: base, variant_name: B}]}]", "reserved"),
        ("[1, 2]", "the file must be a mapping"),
    ):
        with pytest.raises(config_as_code.ConfigError, match=None) as error:
            config_as_code.load(text)
        assert message in str(error.value), (text, str(error.value))


def test_dump_is_deterministic_and_reads_back_exactly() -> None:
    document = {
        "format": 1,
        "environments": [],
        "agents": [
            {
                "slug": "a",
                "name": "A",
                "config": {
                    "system_prompt": PROMPT,
                    "user_prompt_template": "yes",
                    "temperature": 1.0,
                    "params": {"stop": ["\n"]},
                },
            }
        ],
    }
    text = config_as_code.dump(document)
    assert text == config_as_code.dump(config_as_code.load(text))
    assert config_as_code.load(text)["agents"][0]["config"] == document["agents"][0]["config"]  # type: ignore[index]


def test_a_plan_made_from_the_file_alone_names_every_write_in_order() -> None:
    """Against an empty service (only production): creates in the order apply makes them, and
    rules or activations in an environment nobody makes are still planned (the API refuses them)."""
    empty = config_as_code.Service(
        environments={"production": {"slug": "production", "name": "Production", "description": "", "version": 1}}
    )
    document = config_as_code.load(
        "agents:\n- slug: a\n  name: A\n  config: {model_provider: openai, model_name: m}\n"
        "  variants: [{slug: v, variant_name: V}]\n  active: {production: v, nowhere: v}\n"
        "  rules:\n    nowhere: [{name: r, when: [{attribute: x, op: exists}], serve: {variant: v}}]\n"
        "environments: [{slug: production, name: Production}, {slug: eu, name: EU}]\n"
    )
    changes = config_as_code.plan(document, empty)
    assert [(change.action, change.what) for change in changes] == [
        ("create", "environment eu"),
        ("create", "agent a"),
        ("create", "variant a/v"),
        ("create", "activation a in nowhere"),
        ("create", "activation a in production"),
        ("update", "rules a in nowhere"),
    ]
    assert changes[3].params == {"environment": "nowhere"} and changes[3].path == "/v1/agents/a/variants/v/activate"
    assert config_as_code.plan(document, empty, prune=True) == changes  # nothing to remove


def test_usage_errors_exit_1_not_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.api.cli", "plan"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    no_url = subprocess.run(
        [sys.executable, "-m", "services.api.cli", "export"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={key: value for key, value in os.environ.items() if key != "AGENT_VARIANTS_URL"},
    )
    assert no_url.returncode == 1 and "--url" in no_url.stderr
