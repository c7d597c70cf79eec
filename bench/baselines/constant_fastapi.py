"""Baseline (c): a bare FastAPI app returning the resolved body's bytes (no middleware)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Response

BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()

app = FastAPI()


@app.get("/v1/agents/{agent}/resolved")
async def resolved(agent: str) -> Response:
    return Response(BODY, media_type="application/json")
