"""Who makes a request: the scopes a key may have, the key the access gate verified, and
the environment it may work in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from starlette.types import Scope

from services.api.exceptions import EnvironmentForbidden, FieldError
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID

# Each scope allows what the ones before it allow: admin > write > read > resolve.
ScopeName = Literal["resolve", "read", "write", "admin"]
SCOPES: tuple[str, ...] = get_args(ScopeName)
RANK = {scope: rank for rank, scope in enumerate(SCOPES)}

# Where the gate puts the verified key in the ASGI scope.
SCOPE_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    """A key as the gate sees it. `expires_at` and `revoked_at` are Unix times; `rank`
    orders scopes (resolve 0 ... admin 3). A key bound to an environment (contract 1.1)
    carries its id and slug; both are None for an unbound key."""

    id: str
    name: str
    scope: str
    rank: int
    digest: bytes
    expires_at: float | None
    revoked_at: float | None
    # The environment a bound key is bound to (its id and slug), or None (contract 1.1).
    environment_id: str | None = None
    environment_slug: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Principal:
        """From an `api_keys` row joined with its environment's slug (`environment_slug`)."""
        return cls(
            id=row["id"],
            name=row["name"],
            scope=row["scope"],
            rank=RANK[row["scope"]],
            digest=bytes(row["secret_hash"]),
            expires_at=row["expires_at"].timestamp() if row["expires_at"] else None,
            revoked_at=row["revoked_at"].timestamp() if row["revoked_at"] else None,
            environment_id=row["environment_id"],
            environment_slug=row["environment_slug"],
        )

    @property
    def bound(self) -> bool:
        return self.environment_id is not None


def seen_by(key: Principal | None, body: dict[str, Any]) -> dict[str, Any]:
    """An object as the key sees it. Contract 1.1: a bound key sees shared objects whole, and
    per-environment data only for its environment: a variant's `active_in` and an agent's
    `active_variants` keep its own environment's entry alone."""
    only = key.environment_slug if key is not None else None
    if only is None:
        return body
    if "active_in" in body:
        body = {**body, "active_in": [slug for slug in body["active_in"] if slug == only]}
    if "active_variants" in body:
        body = {**body, "active_variants": {slug: v for slug, v in body["active_variants"].items() if slug == only}}
    return body


def current_key(scope: Scope) -> Principal | None:
    """The API key the gate verified for this request (None while auth is off)."""
    return scope.get(SCOPE_KEY)


def request_environment(key: Principal | None, named: str | None) -> str:
    """The environment a request works in, as a reference (an id or a slug) for
    `environments.repository.named` or `hold` to look up (404 `resource_missing`, `param`
    `environment`, when unknown).

    `named` is what the request sends: `?environment=` (see `services.api.deps.environment_ref`,
    which calls this) or a body field `environment` (experiments, `POST .../resolve`,
    `POST .../render`: their services call this with the body's value and the request's key),
    None when it names none. Contract 1.1, "Environments": a request that names none works in
    its key's environment when the key is bound, else in `production`. A bound key that names
    another environment, by id or by slug, is refused: EnvironmentForbidden (403
    `environment_forbidden`, `param` `environment`), before any lookup: the same answer
    whether that environment exists or not, and no query. `key` is None while auth is off:
    then nothing is refused."""
    if key is None or key.environment_id is None:
        return named if named is not None else PRODUCTION_ENVIRONMENT_ID
    if named is not None and named not in (key.environment_id, key.environment_slug):
        raise EnvironmentForbidden(
            f"The API key '{key.name}' is bound to environment '{key.environment_slug}'; it cannot name '{named}'",
            errors=[FieldError("environment", f"the key is bound to '{key.environment_slug}'")],
        )
    return key.environment_id


def unbound_only(key: Principal | None, action: str) -> None:
    """Refuse `action` (a phrase: "create, change or delete environments") to a key bound to
    an environment: EnvironmentForbidden (403 `environment_forbidden`). What only an
    installation's unbound keys may do."""
    if key is not None and key.environment_id is not None:
        raise EnvironmentForbidden(
            f"The API key '{key.name}' is bound to environment '{key.environment_slug}'; "
            f"only a key bound to no environment may {action}"
        )
