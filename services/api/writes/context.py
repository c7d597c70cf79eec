"""What every write carries besides its body: who makes it, and the version it expects."""

from __future__ import annotations

from dataclasses import dataclass

from services.api.exceptions import PreconditionFailed
from services.api.http import etag, listed


@dataclass(frozen=True, slots=True)
class WriteContext:
    """`actor` is the `X-Actor` header (a tool acting for a person), `api_key` the name of
    the key that authenticated (None while auth is off), `if_match` the `If-Match` header,
    `bound_to` the environment id the key is bound to (None for an unbound key): such a key
    may change a shared definition only when the change alters nothing another environment
    serves now (`writes.serving`)."""

    actor: str | None = None
    api_key: str | None = None
    if_match: str | None = None
    bound_to: str | None = None

    def check_version(self, version: int, *, what: str) -> None:
        """412 unless `If-Match` is absent, `*`, or names this version's strong ETag."""
        if self.if_match is None:
            return
        # Weak tags (W/"3") never match: If-Match uses the strong comparison (RFC 9110).
        if listed(self.if_match, etag(version), weak=False):
            return
        raise PreconditionFailed(f'If-Match {self.if_match} does not match the current ETag of the {what}, "{version}"')

    def without_precondition(self) -> WriteContext:
        """The same author, checking no version (the steps of an undo check their own)."""
        return WriteContext(actor=self.actor, api_key=self.api_key, bound_to=self.bound_to)


NO_CONTEXT = WriteContext()
