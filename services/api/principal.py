"""Who makes a request: the scopes a key may have, and the key the access gate verified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from starlette.types import Scope

# Each scope allows what the ones before it allow: admin > write > read > resolve.
ScopeName = Literal["resolve", "read", "write", "admin"]
SCOPES: tuple[str, ...] = get_args(ScopeName)
RANK = {scope: rank for rank, scope in enumerate(SCOPES)}

# Where the gate puts the verified key in the ASGI scope.
SCOPE_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    """A key as the gate sees it. `expires_at` and `revoked_at` are Unix times; `rank`
    orders scopes (resolve 0 ... admin 3)."""

    id: str
    name: str
    scope: str
    rank: int
    digest: bytes
    expires_at: float | None
    revoked_at: float | None
    # The environment a bound key is bound to (its id), or None (contract 1.1).
    environment_id: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Principal:
        return cls(
            id=row["id"],
            name=row["name"],
            scope=row["scope"],
            rank=RANK[row["scope"]],
            digest=bytes(row["secret_hash"]),
            expires_at=row["expires_at"].timestamp() if row["expires_at"] else None,
            revoked_at=row["revoked_at"].timestamp() if row["revoked_at"] else None,
        )


def current_key(scope: Scope) -> Principal | None:
    """The API key the gate verified for this request (None while auth is off)."""
    return scope.get(SCOPE_KEY)
