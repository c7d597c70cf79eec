"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from services.api.db import Database
from services.api.schemas import cursor


def get_db(request: Request) -> Database:
    return request.app.state.db


DB = Annotated[Database, Depends(get_db)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1-100.")]
_AFTER = Query(description="The id of the last item already seen; the page starts after it.")
AgentCursor = Annotated[str | None, _AFTER, cursor("agent")]
VariantCursor = Annotated[str | None, _AFTER, cursor("variant")]
