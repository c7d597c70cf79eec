"""Baseline (f): a raw ASGI callable that runs the one resolve query (the service's own SQL,
by slug, in production, on an asyncpg pool of the service's default read pool size) and
returns the row as JSON. Its pool resets nothing on release, as the service's does not
(asyncpg's default reset is a second round trip per query)."""

from __future__ import annotations

import json
import os
from typing import Any

import asyncpg

from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID
from services.shared.resolution_query import _sql

# By slug, in production (by id): the service's statement for a plain `/resolved`.
SQL, NAMES = _sql(("slug", "id", None))
PREFIX, SUFFIX = "/v1/agents/", "/resolved"
pool: asyncpg.Pool | None = None


def dsn() -> str:
    return os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")


async def nothing_to_reset(_: asyncpg.Connection) -> None:
    pass


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                pool = await asyncpg.create_pool(dsn(), min_size=10, max_size=10, reset=nothing_to_reset)
                await send({"type": "lifespan.startup.complete"})
            else:
                if pool is not None:
                    await pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert pool is not None
    path = scope["path"]
    params = {"agent": path[len(PREFIX) : -len(SUFFIX)], "environment": PRODUCTION_ENVIRONMENT_ID}
    row = await pool.fetchrow(SQL, *(params[name] for name in NAMES))
    if row is None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps(dict(row.items())).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
