"""`config.openai_chat_kwargs(rendered)`, `config.anthropic_messages_kwargs(rendered)` and
`config.client_options()` against the real request types of `openai` and `anthropic`
(validated strictly: a wrong key or shape fails) and through the real clients, whose
requests an `httpx.MockTransport` reads. No network, and the SDK imports neither library."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest
from agent_variants import AgentVariantsError, IncompatibleConfig, RenderedPrompt

from tests.sdk.model_clients import (
    ANTHROPIC_REQUEST,
    OPENAI_REQUEST,
    chat_completion,
    conforms,
    fake_anthropic,
    fake_openai,
    message,
)
from tests.sdk.test_render import BASE

SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "description": "e.g. A-1042"}},
    "required": ["order_id"],
    "additionalProperties": False,
}
SUPPORT = dataclasses.replace(
    BASE,
    model_name="gpt-4o",
    system_prompt='You are {{tone}} support. Answer as JSON: {"answer": str}',
    user_prompt_template="{{question}}",
    temperature=0.3,
    max_tokens=512,
    timeout_seconds=20,
    max_retries=1,
    variables={"tone": {"type": "string", "default": "friendly"}, "question": {"type": "string"}},
    tools={
        "lookup_order": {"description": "Find an order by its id.", "parameters": SCHEMA, "strict": True},
        "escalate": {"description": "", "parameters": {"type": "object", "properties": {}}},
    },
)
OPENAI_PARAMS = {
    "top_p": 0.9,
    "seed": 7,
    "stop": ["\n\n"],
    "reasoning_effort": "low",
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    },
}
# anthropic 1.0 took `top_k` (with `temperature`, `top_p`) out of `messages.create()`: it
# goes in `extra_body`, which a param may set.
ANTHROPIC_PARAMS = {"stop_sequences": ["END"], "metadata": {"user_id": "u42"}, "extra_body": {"top_k": 40}}
SYSTEM = 'You are friendly support. Answer as JSON: {"answer": str}'


def test_openai_kwargs_are_a_chat_completions_request() -> None:
    config = dataclasses.replace(SUPPORT, params=OPENAI_PARAMS)
    kwargs = config.openai_chat_kwargs(config.render(question="Where is A-1042?"))
    assert kwargs == {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Where is A-1042?"}],
        "temperature": 0.3,
        "max_completion_tokens": 512,  # `max_tokens` is deprecated in Chat Completions
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup_order",
                    "description": "Find an order by its id.",
                    "parameters": SCHEMA,
                    "strict": True,
                },
            },
            {"type": "function", "function": {"name": "escalate", "parameters": {"type": "object", "properties": {}}}},
        ],
        **OPENAI_PARAMS,  # unchanged, after the fields
    }
    assert conforms(OPENAI_REQUEST, kwargs) and accepted(openai_create(), kwargs)


def test_anthropic_kwargs_are_a_messages_request() -> None:
    config = dataclasses.replace(SUPPORT, model_name="claude-sonnet-4-5", params=ANTHROPIC_PARAMS)
    kwargs = config.anthropic_messages_kwargs(config.render(question="Where is A-1042?"))
    assert kwargs == {
        "model": "claude-sonnet-4-5",
        "system": SYSTEM,
        "messages": [{"role": "user", "content": "Where is A-1042?"}],
        "max_tokens": 512,
        "tools": [
            {"name": "lookup_order", "description": "Find an order by its id.", "input_schema": SCHEMA, "strict": True},
            {"name": "escalate", "input_schema": {"type": "object", "properties": {}}},
        ],
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u42"},
        # No `temperature` argument in anthropic's client any more: the body gets it.
        "extra_body": {"top_k": 40, "temperature": 0.3},
    }
    assert conforms(ANTHROPIC_REQUEST, kwargs) and accepted(anthropic_create(), kwargs)


def openai_create() -> Callable[..., Any]:
    return openai.OpenAI(api_key="sk-test").chat.completions.create


def anthropic_create() -> Callable[..., Any]:
    return anthropic.Anthropic(api_key="sk-ant-test").messages.create


def accepted(create: Callable[..., Any], kwargs: dict[str, Any]) -> bool:
    """Whether `create(**kwargs)` takes every key (the clients have no `**kwargs`)."""
    return set(kwargs) <= set(inspect.signature(create).parameters)


def test_the_type_check_catches_a_wrong_key_or_shape() -> None:
    """The check the tests rely on is strict: each of these is not a request of that type."""
    good_openai = SUPPORT.openai_chat_kwargs(SUPPORT.render(question="q"))
    good_anthropic = SUPPORT.anthropic_messages_kwargs(SUPPORT.render(question="q"))
    assert conforms(OPENAI_REQUEST, good_openai) and conforms(ANTHROPIC_REQUEST, good_anthropic)
    assert not conforms(OPENAI_REQUEST, good_openai | {"max_token": 5})  # an unknown key
    assert not conforms(OPENAI_REQUEST, good_openai | {"max_completion_tokens": "512"})  # a string for a number
    assert not conforms(OPENAI_REQUEST, good_openai | {"tools": good_anthropic["tools"]})  # Anthropic's tools
    assert not conforms(OPENAI_REQUEST, good_anthropic)  # `system` is no Chat Completions key
    assert not conforms(ANTHROPIC_REQUEST, good_openai)  # no max_tokens; a system message
    tool_turn = {"role": "tool", "tool_call_id": "call_1", "content": "{}"}  # OpenAI's, not Anthropic's
    assert conforms(OPENAI_REQUEST, good_openai | {"messages": [*good_openai["messages"], tool_turn]})
    assert not conforms(ANTHROPIC_REQUEST, good_anthropic | {"messages": [tool_turn]})
    assert not conforms(ANTHROPIC_REQUEST, good_anthropic | {"tools": good_openai["tools"]})
    no_max = {key: value for key, value in good_anthropic.items() if key != "max_tokens"}
    assert not conforms(ANTHROPIC_REQUEST, no_max)  # required by Anthropic


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_empty_prompts_are_left_out(kind: str) -> None:
    """An empty system prompt sends no system message (no `system` for Anthropic); an empty
    user prompt sends no user message, for the agent to add its own turns."""
    bare = dataclasses.replace(BASE, user_prompt_template="{{q}}", variables={"q": {"type": "string"}})
    build = bare.openai_chat_kwargs if kind == "openai" else bare.anthropic_messages_kwargs
    request = OPENAI_REQUEST if kind == "openai" else ANTHROPIC_REQUEST
    kwargs = build(bare.render(q="hi"))
    assert kwargs["messages"] == [{"role": "user", "content": "hi"}] and "system" not in kwargs
    assert "tools" not in kwargs and conforms(request, kwargs)
    empty = build(RenderedPrompt(system="", user=""))
    assert empty["messages"] == [] and conforms(request, empty)
    empty["messages"] += [{"role": "user", "content": "an earlier turn"}]
    assert conforms(request, empty)


def test_anthropic_refuses_a_temperature_above_1_rather_than_changing_it() -> None:
    hot = dataclasses.replace(SUPPORT, temperature=1.5, params={"temperature": 0.1, "extra_body": {"temperature": 1}})
    prompt = hot.render(question="q")
    with pytest.raises(IncompatibleConfig) as caught:
        hot.anthropic_messages_kwargs(prompt)
    error = caught.value
    assert isinstance(error, AgentVariantsError) and isinstance(error, ValueError)
    assert [e["param"] for e in error.errors] == ["temperature", "params.extra_body.temperature", "params.temperature"]
    assert error.code == "incompatible_config" and error.provider == "Anthropic"
    assert dataclasses.replace(SUPPORT, temperature=2.0).openai_chat_kwargs(prompt)["temperature"] == 2.0


def test_anthropic_gets_no_temperature_at_its_default() -> None:
    """1.0 is the Messages API's default: left out, so the models that refuse a temperature
    (Opus 4.7 on) take a config that never set one; 0 and 1 are in range."""
    prompt = SUPPORT.render(question="q")
    default = dataclasses.replace(SUPPORT, temperature=1.0).anthropic_messages_kwargs(prompt)
    assert "temperature" not in default and "extra_body" not in default
    assert conforms(ANTHROPIC_REQUEST, default) and accepted(anthropic_create(), default)
    cold = dataclasses.replace(SUPPORT, temperature=0.0).anthropic_messages_kwargs(prompt)
    assert cold["extra_body"] == {"temperature": 0.0}
    with pytest.raises(IncompatibleConfig, match="must be an object"):
        dataclasses.replace(SUPPORT, params={"extra_body": "top_k=1"}).anthropic_messages_kwargs(prompt)


@pytest.mark.parametrize(
    ("kind", "key"),
    [(kind, key) for kind in ("openai", "anthropic") for key in ("model", "messages", "max_tokens", "tools")]
    + [("openai", "max_completion_tokens"), ("anthropic", "system")],
)
def test_a_param_may_not_replace_what_a_field_sets(kind: str, key: str) -> None:
    config = dataclasses.replace(SUPPORT, params={key: 1, "top_p": 0.5})
    build = config.openai_chat_kwargs if kind == "openai" else config.anthropic_messages_kwargs
    with pytest.raises(IncompatibleConfig) as caught:
        build(config.render(question="q"))
    assert caught.value.errors == [{"param": f"params.{key}", "message": f"'{key}' comes from the config's own fields"}]


def test_the_kwargs_are_the_callers_to_change() -> None:
    config = dataclasses.replace(SUPPORT, params={"response_format": {"type": "json_object"}})
    kwargs = config.openai_chat_kwargs(config.render(question="q"))
    kwargs["tools"][0]["function"]["parameters"]["properties"].clear()
    kwargs["response_format"]["type"] = "text"
    assert config.tools["lookup_order"]["parameters"]["properties"] and config.params["response_format"]["type"] == (
        "json_object"
    )


def test_client_options_belong_to_the_client() -> None:
    assert SUPPORT.client_options() == {"timeout": 20.0, "max_retries": 1}


def body_of(request: Any) -> dict[str, Any]:
    return json.loads(request.content)  # type: ignore[no-any-return]


def test_the_openai_client_sends_the_kwargs_as_they_are() -> None:
    """The real client, its options from the config: the body it sends is the kwargs, the
    timeout is the config's, and a failed attempt is retried `max_retries` times."""
    config = dataclasses.replace(SUPPORT, params=OPENAI_PARAMS)
    kwargs = config.openai_chat_kwargs(config.render(question="Where is A-1042?"))
    seen: list[httpx.Request] = []
    llm = fake_openai(lambda body: chat_completion("Shipped.", model=body["model"]), seen)
    reply = llm.with_options(**config.client_options()).chat.completions.create(**kwargs)
    assert reply.choices[0].message.content == "Shipped." and reply.usage is not None
    assert [request.url.path for request in seen] == ["/v1/chat/completions"]
    assert body_of(seen[0]) == json.loads(json.dumps(kwargs))
    assert seen[0].extensions["timeout"]["read"] == 20.0

    failing: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        failing.append(request)
        return httpx.Response(500, json={"error": {"message": "down"}}, headers={"retry-after-ms": "1"})

    broken = openai.OpenAI(api_key="sk-test", http_client=httpx.Client(transport=httpx.MockTransport(refuse)))
    with pytest.raises(openai.InternalServerError, match="down"):
        broken.with_options(**config.client_options()).chat.completions.create(**kwargs)
    assert len(failing) == 1 + config.max_retries


