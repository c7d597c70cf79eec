"""Idempotency-Key on POST: a retried request gets the first response, never a second effect.

The first request with a key claims it (a row, `in_flight`), runs, and stores its
response (`done`). A request with the same key and the same fingerprint (method, path,
canonical JSON body, and the `If-Match` and `X-Actor` headers) gets that response again
with `Idempotent-Replayed: true`; with another fingerprint, 409 `idempotency_key_reused`;
while the first is still running, 409 `idempotency_key_in_use`. Keys live 24 hours. A claim whose process died is
retaken after its lease runs out. A 5xx is not stored: the key is released so a retry runs again;
nor is a 415 (it answers the Content-Type, which the fingerprint leaves out).

Exactly once across a crash: each transaction the request commits saves its result in
the key's row (`effects`) in that same transaction (`db.EffectLog`). A process that dies
after the change committed but before the response was stored leaves the key `in_flight`
with its effects; the retry that takes the key over (after the lease) runs the route again,
and each of its transactions returns the saved result instead of acting, so the client gets
the response of the one change that happened (as Stripe stores a request's recovery point
with its effect).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import case, delete, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningInsert
from starlette.requests import Request
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api import failpoints
from services.api.db import Database, EffectLog, effects_logged
from services.api.errors import database_unavailable, problem
from services.api.exceptions import FieldError, KeyTakenOver
from services.api.limits import PayloadTooLarge
from services.api.models import IdempotencyKey, table_of
from services.api.principal import current_key
from services.api.strict import loads, parse_body

log = logging.getLogger(__name__)

keys = table_of(IdempotencyKey)

HEADER = b"idempotency-key"
KEY_MAX_LENGTH = 255
TTL = timedelta(hours=24)
# How long an in-flight claim holds before another request may take it over.
LEASE = timedelta(seconds=60)
# Response headers worth replaying (the body's type, where it lives, its version).
REPLAYED_HEADERS = ("content-type", "location", "etag", "cache-control", "allow")


# Request headers that change what a request means: a retry sends them again unchanged.
FINGERPRINTED_HEADERS = (b"if-match", b"x-actor")


def fingerprint(
    method: str, path: str, body: bytes, headers: tuple[bytes, ...] = (), *, scope: Scope | None = None
) -> str:
    """Method, path (with its query string), body and the headers that give it meaning
    (`If-Match`, `X-Actor`). JSON bodies that differ only in key order or spacing are the
    same body, `null` and `{}` are not. A body the route refuses to read as JSON (a key
    repeated, not UTF-8: `strict.loads`) counts by its bytes. With the request's `scope`,
    the route reuses the parsed body."""
    try:
        value = loads(body) if scope is None else parse_body(scope, body)
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        payload = b"json:" + canonical.encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):  # nested too deep for json.loads is not JSON either
        payload = b"raw:" + body  # not JSON (or empty): the bytes themselves
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode("utf-8", "surrogateescape"), payload, *headers):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _meaningful_headers(scope: Scope) -> tuple[bytes, ...]:
    """`name:value` of each fingerprinted header present, in a fixed order."""
    present = dict((name, value) for name, value in scope["headers"] if name in FINGERPRINTED_HEADERS)
    return tuple(name + b":" + present[name] for name in FINGERPRINTED_HEADERS if name in present)


async def claim(db: Database, key: str, print_: str, owner: str) -> dict[str, Any]:
    """Claim `key` for this request (as `owner`), or say why not: {"outcome": "claimed" |
    "replay" | "reused" | "in_use", ...}."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        now = func.now()
        fresh = {
            "fingerprint": print_,
            "state": "in_flight",
            "owner": owner,
            "response_status": None,
            "response_headers": None,
            "response_body": None,
            "locked_until": now + LEASE,
            "created_at": now,
            "expires_at": now + TTL,
        }
        insert = pg_insert(keys).values(key=key, **fresh)
        excluded = insert.excluded
        expired = keys.c.expires_at < now
        statement: ReturningInsert[Any] = insert.on_conflict_do_update(
            index_elements=["key"],
            # An abandoned claim's effects are kept: the retry replays them.
            set_={
                **{name: getattr(excluded, name) for name in fresh},
                "effects": case((expired, None), else_=keys.c.effects),
            },
            # Take the row over only when it expired, or when its claim was abandoned by
            # a process that died running this same request.
            where=expired
            | ((keys.c.state == "in_flight") & (keys.c.locked_until < now) & (keys.c.fingerprint == print_)),
        ).returning(literal_column("1"), keys.c.effects)
        claimed = (await conn.execute(statement)).first()
        if claimed is not None:
            return {"outcome": "claimed", "effects": claimed[1] or []}
        row = (await conn.execute(select(keys).where(keys.c.key == key))).mappings().one()
        if row["fingerprint"] != print_:
            return {"outcome": "reused"}
        if row["state"] == "in_flight":
            return {"outcome": "in_use"}
        return {
            "outcome": "replay",
            "status": row["response_status"],
            "headers": row["response_headers"],
            "body": row["response_body"],
        }

    return await db.transaction(unit)


