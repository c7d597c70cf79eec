"""Baseline (d): resolution the way a typical FastAPI app does it, in a process of its own:
two ORM queries (the agent by slug, then the variant active in production, through the
activations table) and a Pydantic model."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from services.api.models import Activation, Agent, Variant
from services.shared.agent_config import CONFIG_FIELDS
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID

engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=10, max_overflow=0)
sessions = async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


class Resolved(BaseModel):
    agent_id: str
    variant_id: str | None
    config: dict[str, Any]


@app.get("/v1/agents/{agent}/resolved", response_model=Resolved)
async def resolved(agent: str) -> Resolved:
    async with AsyncSession(engine) as session:
        row = (await session.execute(select(Agent).where(Agent.slug == agent))).scalar_one_or_none()
        if row is None:
            raise HTTPException(404)
        active = select(Variant).join(Activation, Activation.variant_id == Variant.id)
        variant = (
            await session.execute(
                active.where(Activation.agent_id == row.id, Activation.environment_id == PRODUCTION_ENVIRONMENT_ID)
            )
        ).scalar_one_or_none()
        config = {}
        for name in CONFIG_FIELDS:
            value = getattr(variant, name) if variant is not None else None
            config[name] = value if value is not None else getattr(row, name)
        return Resolved(agent_id=row.id, variant_id=variant.id if variant else None, config=config)
