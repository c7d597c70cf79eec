"""GET /v1/agents/{agent}/resolved: the hot path agents call."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from services.api.deps import DB
from services.api.errors import responses
from services.api.exceptions import FieldError, ValidationFailed
from services.api.http import if_none_match, not_modified
from services.api.principal import current_key
from services.api.resolution import bundle, service, watch
from services.api.resolution.cache import ResolveCache
from services.api.resolution.schemas import BundleRead, ResolvedRead
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/agents/{agent}", tags=["resolution"], route_class=StrictRoute)


@router.get(
    "/resolved",
    response_model=ResolvedRead,
    summary="Resolve the agent's config (active variant over base), or preview a variant",
    responses=responses(404, 422),
)
async def resolve(
    request: Request,
    agent: str,
    db: DB,
    variant: str | None = Query(None, description="Preview: resolve as if this variant (id or slug) were active."),
    subject: str | None = Query(None, max_length=256, description="The subject an experiment assigns an arm to."),
    at: Annotated[
        AwareDatetime | None, Query(description="What resolution returned at this instant (RFC 3339, with offset).")
    ] = None,
    explain: bool = Query(False, description="Add `provenance`: where each value came from."),
) -> Response:
    """The config the agent runs with: the active variant's overrides over the agent's base
    config (field by field), or the base config alone. `variant` previews a variant as if it
    were active; `subject` picks the subject's arm while an experiment runs; `at` answers
    what resolution returned at that instant; `explain` adds where each value came from. At
    most one of `variant`, `subject`, `at`. Carries an `ETag`: 304 for a matching
    `If-None-Match`."""
    given = [name for name, value in (("variant", variant), ("subject", subject), ("at", at)) if value is not None]
    if len(given) > 1:
        raise ValidationFailed(
            f"Invalid query: {' and '.join(given)} cannot be combined",
            errors=[
                FieldError(name, f"cannot be combined with {' or '.join(sorted(set(given) - {name}))}")
                for name in given
            ],
        )
    if at is not None:
        try:
            at = at.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC
            message = "must be an instant between years 1 and 9999 in UTC"
            raise ValidationFailed(f"Invalid request: at: {message}", errors=[FieldError("at", message)]) from None
    cache: ResolveCache | None = getattr(request.app.state, "resolve_cache", None)
    payload, tag = await service.resolve(db, cache, agent, variant=variant, subject=subject, at=at, explain=explain)
    if if_none_match(request, tag):
        return not_modified(tag)
    return Response(payload, media_type="application/json", headers={"ETag": tag})


@router.get(
    "/bundle",
    response_model=BundleRead,
    summary="Everything a client needs to resolve any subject locally (ETag; 304 on If-None-Match)",
    responses=responses(404),
)
async def get_bundle(request: Request, agent: str, db: DB) -> Response:
    """Everything a client needs to resolve any subject itself: the plain resolution and, while
    an experiment runs, its salt and every arm's resolved config. `etag` is a hash of the
    content, the same on every replica; 304 for a matching `If-None-Match`. The SDKs keep it
    current through the watch stream."""
    payload, token, _ = await bundle.build(db, agent)
    tag = f'"{token}"'  # the bundle's own `etag` field is the bare token
    if if_none_match(request, tag):
        return not_modified(tag)
    return Response(payload, media_type="application/json", headers={"ETag": tag})


@router.get(
    "/bundle/watch",
    summary="Server-sent events: the bundle now, then after every change that alters it",
    responses={
        **responses(404),
        200: {
            "content": {"text/event-stream": {}},
            "description": "`event: bundle` (id: the etag, data: the bundle), "
            "`: keepalive` comments, `event: deleted` at the end",
        },
    },
    response_class=StreamingResponse,
)
async def watch_bundle(
    request: Request,
    agent: str,
    db: DB,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=256,
            description="The etag the client has: the first event is skipped when it is current.",
        ),
    ] = None,
) -> StreamingResponse:
    """A server-sent event stream: at once `event: bundle` (id: the etag, data: the bundle),
    skipped when `Last-Event-ID` is current; then one after every change that alters the
    bundle, within the propagation bound; `: keepalive` at least every 15 s; `event:
    deleted` when the agent goes, and the stream ends."""
    # The first build happens here, so an unknown agent is a 404, not an empty stream.
    first, ticks = await request.app.state.watch_hub.first(agent, lambda ref: bundle.build(db, ref))
    stream = watch.stream(
        request.app.state, db, first, last_event_id, current_key(request.scope), ticks_before_first=ticks
    )
    return StreamingResponse(
        stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