async def complete(db: Database, key: str, owner: str, status: int, headers: dict[str, str], body: bytes) -> None:
    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(
            update(keys)
            .where(keys.c.key == key, keys.c.owner == owner, keys.c.state == "in_flight")
            .values(state="done", response_status=status, response_headers=headers, response_body=body)
        )

    await db.transaction(unit)


async def release(db: Database, key: str, owner: str) -> None:
    """Let a retry run the request again: forget the claim, or, when the request already
    committed an effect, end its lease so a retry takes it over at once and replays it."""

    async def unit(conn: AsyncConnection) -> None:
        mine = (keys.c.key == key) & (keys.c.owner == owner) & (keys.c.state == "in_flight")
        await conn.execute(delete(keys).where(mine, keys.c.effects.is_(None)))
        await conn.execute(update(keys).where(mine, keys.c.effects.is_not(None)).values(locked_until=func.now()))

    await db.transaction(unit)


def effect_log(key: str, owner: str, path: str, saved: list[Any]) -> EffectLog:
    """The request's effects: those saved by a run that died (`saved`), and how to save a
    new one in the transaction that commits it (a created key's secret never is)."""
    statement = text(
        "UPDATE idempotency_keys"
        " SET effects = coalesce(effects, '[]'::jsonb) || jsonb_build_array(CAST(:effect AS jsonb))"
        " WHERE key = :key AND owner = :owner AND state = 'in_flight'"
    )

    async def save(conn: AsyncConnection, result: Any) -> None:
        effect = without_secret(path, json.dumps(result, separators=(",", ":")).encode())
        saved_rows = await conn.execute(statement, {"effect": effect.decode(), "key": key, "owner": owner})
        if saved_rows.rowcount != 1:  # another request took the key over: this one must not act
            raise KeyTakenOver(f"Idempotency key '{key}' was taken over by a retry; this attempt is rolled back")

    return EffectLog(task=asyncio.current_task(), saved=list(saved), save=save)


async def purge_expired(db: Database) -> int:
    """Delete keys past their 24 hours; returns how many."""

    async def unit(conn: AsyncConnection) -> int:
        result = await conn.execute(delete(keys).where(keys.c.expires_at < func.now()))
        return result.rowcount or 0

    return await db.transaction(unit)


# POSTs that only read (contract 1.1): `POST .../resolve` and `.../render` take a body only
# because a context or variables do not fit a query string; they ignore `Idempotency-Key`.
_READ_ACTIONS = frozenset({"resolve", "render"})


def is_read(path: str) -> bool:
    """Whether a POST to `path` is a read (`/v1/agents/{agent}/resolve`, `.../render`; OFREP's
    `/ofrep/v1/...` lies outside /v1 and never reaches this middleware)."""
    parts = path.split("/")
    return len(parts) == 5 and parts[1:3] == ["v1", "agents"] and parts[4] in _READ_ACTIONS


