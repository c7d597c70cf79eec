"""History use cases: list and read revisions. (Undo, which reverts through the other
services, is `services.api.undo`; what resolution was at an instant is `services.api.resolution`.)"""

from __future__ import annotations

from typing import Any

from services.api.db import Database
from services.api.exceptions import NotFound
from services.api.revisions import repository
from services.api.revisions.schemas import revision_read
from services.api.writes.locks import find_agent
from services.shared.identifiers import is_id


async def list_revisions(
    db: Database, agent_ref: str, *, after: str | None, limit: int, target_id: str | None
) -> list[dict[str, Any]]:
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref, archived=True)
        if target_id is not None and not any(
            is_id(kind, target_id) for kind in ("agent", "variant", "experiment", "environment")
        ):
            return []  # not an id of anything with revisions: it matches none
        rows = await repository.list_page(conn, agent.id, after=after, limit=limit, target_id=target_id)
        return [revision_read(row) for row in rows]


async def get_revision(db: Database, agent_ref: str, revision_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref, archived=True)
        row = await repository.get(conn, agent.id, revision_id) if is_id("revision", revision_id) else None
        if row is None:
            raise NotFound("Revision", revision_id)
        return revision_read(row)
