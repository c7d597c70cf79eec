"""Webhook request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from services.api.schemas import EXAMPLE_TIMES, Description, StrictModel, text, timestamp
from services.api.webhooks.targets import url_error
from services.shared.webhook_events import EVENTS

EVENTS_DESCRIPTION = (
    "The events it wants: exact names (`variant.activated`), `prefix.*` (`rollout.*`) or `*`; each of "
    + ", ".join(f"`{event}`" for event in EVENTS)
    + "."
)
Url = text(1, 2048)


def _patterns(patterns: list[str]) -> list[str]:
    prefixes = {event.split(".")[0] for event in EVENTS}
    for pattern in patterns:
        if pattern == "*" or pattern in EVENTS:
            continue
        if pattern.endswith(".*") and pattern[:-2] in prefixes:
            continue
        raise PydanticCustomError("event_pattern", "'{pattern}' is no event, `prefix.*` or `*`", {"pattern": pattern})
    return list(dict.fromkeys(patterns))


def _url(url: str) -> str:
    problem = url_error(url)
    if problem is not None:
        raise PydanticCustomError("webhook_url", problem)
    return url


Events = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1, max_length=64)]


class WebhookCreate(StrictModel):
    """A subscription: where to send, and which events."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"url": "https://hooks.example.com/agent-variants", "events": ["variant.activated", "rollout.*"]}
            ]
        }
    )

    url: Url = Field(description="Where events are POSTed: an http(s) URL to a public address.")  # type: ignore[valid-type]
    events: Events = Field(description=EVENTS_DESCRIPTION)
    description: Description | None = Field(None, description="Free text, up to 4,096 characters.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _url(value)

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str]) -> list[str]:
        return _patterns(value)


class WebhookUpdate(StrictModel):
    """A JSON merge patch over url, events and description."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"events": ["*"]}]})

    url: Url = Field(None, description="A new URL.")  # type: ignore[valid-type]
    events: Annotated[Events, Field(description=EVENTS_DESCRIPTION)] = None  # type: ignore[assignment]
    description: Description | None = Field(None, description="A new description; null empties it.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _url(value)

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str]) -> list[str]:
        return _patterns(value)


WEBHOOK_EXAMPLE: dict[str, Any] = {
    "object": "webhook",
    "id": "whk_01JDQ42D4F6H8K0M2P4R6T8V0X",
    "url": "https://hooks.example.com/agent-variants",
    "events": ["variant.activated", "rollout.*"],
    "description": "",
    "secret": None,
    "version": 1,
    "created_at": EXAMPLE_TIMES[0],
    "updated_at": EXAMPLE_TIMES[0],
}


class WebhookRead(BaseModel):
    """A webhook; its `secret` only in the responses of its creation and of a rotation."""

    model_config = ConfigDict(json_schema_extra={"examples": [WEBHOOK_EXAMPLE]})

    object: Literal["webhook"] = Field(description="Always `webhook`.")
    id: str = Field(description="`whk_` and a ULID.")
    url: str = Field(description="Where events are POSTed.")
    events: list[str] = Field(description=EVENTS_DESCRIPTION)
    description: str = Field(description="Free text.")
    secret: str | None = Field(
        description="`whsec_...`: verify each delivery's `webhook-signature` with it (Standard Webhooks). Shown in "
        "the responses of the creation and of `rotate_secret` only; null otherwise."
    )
    version: int = Field(description="+1 on every change; the `ETag`, for `If-Match`.")
    created_at: str = Field(description="When it was created (RFC 3339, UTC).")
    updated_at: str = Field(description="When it last changed (RFC 3339, UTC).")


def webhook_read(row: Mapping[Any, Any], *, secret: bool = False) -> dict[str, Any]:
    return WebhookRead(
        object="webhook",
        id=row["id"],
        url=row["url"],
        events=row["events"],
        description=row["description"],
        secret=row["secret"] if secret else None,
        version=row["version"],
        created_at=timestamp(row["created_at"]) or "",
        updated_at=timestamp(row["updated_at"]) or "",
    ).model_dump(mode="json")


class DeliveryRead(BaseModel):
    """One event sent (or being sent) to a webhook."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "webhook_delivery",
                    "id": "1042",
                    "message_id": "msg_01JDQ43E5G7J9M1P3S5V7X9Z1B",
                    "event": "variant.activated",
                    "status": "delivered",
                    "attempts": 1,
                    "last_status_code": 204,
                    "last_error": None,
                    "next_attempt_at": None,
                    "created_at": EXAMPLE_TIMES[1],
                    "delivered_at": EXAMPLE_TIMES[1],
                    "payload": {"type": "variant.activated", "timestamp": EXAMPLE_TIMES[1], "data": {"revision": {}}},
                }
            ]
        }
    )

    object: Literal["webhook_delivery"] = Field(description="Always `webhook_delivery`.")
    id: str = Field(description="Its position in the log (pass it as `after` for the next page).")
    message_id: str = Field(description="The `webhook-id` header of every attempt: receivers drop repeats by it.")
    event: str = Field(description="The event.")
    status: Literal["pending", "delivered", "failed"] = Field(
        description="`pending` (to be sent, or retried), `delivered` (a 2xx answer) or `failed` (24 hours of retries)."
    )
    attempts: int = Field(description="How many times it was sent.")
    last_status_code: int | None = Field(description="The status of the last attempt's answer, or null.")
    last_error: str | None = Field(description="Why the last attempt failed, or null.")
    next_attempt_at: str | None = Field(description="When it is sent next, while pending.")
    created_at: str = Field(description="When the change happened.")
    delivered_at: str | None = Field(description="When a 2xx answered it.")
    payload: dict[str, Any] = Field(description='The body sent: `{"type", "timestamp", "data": {"revision"}}`.')


def delivery_read(row: Mapping[Any, Any]) -> dict[str, Any]:
    return DeliveryRead(
        object="webhook_delivery",
        id=str(row["id"]),
        message_id=row["message_id"],
        event=row["event"],
        status=row["status"],
        attempts=row["attempts"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        next_attempt_at=timestamp(row["next_attempt_at"]) if row["status"] == "pending" else None,
        created_at=timestamp(row["created_at"]) or "",
        delivered_at=timestamp(row["delivered_at"]),
        payload=row["payload"],
    ).model_dump(mode="json")