class IdempotencyMiddleware:
    """Applies Idempotency-Key to every POST under /v1."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not get_route_path(scope).startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if is_read(get_route_path(scope)):
            await self.app(scope, receive, send)
            return
        raw_key = next((value for name, value in scope["headers"] if name == HEADER), None)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        request = Request(scope)  # for the problem documents' `instance`
        if not 1 <= len(key) <= KEY_MAX_LENGTH:
            message = f"must be 1 to {KEY_MAX_LENGTH} characters"
            await problem(
                "validation_error",
                f"Invalid request: Idempotency-Key: {message}",
                request=request,
                errors=[FieldError("Idempotency-Key", message)],
            )(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except PayloadTooLarge as error:
            await problem("payload_too_large", str(error.detail), request=request)(scope, receive, send)
            return
        if body is None:
            return  # the client left before sending its whole body: claim nothing

        db: Database = scope["app"].state.db
        caller = current_key(scope)
        stored_key = storage_key(caller.id if caller is not None else None, key)
        target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
        owner = secrets.token_hex(16)
        try:
            print_ = fingerprint(scope["method"], target, body, _meaningful_headers(scope), scope=scope)
            outcome = await claim(db, stored_key, print_, owner)
        except asyncio.CancelledError:
            # Cancelled while claiming (the request's deadline): the claim may have committed.
            # Let go of it, or every retry would be 409 idempotency_key_in_use until the lease
            # ran out, for a request that did nothing. Shielded: a second cancel cannot stop it.
            await asyncio.shield(release(db, stored_key, owner))
            raise
        except Exception as error:
            # Outside the app's exception handlers: map an unreachable database here.
            if not database_unavailable(error):
                raise
            log.warning("idempotency claim failed, database unavailable: %s", error)
            await problem(
                "service_unavailable",
                "The database is unavailable; retry shortly",
                request=request,
                headers={"Retry-After": "1"},
            )(scope, receive, send)
            return
        if outcome["outcome"] == "reused":
            await problem(
                "idempotency_key_reused",
                f"Idempotency key '{key}' was previously used with different parameters",
                request=request,
            )(scope, receive, send)
            return
        if outcome["outcome"] == "in_use":
            await problem(
                "idempotency_key_in_use",
                f"A request with idempotency key '{key}' is still in flight; retry when it has finished",
                headers={"Retry-After": "1"},
                request=request,
            )(scope, receive, send)
            return
        if outcome["outcome"] == "replay":
            headers = [(name.encode(), value.encode("latin-1")) for name, value in outcome["headers"].items()]
            headers += [(b"idempotent-replayed", b"true"), (b"content-length", str(len(outcome["body"])).encode())]
            await send({"type": "http.response.start", "status": outcome["status"], "headers": headers})
            await send({"type": "http.response.body", "body": outcome["body"]})
            return
        await self._run_and_store(scope, body, receive, send, db, stored_key, owner, outcome["effects"])

    async def _run_and_store(
        self,
        scope: Scope,
        body: bytes,
        receive: Receive,
        send: Send,
        db: Database,
        key: str,
        owner: str,
        saved: list[Any],
    ) -> None:
        sent_body = False

        async def replay_receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the real stream (a disconnect, say)

        status = 500
        headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.decode("latin-1").lower() in REPLAYED_HEADERS:
                        headers[name.decode("latin-1").lower()] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            with effects_logged(effect_log(key, owner, get_route_path(scope), saved)):
                await self.app(scope, replay_receive, capture)
        except BaseException:
            await release(db, key, owner)
            raise
        failpoints.hit("idempotency.before_storing_the_response")
        if status >= 500 or status == UNSUPPORTED_MEDIA_TYPE:
            # A failure is not an answer: let a retry run again. Nor is a 415: it answers the
            # Content-Type header, which the fingerprint leaves out, so a retry that fixes the
            # header must run rather than get the 415 again (nothing ran: nothing to replay).
            await release(db, key, owner)
        else:
            await complete(db, key, owner, status, headers, without_secret(get_route_path(scope), b"".join(chunks)))


UNSUPPORTED_MEDIA_TYPE = 415


def storage_key(api_key_id: str | None, key: str) -> str:
    """Each API key has its own idempotency keys (as at Stripe): another API key's request
    under the same Idempotency-Key is a request of its own, never a replay of another's."""
    return key if api_key_id is None else f"{api_key_id}:{key}"


def without_secret(path: str, body: bytes) -> bytes:
    """What may be stored of a response: a created API key's secret never is (a replay
    answers `"secret": null`, as the contract says)."""
    if path.rstrip("/") != "/v1/keys":
        return body
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if isinstance(document, dict) and document.get("secret") is not None:
        document["secret"] = None
        return json.dumps(document, separators=(",", ":")).encode()
    return body


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected before its end."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            return None
