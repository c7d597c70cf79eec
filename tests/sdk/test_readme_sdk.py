"""The README's ten-line agent runs as written against a real server: it resolves the
subject's arm, runs, and its reports land in the experiment's results."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from agent_variants import ResolvedAgentConfig

from tests.helpers import config
from tests.system.test_replicas import Replicas, ok, replicas

pytestmark = pytest.mark.live
__all__ = ["replicas"]

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- this block runs in tests/sdk/test_readme_sdk.py -->"


def readme_example() -> str:
    text = README.read_text()
    assert MARKER in text, "the README's SDK example lost its marker"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None
    return block.group(1)


def test_the_example_is_ten_lines() -> None:
    lines = [line for line in readme_example().splitlines() if line.strip()]
    assert len(lines) <= 10, lines


async def test_the_readme_agent_resolves_runs_and_reports(replicas: Replicas, monkeypatch: pytest.MonkeyPatch) -> None:
    a, http = replicas.a.url, replicas.http
    agent = await ok(
        http.post(
            f"{a}/v1/agents",
            json={"name": "Support bot", "slug": "support-bot", "config": config(system_prompt="Be helpful.")},
        ),
        201,
    )
    concise = await ok(
        http.post(
            f"{a}/v1/agents/support-bot/variants",
            json={"variant_name": "concise", "overrides": {"system_prompt": "Be brief."}},
        ),
        201,
    )
    test = await ok(
        http.post(
            f"{a}/v1/agents/support-bot/experiments",
            json={"name": "concise", "arms": [{"variant": "base", "weight": 1}, {"variant": "concise", "weight": 1}]},
        ),
        201,
    )
    await ok(http.post(f"{a}/v1/agents/support-bot/experiments/{test['id']}/start"))

    seen: list[tuple[str, str]] = []

    def call_llm(config: ResolvedAgentConfig, question: str) -> tuple[str, int, int]:
        seen.append((config.system_prompt, question))  # stands for the model: what the agent sent it
        return f"{config.system_prompt} {question}", len(question), 7

    monkeypatch.setenv("AGENT_VARIANTS_URL", replicas.b.url)
    monkeypatch.setenv("AGENT_VARIANTS_KEY", http.headers["Authorization"].removeprefix("Bearer "))
    namespace: dict[str, Any] = {"call_llm": call_llm}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    client = namespace["client"]
    try:
        users = [f"user-{n}" for n in range(40)]
        replies = [namespace["answer"](user, "hi?") for user in users]
        assert len(replies) == 40 and all(reply.endswith(" hi?") for reply in replies)
        # Each user got their arm's prompt, as the server assigns it.
        for user, (prompt, _) in zip(users, seen, strict=True):
            arm = await ok(http.get(f"{a}/v1/agents/support-bot/resolved", params={"subject": user}))
            assert prompt == arm["system_prompt"]
        assert client.flush(timeout=10).sent == 40
    finally:
        client.close()
    results = await ok(http.get(f"{a}/v1/agents/support-bot/experiments/{test['id']}/results"))
    by_arm = {arm["variant_id"]: arm for arm in results["arms"]}
    assert sum(arm["outcomes"] for arm in results["arms"]) == 40
    assert by_arm[concise["id"]]["outcomes"] == sum(prompt == "Be brief." for prompt, _ in seen)
    assert all(arm["success_rate"] == 1.0 for arm in results["arms"] if arm["outcomes"])
    assert agent["slug"] == "support-bot"
