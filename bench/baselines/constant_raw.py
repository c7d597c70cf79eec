"""Baseline (e): a raw ASGI callable returning the service's resolved response, whatever is asked."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()
HEADERS = [
    (name.encode("latin-1"), value.encode("latin-1"))
    for name, value in json.loads(Path(os.environ["BENCH_HEADERS_FILE"]).read_text())
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
