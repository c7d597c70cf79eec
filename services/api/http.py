"""HTTP plumbing: the one way to make an entity tag, the one parser of entity-tag lists
(`If-None-Match`, `If-Match`), and conditional GETs of versioned objects."""

from __future__ import annotations

import hashlib
from typing import Any, AnyStr

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from services.api.principal import current_key, seen_by


def content_hash(data: bytes) -> str:
    """A short hash of `data`: the same state gives the same tag on every replica."""
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def etag(value: int | bytes) -> str:
    """The strong ETag of a versioned object (`"<version>"`) or of a rendered state
    (`"<hash of its bytes>"`)."""
    if isinstance(value, int):
        return f'"{value}"'
    return f'"{content_hash(value)}"'


def listed(header: AnyStr, tag: AnyStr, *, weak: bool) -> bool:
    """True when the entity-tag list `header` is `*` or names `tag` (RFC 9110, 8.8.3).

    `weak=True` is the weak comparison of `If-None-Match` (a `W/` prefix is ignored);
    `weak=False` the strong one of `If-Match`, where a weak tag never matches. Works on
    `str` and on the raw `bytes` the fast path reads from the ASGI scope.
    """
    if isinstance(header, bytes):
        comma, star, weak_prefix = b",", b"*", b"W/"
    else:
        comma, star, weak_prefix = ",", "*", "W/"
    for candidate in header.split(comma):
        candidate = candidate.strip()
        if candidate == star:
            return True
        if candidate.startswith(weak_prefix):
            if not weak:
                continue
            candidate = candidate[2:]
        if candidate == tag:
            return True
    return False


def if_none_match(request: Request, tag: str) -> bool:
    """True when the client's `If-None-Match` already names this ETag (or `*`)."""
    header = request.headers.get("if-none-match")
    return header is not None and listed(header, tag, weak=True)


def not_modified(tag: str) -> Response:
    return Response(status_code=304, headers={"ETag": tag})


def object_response(
    request: Request,
    body: dict[str, Any],
    *,
    status_code: int = 200,
    location: str | None = None,
) -> Response:
    """A versioned JSON object with its strong ETag (`"<version>"`), as the request's key
    sees it (`principal.seen_by`); 304 for a matching conditional GET."""
    body = seen_by(current_key(request.scope), body)
    tag = etag(body["version"])
    if request.method == "GET" and if_none_match(request, tag):
        return not_modified(tag)
    headers = {"ETag": tag}
    if location is not None:
        headers["Location"] = location
    return JSONResponse(body, status_code=status_code, headers=headers)
