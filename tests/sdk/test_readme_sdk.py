"""The README's agent (examples/agent.py, shown in the README as it is) runs as written
against a real server and a real `openai` client whose requests a mock transport checks
against openai's own request type: it resolves the subject's arm, renders its prompt,
calls the model with the config, and its reports land in the experiment's results."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.helpers import config
from tests.sdk.model_clients import chat_completion, fake_openai
from tests.system.test_replicas import Replicas, ok, replicas

pytestmark = pytest.mark.live
__all__ = ["replicas"]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "agent.py"
MARKER = "<!-- this block runs in tests/sdk/test_readme_sdk.py -->"


def readme_example() -> str:
    text = README.read_text()
    assert MARKER in text, "the README's SDK example lost its marker"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None
    return block.group(1)


def test_the_readme_shows_the_example_as_it_is() -> None:
    assert readme_example() == EXAMPLE.read_text()


async def test_the_readme_agent_resolves_renders_calls_and_reports(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, http = replicas.a.url, replicas.http
    agent = await ok(
        http.post(
            f"{a}/v1/agents",
            json={
                "name": "Support bot",
                "slug": "support-bot",
                "config": config(
                    system_prompt="Be helpful.",
                    user_prompt_template='Customer asks: {{ question }}\nReply as JSON: {"answer": "..."}',
                    temperature=0.4,
                    max_tokens=300,
                    timeout_seconds=15,
                ),
            },
        ),
        201,
    )
    concise = await ok(
        http.post(
            f"{a}/v1/agents/support-bot/variants",
            json={"variant_name": "concise", "overrides": {"system_prompt": "Be brief.", "model_name": "gpt-4o-mini"}},
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
    # Inferred on create: each placeholder of the base templates, a required string.
    assert agent["config"]["variables"] == {"question": {"type": "string"}}

    # The model: a real openai client; its transport checks each body against openai's
    # request type (else 400, which the client raises) and answers with the prompts it got.
    sent: list[Any] = []

    def model(body: dict[str, Any]) -> dict[str, Any]:
        system, user = (message["content"] for message in body["messages"])
        return chat_completion(f"{system} | {user}", model=body["model"], prompt_tokens=len(user))

    monkeypatch.setattr(openai, "OpenAI", lambda: fake_openai(model, sent))
    monkeypatch.setenv("AGENT_VARIANTS_URL", replicas.b.url)
    monkeypatch.setenv("AGENT_VARIANTS_KEY", http.headers["Authorization"].removeprefix("Bearer "))
    namespace: dict[str, Any] = {"__name__": "agent"}
    exec(compile(EXAMPLE.read_text(), str(EXAMPLE), "exec"), namespace)
    client = namespace["client"]
    try:
        users = [f"user-{n}" for n in range(40)]
        replies = [namespace["answer"](user, "where is my order?") for user in users]
        assert client.flush(timeout=10).sent == 40
    finally:
        client.close()
    asked = 'Customer asks: where is my order?\nReply as JSON: {"answer": "..."}'
    assert len(sent) == 40 and all(reply.endswith(f" | {asked}") for reply in replies)
    # Each user's request is their arm's config, as the server resolves it.
    for user, request in zip(users, sent, strict=True):
        arm = await ok(http.get(f"{a}/v1/agents/support-bot/resolved", params={"subject": user}))
        assert json.loads(request.content) == {
            "model": arm["model_name"],
            "messages": [{"role": "system", "content": arm["system_prompt"]}, {"role": "user", "content": asked}],
            "temperature": 0.4,
            "max_completion_tokens": 300,
        }
        assert request.extensions["timeout"]["read"] == 15.0
    results = await ok(http.get(f"{a}/v1/agents/support-bot/experiments/{test['id']}/results"))
    by_arm = {arm["variant_id"]: arm for arm in results["arms"]}
    assert sum(arm["outcomes"] for arm in results["arms"]) == 40
    assert by_arm[concise["id"]]["outcomes"] == sum(reply.startswith("Be brief.") for reply in replies)
    assert all(arm["success_rate"] == 1.0 for arm in results["arms"] if arm["outcomes"])
    assert agent["slug"] == "support-bot"
