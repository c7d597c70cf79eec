"""Request and response bodies for API keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from services.api.principal import ScopeName
from services.api.schemas import StrictModel, timestamp

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
    name: KeyName
    scope: ScopeName = Field(description="`resolve` < `read` < `write` < `admin`: each allows what those before it do.")
    expires_at: AwareDatetime | None = Field(None, description="When the key stops working; never when null.")

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


class KeyRead(BaseModel):
    """An API key. `secret` is set only in the response that created it."""

    object: Literal["api_key"]
    id: str
    name: str
    scope: ScopeName
    secret: str | None
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


def key_body(row: Any, *, secret: str | None = None) -> dict[str, Any]:
    """The API key object of the contract: a `KeyRead`, the one shape the routes return and
    OpenAPI shows, as JSON-ready values."""
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
    ).model_dump(mode="json")
