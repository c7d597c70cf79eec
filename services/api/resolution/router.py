"""GET /v1/agents/{agent}/resolved: the hot path agents call."""

from __future__ import annotations

import hashlib
import json

from fastapi import APIRouter, Query, Request, Response

from services.api.deps import DB
from services.api.errors import responses
from services.api.exceptions import FieldError, ValidationFailed
from services.api.http import if_none_match
from services.api.resolution.schemas import ResolvedRead, to_body
from services.shared.agent_config import resolve_agent_config

router = APIRouter(prefix="/v1/agents/{agent}", tags=["resolution"])


def _etag(payload: bytes) -> str:
    # A hash of the body: the same state gives the same ETag on every replica.
    return '"' + hashlib.blake2b(payload, digest_size=12).hexdigest() + '"'


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
    explain: bool = Query(False, description="Add `provenance`: where each value came from."),
) -> Response:
    if variant is not None and subject is not None:
        raise ValidationFailed(
            "Invalid query: 'variant' (preview) cannot be combined with 'subject'",
            errors=[FieldError("variant", "cannot be combined with 'subject'"),
                    FieldError("subject", "cannot be combined with 'variant'")],
        )
    async with db.read() as conn:
        resolved = await resolve_agent_config(conn, agent, variant=variant)
    payload = json.dumps(to_body(resolved, explain=explain), separators=(",", ":")).encode()
    etag = _etag(payload)
    if if_none_match(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(payload, media_type="application/json", headers={"ETag": etag})
