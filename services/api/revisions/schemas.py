"""The revision object of the contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

from services.api.schemas import timestamp


class RevisionRead(BaseModel):
    object: Literal["revision"]
    id: str
    agent_id: str
    target: Literal["agent", "variant", "experiment"]
    target_id: str
    action: str
    actor: str | None
    api_key: str | None
    active_variant_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: str


def revision_read(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The revision object of the contract: a `RevisionRead`, the one shape routes return
    and OpenAPI shows, as JSON-ready values (`before` and `after` as they were stored)."""
    return RevisionRead(
        object="revision",
        id=row["id"],
        agent_id=row["agent_id"],
        target=row["target"],
        target_id=row["target_id"],
        action=row["action"],
        actor=row["actor"],
        api_key=row["api_key"],
        active_variant_id=row["active_variant_id"],
        before=row["before"],
        after=row["after"],
        created_at=timestamp(row["created_at"]),
    ).model_dump(mode="json")
