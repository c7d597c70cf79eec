"""The SDK package (`sdk/python`, imported as `agent_variants`) holds the one definition of
the resolved config and of experiment assignment; the service re-exports them, and the
SDK never pulls in the server's dependencies."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import agent_variants
from agent_variants import assignment, config

from services.shared import agent_config
from services.shared import assignment as shared_assignment

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {"fastapi", "starlette", "sqlalchemy", "asyncpg", "alembic", "uvicorn", "pydantic", "services"}


def test_the_service_and_the_sdk_share_one_definition() -> None:
    assert agent_config.ResolvedAgentConfig is agent_variants.ResolvedAgentConfig is config.ResolvedAgentConfig
    assert agent_config.AgentNotFound is agent_variants.AgentNotFound
    assert agent_config.CONFIG_FIELDS is config.CONFIG_FIELDS
    assert shared_assignment.assign is agent_variants.assign is assignment.assign
    assert shared_assignment.bucket is assignment.bucket


def test_importing_the_sdk_loads_none_of_the_server() -> None:
    probe = (
        "import sys, agent_variants, agent_variants.config, agent_variants.assignment\n"
        f"loaded = {{name.split('.')[0] for name in sys.modules}} & set({sorted(SERVER_ONLY)!r})\n"
        "print(sorted(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/", check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_sdk_distribution_needs_httpx_only_and_is_typed() -> None:
    project = tomllib.loads((ROOT / "sdk" / "python" / "pyproject.toml").read_text())["project"]
    assert project["name"] == "agent-variants-sdk"
    assert [dependency.split(">")[0] for dependency in project["dependencies"]] == ["httpx"]
    assert (ROOT / "sdk" / "python" / "agent_variants" / "py.typed").exists()
    assert Path(agent_variants.__file__).resolve().is_relative_to(ROOT / "sdk" / "python")


def test_the_sdk_type_checks_strictly(tmp_path: Path) -> None:
    """`py.typed` promises types to every user's checker: the SDK passes `mypy --strict`."""
    package = ROOT / "sdk" / "python" / "agent_variants"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), str(package)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_sdk_builds_model_requests_without_the_model_clients() -> None:
    """`openai` and `anthropic` are the tests' (dev dependencies), never the SDK's: rendering
    and building both requests loads neither."""
    probe = (
        "import sys\n"
        "from agent_variants import ResolvedAgentConfig\n"
        "config = ResolvedAgentConfig(agent_id='agt_1', variant_id=None, model_provider='anthropic',"
        " model_name='claude', system_prompt='Be {{tone}}.', user_prompt_template='{{q}}', prompt_version='',"
        " temperature=0.5, max_tokens=100, context_window=0, input_token_limit=0, token_budget=0,"
        " timeout_seconds=30, max_retries=2, params={'seed': 1},"
        " tools={'f': {'description': 'd', 'parameters': {'type': 'object'}}},"
        " variables={'tone': {'type': 'string', 'default': 'kind'}, 'q': {'type': 'string'}})\n"
        "prompt = config.render(q='hi')\n"
        "config.openai_chat_kwargs(prompt), config.anthropic_messages_kwargs(prompt), config.client_options()\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'openai', 'anthropic', 'pydantic'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/", check=True)
    assert result.stdout.strip() == "[]", result.stdout
