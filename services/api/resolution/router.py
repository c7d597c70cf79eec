"""GET /v1/agents/{agent}/resolved: the hot path agents call."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from services.api import tracing
from services.api.deps import DB, EnvironmentRef
from services.api.errors import responses
from services.api.exceptions import FieldError, ValidationFailed
from services.api.http import if_none_match, not_modified
from services.api.principal import current_key, request_environment
from services.api.resolution import bundle, prompt, service, watch
from services.api.resolution.cache import ResolveCache
from services.api.resolution.schemas import (
    BundleRead,
    RenderedRead,
    RenderRequest,
    ResolvedRead,
    ResolveRequest,
    check_attributes,
)
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/agents/{agent}", tags=["resolution"], route_class=StrictRoute)


@router.get(
    "/resolved",
    response_model=ResolvedRead,
    summary="Resolve the agent's config in an environment (rules, split, active variant, base), or preview",
    responses=responses(403, 404, 422),
)
async def resolve(
    request: Request,
    agent: str,
    db: DB,
    environment: EnvironmentRef,
    variant: str | None = Query(None, description="Preview: resolve as if this variant (id or slug) were active."),
    subject: str | None = Query(None, max_length=256, description="The subject an experiment assigns an arm to."),
    at: Annotated[
        AwareDatetime | None, Query(description="What resolution returned at this instant (RFC 3339, with offset).")
    ] = None,
    explain: bool = Query(False, description="Add `provenance`: where each value came from."),
) -> Response:
    """The config the agent runs with in the environment (`?environment=`, default the key's,
    else `production`), in the contract's order: the first targeting rule whose conditions
    hold for the context (`subject` and `attr.<name>=<value>` parameters, strings), the
    subject's arm of the running experiment, the active variant's overrides over the base
    config, the base config alone. `variant` previews a variant as if it were active; `at`
    answers what resolution returned at that instant; `explain` adds where each value came
    from. `variant` and `at` combine with no context nor each other. Carries an `ETag`: 304
    for a matching `If-None-Match`."""
    attributes = {name[5:]: value for name, value in request.query_params.multi_items() if name.startswith("attr.")}
    if attributes:
        names = [name for name, _ in request.query_params.multi_items() if name.startswith("attr.")]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            errors = [FieldError(name, "given more than once") for name in twice]
            raise ValidationFailed(f"Invalid query: {', '.join(twice)} given more than once", errors=errors)
        check_attributes(attributes, param="attr.")
    context = [name for name, value in (("subject", subject), ("attr.*", attributes or None)) if value is not None]
    given = [name for name, value in (("variant", variant), ("at", at)) if value is not None]
    if given and context:
        given += context
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
    payload, tag = await service.resolve(
        db,
        cache,
        agent,
        environment=environment,
        variant=variant,
        subject=subject,
        attributes=attributes,
        at=at,
        explain=explain,
    )
    tracing.annotate_resolution(payload)
    if if_none_match(request, tag):
        return not_modified(tag)
    return Response(payload, media_type="application/json", headers={"ETag": tag})


resolve.query_prefixes = ("attr.",)  # type: ignore[attr-defined]  # StrictRoute reads it


@router.post(
    "/resolve",
    response_model=ResolvedRead,
    summary="Resolve the agent's config for a context with typed attributes",
    responses=responses(400, 403, 404, 413, 415, 422),
)
async def resolve_context(
    request: Request,
    agent: str,
    body: ResolveRequest,
    db: DB,
    environment: EnvironmentRef,
    explain: bool = Query(False, description="Add `provenance`: where each value came from."),
) -> Response:
    """`GET .../resolved` for a context whose attributes keep their types (numbers and
    booleans as such): the same body and ETag. The environment is the body's, else the
    request's; naming two different ones is 422. A read: it ignores `Idempotency-Key`."""
    if body.environment is not None:
        sent = request_environment(current_key(request.scope), body.environment)  # a bound key's check
        named = "environment" in request.query_params
        environment = await service.body_environment(db, environment if named else None, sent)
    attributes = body.attributes or {}
    check_attributes(attributes, param="attributes.")
    cache: ResolveCache | None = getattr(request.app.state, "resolve_cache", None)
    payload, tag = await service.resolve(
        db, cache, agent, environment=environment, subject=body.subject, attributes=attributes, explain=explain
    )
    tracing.annotate_resolution(payload)
    if if_none_match(request, tag):
        return not_modified(tag)
    return Response(payload, media_type="application/json", headers={"ETag": tag})


@router.post(
    "/render",
    response_model=RenderedRead,
    summary="Render the prompts of the config a context gets, with your variables",
    responses=responses(400, 403, 404, 413, 415, 422),
)
async def render_prompts(
    request: Request, agent: str, body: RenderRequest, db: DB, environment: EnvironmentRef
) -> dict[str, Any]:
    """The config a context gets (as `POST .../resolve` answers it) or a `variant`'s preview,
    with its `system_prompt` and `user_prompt_template` rendered from `variables`: 422
    `missing_variable` for a required variable not given (and without a default),
    `unknown_variable` for one the config does not declare, `validation_error` for a value
    of the wrong type, each naming `variables.<name>`. Numbers render as ECMAScript's
    Number::toString does, booleans as `true`/`false`. A read: it ignores `Idempotency-Key`."""
    if "variant" in body.model_fields_set and body.model_fields_set & {"subject", "attributes"}:
        message = "a preview renders one variant for everyone: send variant, or subject and attributes, not both"
        raise ValidationFailed(f"Invalid request: variant: {message}", errors=[FieldError("variant", message)])
    if body.environment is not None:
        sent = request_environment(current_key(request.scope), body.environment)
        named = "environment" in request.query_params
        environment = await service.body_environment(db, environment if named else None, sent)
    attributes = body.attributes or {}
    check_attributes(attributes, param="attributes.")
    config = await prompt.resolved_for(
        db,
        getattr(request.app.state, "resolve_cache", None),
        agent,
        environment=environment,
        variant=body.variant,
        subject=body.subject,
        attributes=attributes,
    )
    return prompt.rendered(config, body.variables)


@router.get(
    "/bundle",
    response_model=BundleRead,
    summary="Everything a client needs to resolve any subject locally (ETag; 304 on If-None-Match)",
    responses=responses(403, 404, 422),
)
async def get_bundle(request: Request, agent: str, db: DB, environment: EnvironmentRef) -> Response:
    """Everything a client needs to resolve any subject itself: the plain resolution and, while
    an experiment runs, its salt and every arm's resolved config. `etag` is a hash of the
    content, the same on every replica; 304 for a matching `If-None-Match`. The SDKs keep it
    current through the watch stream."""
    payload, token, _ = await bundle.build(db, agent, environment)
    tag = f'"{token}"'  # the bundle's own `etag` field is the bare token
    tracing.annotate_resolution(payload)
    if if_none_match(request, tag):
        return not_modified(tag)
    return Response(payload, media_type="application/json", headers={"ETag": tag})


@router.get(
    "/bundle/watch",
    summary="Server-sent events: the bundle now, then after every change that alters it",
    responses={
        **responses(403, 404, 422),
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
    environment: EnvironmentRef,
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
    first, ticks = await request.app.state.watch_hub.first(
        agent, environment, lambda ref: bundle.build(db, ref, environment)
    )
    stream = watch.stream(
        request.app.state, db, first, environment, last_event_id, current_key(request.scope), ticks_before_first=ticks
    )
    return StreamingResponse(
        stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
