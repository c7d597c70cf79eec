"""History use cases: list and read revisions. (Undo, which reverts through the other
services, is `services.api.undo`; what resolution was at an instant is `services.api.resolution`.)"""

from __future__ import annotations

from typing import Any

from services.api.db import Database
from services.api.environments import repository as environments
from services.api.exceptions import NotFound
from services.api.revisions import repository
from services.api.revisions.schemas import revision_read
from services.api.writes.locks import find_agent
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, is_id


async def list_revisions(
    db: Database,
    agent_ref: str,
    *,
    after: str | None,
    limit: int,
    target_id: str | None,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    bound: bool = False,
) -> list[dict[str, Any]]:
    """The agent's history, newest first, seen from the environment; a `bound` key's
    request sees only the changes made in it and those to shared definitions."""
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref, archived=True)
        env = await environments.named(conn, environment)
        if target_id is not None and not any(
            is_id(kind, target_id) for kind in ("agent", "variant", "experiment", "environment")
        ):
            return []  # not an id of anything with revisions: it matches none
        rows = await repository.list_page(
            conn, agent.id, after=after, limit=limit, target_id=target_id, environment_id=env["id"] if bound else None
        )
        only = env["slug"] if bound else None
        return [revision_read(row, seen_from=env["slug"], only=only) for row in rows]


async def get_revision(
    db: Database, agent_ref: str, revision_id: str, *, environment: str = PRODUCTION_ENVIRONMENT_ID, bound: bool = False
) -> dict[str, Any]:
    """One revision, seen from the environment; to a `bound` key's request, one made in
    another environment does not exist."""
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref, archived=True)
        env = await environments.named(conn, environment)
        row = await repository.get(conn, agent.id, revision_id) if is_id("revision", revision_id) else None
        if row is None or (bound and row["environment_id"] not in (None, env["id"])):
            raise NotFound("Revision", revision_id)
        return revision_read(row, seen_from=env["slug"], only=env["slug"] if bound else None)
