"""Request and response bodies for API keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from services.api.principal import ScopeName
from services.api.schemas import EXAMPLE_IDS, EXAMPLE_TIMES, StrictModel, timestamp

# A name is how people, the CLI (`keys revoke NAME`), paths (`/v1/keys/{id or name}`) and
# revisions (`api_key`) refer to a key. No `_`: in a path, `_` marks an id.
NAME_PATTERN = r"^[a-z0-9][a-z0-9.@-]{0,63}$"
KeyName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=NAME_PATTERN,
        description="1-64 of a-z, 0-9, `.`, `@` and `-`, starting with a letter or digit; unique.",
    ),
]


class KeyCreate(StrictModel):
    """A new API key: its name, its scope and, optionally, when it expires and the
    environment it is bound to."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "support-bot-prod", "scope": "resolve", "expires_at": None},
                {"name": "staging-ci", "scope": "write", "environment": "staging"},
            ]
        }
    )

    name: KeyName
    scope: ScopeName = Field(description="`resolve` < `read` < `write` < `admin`: each allows what those before it do.")
    expires_at: AwareDatetime | None = Field(
        None,
        description="When the key stops working: an instant in the future (else 422); never when null.",
    )

    environment: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The environment the key is bound to, by slug or id (`env_...`): its requests default to "
        "it and cannot name another (403 `environment_forbidden`). Unknown: 404 `resource_missing`. Omitted or "
        "null: bound to none, or, when a bound key creates it, to that key's environment (the only one it may "
        "bind a key to).",
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _a_string(cls, value: Any) -> Any:
        """An RFC 3339 string, as the document says: a number is not an instant here
        (pydantic would read 17179869184 as seconds since 1970)."""
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an RFC 3339 date-time string (like 2027-01-31T00:00:00Z)")
        return value

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            value = value.astimezone(UTC)  # what the database stores
        except OverflowError:
            raise ValueError("must be an instant between the years 1 and 9999 in UTC") from None
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


KEY_EXAMPLE: dict[str, Any] = {
    "object": "api_key",
    "id": EXAMPLE_IDS["api_key"],
    "name": "support-bot-prod",
    "scope": "resolve",
    "secret": None,
    "created_at": EXAMPLE_TIMES[0],
    "expires_at": None,
    "last_used_at": EXAMPLE_TIMES[2],
    "revoked_at": None,
    "environment": None,
}
# The response to its creation, the one place the secret appears.
CREATED_KEY_EXAMPLE = {**KEY_EXAMPLE, "secret": "avk_3pQ9x2Lm7VbN4cR8tW1yZ6sK0dF5gH2jA7eT4uY9wXq", "last_used_at": None}


class KeyRead(BaseModel):
    """An API key. `secret` is set only in the response that created it."""

    model_config = ConfigDict(json_schema_extra={"examples": [KEY_EXAMPLE, CREATED_KEY_EXAMPLE]})

    object: Literal["api_key"] = Field(description="Always `api_key`.")
    id: str = Field(description="`key_` and a ULID; never changes.")
    name: str = Field(description="Its unique name, by which paths, the CLI and revisions (`api_key`) refer to it.")
    scope: ScopeName = Field(description="`resolve` < `read` < `write` < `admin`: each allows what those before it do.")
    secret: str | None = Field(
        description="The bearer token (`avk_...`): in the response that created the key only, null everywhere "
        "else (it is not stored)."
    )
    created_at: str = Field(description="When it was created (RFC 3339, UTC).")
    expires_at: str | None = Field(description="When it stops working, or null: never.")
    last_used_at: str | None = Field(description="When it last opened a request (written every few seconds), or null.")
    revoked_at: str | None = Field(description="When it was revoked, or null.")
    environment: str | None = Field(
        description="The slug of the environment the key is bound to (it works in that one only), or null: "
        "bound to none."
    )


def key_body(row: Any, *, secret: str | None = None) -> dict[str, Any]:
    """The API key object of the contract: a `KeyRead`, the one shape the routes return and
    OpenAPI shows, as JSON-ready values. `row` is a key with its `environment_slug`."""
    return KeyRead(
        object="api_key",
        id=row["id"],
        name=row["name"],
        scope=row["scope"],
        secret=secret,
        created_at=timestamp(row["created_at"]),
        expires_at=timestamp(row["expires_at"]),
        last_used_at=timestamp(row["last_used_at"]),
        revoked_at=timestamp(row["revoked_at"]),
        environment=row["environment_slug"],
    ).model_dump(mode="json")
