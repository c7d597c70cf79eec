"""The model clients as tests use them: the real `openai` and `anthropic` libraries over a
mock transport (httpx's; httpx2's for anthropic), so a request is built and serialised
exactly as it would be, its body is checked against the library's own request type, and a
canned answer comes back. No network."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import httpx2  # anthropic's HTTP client from 2.x on: the same API as httpx
from anthropic import Anthropic
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from openai import OpenAI  # the class itself, whatever a test later puts in `openai.OpenAI`
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter, ValidationError

OPENAI_REQUEST = TypeAdapter(CompletionCreateParamsNonStreaming)
ANTHROPIC_REQUEST = TypeAdapter(MessageCreateParamsNonStreaming)


# Arguments of `create()` that shape the HTTP request rather than being part of its body type.
REQUEST_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


def conforms(request: TypeAdapter[Any], kwargs: dict[str, Any]) -> bool:
    """Whether `kwargs` is exactly a value of the library's request type (less the request
    options, `extra_body` ...): every value of its declared type (strict: no coercion) and
    no key the type lacks. Pydantic validates a TypedDict by dropping unknown keys, so the
    validated value, dumped, must equal the input."""
    kwargs = {key: value for key, value in kwargs.items() if key not in REQUEST_OPTIONS}
    try:
        dumped = request.dump_python(request.validate_python(kwargs, strict=True), mode="json")
    except ValidationError:
        return False
    return bool(dumped == json.loads(json.dumps(kwargs)))


def chat_completion(content: str, *, model: str, prompt_tokens: int = 12, completion_tokens: int = 3) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_765_000_000,
        "model": model,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content, "refusal": None}}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def message(content: str, *, model: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": content}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }


Answer = Callable[[dict[str, Any]], dict[str, Any]]


def handler(
    path: str, request_type: TypeAdapter[Any], answer: Answer, seen: list[Any], http: Any, untyped: frozenset[str]
) -> Any:
    """A mock transport (of `http`: httpx, or httpx2) that answers POST `path` with
    `answer(body)`, or 400 (which the client raises) unless the body conforms to
    `request_type` once the `untyped` keys (which `extra_body` adds) are set aside.
    Records every request."""

    def handle(request: Any) -> Any:
        seen.append(request)
        body = json.loads(request.content)
        typed = {key: value for key, value in body.items() if key not in untyped}
        if request.method != "POST" or request.url.path != path or not conforms(request_type, typed):
            return http.Response(400, json={"error": {"message": f"not a {path} request: {body}"}})
        return http.Response(200, json=answer(body))

    return http.MockTransport(handle)


# What an Anthropic body may carry beyond the request type, sent through `extra_body`: the
# sampling parameters anthropic 1.0 took out of `messages.create()`.
ANTHROPIC_UNTYPED = frozenset({"temperature", "top_p", "top_k"})


def fake_openai(answer: Answer, seen: list[Any], **options: Any) -> OpenAI:
    """A real `openai.OpenAI` whose Chat Completions calls get `answer(body)`."""
    mock = handler("/v1/chat/completions", OPENAI_REQUEST, answer, seen, httpx, frozenset())
    return OpenAI(api_key="sk-test", base_url="http://llm.test/v1", http_client=httpx.Client(transport=mock), **options)


def fake_anthropic(answer: Answer, seen: list[Any], **options: Any) -> Anthropic:
    """A real `anthropic.Anthropic` whose Messages calls get `answer(body)`."""
    mock = handler("/v1/messages", ANTHROPIC_REQUEST, answer, seen, httpx2, ANTHROPIC_UNTYPED)
    return Anthropic(
        api_key="sk-ant-test", base_url="http://llm.test", http_client=httpx2.Client(transport=mock), **options
    )
