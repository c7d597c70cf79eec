"""The undo object of the contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from services.api.revisions.schemas import RevisionRead


class UndoRead(BaseModel):
    object: Literal["undo"]
    reverted_revision_id: str
    revision: RevisionRead