def test_the_anthropic_client_sends_the_kwargs_as_they_are() -> None:
    config = dataclasses.replace(SUPPORT, model_name="claude-sonnet-4-5", params=ANTHROPIC_PARAMS)
    kwargs = config.anthropic_messages_kwargs(config.render(question="Where is A-1042?"))
    seen: list[Any] = []
    llm = fake_anthropic(lambda body: message("Shipped.", model=body["model"]), seen)
    reply = llm.with_options(**config.client_options()).messages.create(**kwargs)
    assert reply.content[0].type == "text" and reply.content[0].text == "Shipped."
    assert [request.url.path for request in seen] == ["/v1/messages"]
    sent = {key: value for key, value in kwargs.items() if key != "extra_body"} | kwargs["extra_body"]
    assert body_of(seen[0]) == json.loads(json.dumps(sent))
    assert body_of(seen[0])["temperature"] == 0.3 and body_of(seen[0])["top_k"] == 40
    assert seen[0].extensions["timeout"]["read"] == 20.0


def test_a_config_without_keyed_fields_still_makes_requests() -> None:
    """A service before contract 1.1: no params, tools or variables."""
    old = dataclasses.replace(BASE, system_prompt="Be brief.", user_prompt_template="Hello")
    prompt = old.render()
    assert conforms(OPENAI_REQUEST, old.openai_chat_kwargs(prompt))
    assert conforms(ANTHROPIC_REQUEST, old.anthropic_messages_kwargs(prompt))
    assert accepted(anthropic_create(), old.anthropic_messages_kwargs(prompt))
