"""Small helpers for shaping HTTP replies: ETags and conditional GETs."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response


def etag_of(version: int) -> str:
    return f'"{version}"'


def if_none_match(request: Request, etag: str) -> bool:
    """True when the client's `If-None-Match` already names this ETag (or `*`)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


def object_response(
    request: Request,
    body: dict[str, Any],
    *,
    status_code: int = 200,
    location: str | None = None,
) -> Response:
    """A versioned JSON object with its strong ETag (`"<version>"`); 304 for a matching
    conditional GET."""
    etag = etag_of(body["version"])
    headers = {"ETag": etag}
    if request.method == "GET" and if_none_match(request, etag):
        return Response(status_code=304, headers=headers)
    if location is not None:
        headers["Location"] = location
    return JSONResponse(body, status_code=status_code, headers=headers)
