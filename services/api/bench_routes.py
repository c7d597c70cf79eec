"""Baselines for `make bench`, mounted only with BENCH_ROUTES=1 (never in production).

- `GET /bench/constant`: a FastAPI route returning constant bytes the size of a resolved
  config (the framework's ceiling);
- `GET /bench/raw`: the same bytes from a raw ASGI callable in front of FastAPI (the
  server's ceiling);
- `GET /bench/naive/{agent}`: resolution the way a typical FastAPI app does it: two ORM
  queries (the agent, then its active variant) and a Pydantic model.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.deps import DB
from services.api.models import Agent, Variant
from services.shared.agent_config import CONFIG_FIELDS

# About the size of a resolved config with a short prompt.
CONSTANT = b'{"object":"resolved_agent_config","padding":"' + b"x" * 600 + b'"}'

router = APIRouter(prefix="/bench", include_in_schema=False)


@router.get("/constant")
async def constant() -> Response:
    return Response(CONSTANT, media_type="application/json")


class NaiveResolved(BaseModel):
    agent_id: str
    variant_id: str | None
    config: dict[str, Any]


@router.get("/naive/{agent}", response_model=NaiveResolved)
async def naive(agent: str, db: DB) -> NaiveResolved:
    assert db.engine is not None
    async with AsyncSession(db.engine) as session:
        row = (await session.execute(select(Agent).where(Agent.slug == agent))).scalar_one_or_none()
        if row is None:
            raise HTTPException(404)
        variant = (
            await session.execute(select(Variant).where(Variant.agent_id == row.id, Variant.is_active))
        ).scalar_one_or_none()
        config = {}
        for name in CONFIG_FIELDS:
            value = getattr(variant, name) if variant is not None else None
            config[name] = value if value is not None else getattr(row, name)
        return NaiveResolved(agent_id=row.id, variant_id=variant.id if variant else None, config=config)


class RawConstant:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/raw":
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(CONSTANT)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": CONSTANT})
            return
        await self.app(scope, receive, send)


def include(app: FastAPI) -> None:
    """The FastAPI baselines; `create_app` puts `RawConstant` in front of everything."""
    app.include_router(router)
