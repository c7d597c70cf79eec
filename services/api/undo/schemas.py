"""The undo object of the contract."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.revisions.schemas import REVISION_EXAMPLE, RevisionRead
from services.api.schemas import EXAMPLE_IDS, EXAMPLE_TIMES

UNDO_EXAMPLE: dict[str, Any] = {
    "object": "undo",
    "reverted_revision_id": EXAMPLE_IDS["earlier_revision"],
    "revision": {
        **REVISION_EXAMPLE,
        "action": "undo",
        "active_variant_id": EXAMPLE_IDS["variant"],
        "before": {"object": "variant", "id": EXAMPLE_IDS["variant"], "overrides": {"temperature": 0.9}},
        "after": {"object": "variant", "id": EXAMPLE_IDS["variant"], "overrides": {"temperature": 0.2}},
        "created_at": EXAMPLE_TIMES[2],
    },
}


class UndoRead(BaseModel):
    """The change that was reverted, and the revision that records the reversal."""

    model_config = ConfigDict(json_schema_extra={"examples": [UNDO_EXAMPLE]})

    object: Literal["undo"] = Field(description="Always `undo`.")
    reverted_revision_id: str = Field(description="The revision whose change was reverted.")
    revision: RevisionRead = Field(description="The new revision, with action `undo`.")
