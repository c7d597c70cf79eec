"""Baseline (c): a bare FastAPI app returning the service's resolved response (no middleware)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI, Response

BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()
# The service's headers but those Response makes itself from the body and media type.
HEADERS = {
    name: value
    for name, value in json.loads(Path(os.environ["BENCH_HEADERS_FILE"]).read_text())
    if name not in ("content-type", "content-length")
}

app = FastAPI()


@app.get("/v1/agents/{agent}/resolved")
async def resolved(agent: str) -> Response:
    return Response(BODY, media_type="application/json", headers=HEADERS)
