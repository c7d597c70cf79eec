"""A resolved config as a model client's request: the keyword arguments of OpenAI's
`client.chat.completions.create(**kwargs)` and Anthropic's `client.messages.create(**kwargs)`,
and the client options (`timeout`, `max_retries`) that belong to the client, not the request.

Plain dicts: the SDK never imports `openai` or `anthropic` (the tests check the dicts
against both libraries' own request types). `ResolvedAgentConfig`'s methods
(`config.openai_chat_kwargs(rendered)`, ...) call these.

- `messages`: the system prompt, then the user prompt, each left out when it renders
  empty (an empty message is refused, or means nothing). An agent whose user prompt is
  empty brings its own turns: `kwargs["messages"] += history` before the call.
- `params` go into the request unchanged, after the fields: they are provider-specific
  by design (`top_p`, `seed`, `response_format`, `reasoning_effort` for OpenAI;
  `stop_sequences`, `thinking`, `output_config` for Anthropic; `extra_body` reaches what
  the client library has no argument for). A param naming a key the config's own fields set
  (`model`, `messages`, `temperature`, `max_tokens`, ...) raises `IncompatibleConfig`:
  the field is the one place for it.
- Anthropic takes a temperature from 0 to 1, ours goes to 2: above 1 raises
  `IncompatibleConfig` rather than sending a different temperature than the config says.
  Its current client has no `temperature` argument (nor `top_p`, `top_k`): a temperature
  other than 1.0 (the API's default, left out) goes in `extra_body`, and so must those
  params (`"params": {"extra_body": {"top_k": 40}}`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from agent_variants.errors import IncompatibleConfig
from agent_variants.prompts import RenderedPrompt

# The request keys each builder derives from the config's fields (params may not set them).
# OpenAI's `max_tokens` is deprecated for `max_completion_tokens`; both stand for the field.
OPENAI_DERIVED: tuple[str, ...] = ("model", "messages", "temperature", "max_completion_tokens", "max_tokens", "tools")
ANTHROPIC_DERIVED: tuple[str, ...] = ("model", "messages", "system", "temperature", "max_tokens", "tools")
ANTHROPIC_MAX_TEMPERATURE = 1.0
ANTHROPIC_DEFAULT_TEMPERATURE = 1.0  # the API's, so leaving it out changes nothing


def openai_chat_kwargs(
    rendered: RenderedPrompt,
    *,
    model: str,
    temperature: float,
    max_tokens: int,
    tools: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """OpenAI Chat Completions: `{"model", "messages", "temperature",
    "max_completion_tokens", "tools"?, **params}`, each tool as
    `{"type": "function", "function": {"name", "description"?, "parameters", "strict"?}}`."""
    _check_params("OpenAI", params, OPENAI_DERIVED, [])
    turns = (("system", rendered.system), ("user", rendered.user))
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [{"role": role, "content": text} for role, text in turns if text],
        "temperature": temperature,
        "max_completion_tokens": max_tokens,
    }
    if tools:
        kwargs["tools"] = [
            {"type": "function", "function": _tool(name, tool, "parameters")} for name, tool in tools.items()
        ]
    return _with_params(kwargs, params)


def anthropic_messages_kwargs(
    rendered: RenderedPrompt,
    *,
    model: str,
    temperature: float,
    max_tokens: int,
    tools: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Anthropic Messages: `{"model", "system"?, "messages", "max_tokens", "tools"?,
    **params}`, each tool as `{"name", "description"?, "input_schema", "strict"?}`.

    The temperature: `anthropic` 1.0 took `temperature`, `top_p` and `top_k` out of
    `messages.create()` (a TypeError), and Claude models from Opus 4.7 on refuse them (400).
    So a temperature of 1.0, the API's default, is left out, and any other goes in
    `extra_body` (`{"temperature": 0.3}`): the models that take it get it, the others say
    so, rather than the SDK sending something other than the config says."""
    problems = []
    if temperature > ANTHROPIC_MAX_TEMPERATURE:
        problems.append(
            {"param": "temperature", "message": f"{temperature} is above 1, the highest Anthropic's API takes"}
        )
    extra_body = params.get("extra_body", {})
    if not isinstance(extra_body, Mapping):
        problems.append({"param": "params.extra_body", "message": "must be an object (what the request body gains)"})
    elif "temperature" in extra_body:
        problems.append({"param": "params.extra_body.temperature", "message": "comes from the config's temperature"})
    _check_params("Anthropic", params, ANTHROPIC_DERIVED, problems)
    kwargs: dict[str, Any] = {"model": model}
    if rendered.system:
        kwargs["system"] = rendered.system
    kwargs["messages"] = [{"role": "user", "content": rendered.user}] if rendered.user else []
    kwargs["max_tokens"] = max_tokens
    if tools:
        kwargs["tools"] = [_tool(name, tool, "input_schema") for name, tool in tools.items()]
    kwargs = _with_params(kwargs, params)
    if temperature != ANTHROPIC_DEFAULT_TEMPERATURE:
        kwargs["extra_body"] = {**kwargs.get("extra_body", {}), "temperature": temperature}
    return kwargs


def client_options(*, timeout_seconds: int, max_retries: int) -> dict[str, Any]:
    """`{"timeout", "max_retries"}`: what both clients take when built
    (`OpenAI(**options)`) or per call (`client.with_options(**options).chat...`)."""
    return {"timeout": float(timeout_seconds), "max_retries": max_retries}


def _tool(name: str, tool: Mapping[str, Any], schema_key: str) -> dict[str, Any]:
    """One tool of the config (`{"description", "parameters", "strict"?}`) as the API has it."""
    shaped: dict[str, Any] = {"name": name}
    if tool.get("description"):
        shaped["description"] = tool["description"]
    shaped[schema_key] = tool.get("parameters", {"type": "object", "properties": {}})
    if "strict" in tool:
        shaped["strict"] = tool["strict"]
    return shaped


def _check_params(
    provider: str, params: Mapping[str, Any], derived: Iterable[str], problems: list[dict[str, str]]
) -> None:
    """Raise `IncompatibleConfig` naming `problems` and every param that would replace a key
    the config's fields set."""
    for key in params:
        if key in derived:
            problems.append({"param": f"params.{key}", "message": f"'{key}' comes from the config's own fields"})
    if problems:
        raise IncompatibleConfig(provider, problems)


def _with_params(kwargs: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The request with the params after the fields, all copied: changing the dict never
    changes the config it came from."""
    kwargs.update(params)
    return copy.deepcopy(kwargs)
