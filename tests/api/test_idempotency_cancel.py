"""An idempotent request cancelled (by its deadline) right after its claim committed lets
go of the claim: a retry runs at once instead of getting 409 `idempotency_key_in_use` for
the 60 s lease (issue 16, found in review)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.api.app import create_app
from services.api.db import Database, Unit
from services.shared.identifiers import new_id
from tests.helpers import admin_key, config, settings_for_tests

pytestmark = pytest.mark.live


class SlowAfterFirstCommit(Database):
    """A database whose first transaction (the request's claim) commits, then takes a while
    to return: time enough for the request to be cancelled right after the claim."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transactions = 0

    async def transaction(self, unit: Unit[Any], *, attempts: int = 6) -> Any:
        result = await super().transaction(unit, attempts=attempts)
        self.transactions += 1
        if self.transactions == 1:
            await asyncio.sleep(30)
        return result


async def test_a_request_cancelled_after_its_claim_lets_go_of_the_key(live_url: str) -> None:
    plain = Database.from_url(live_url)
    secret = await admin_key(plain, f"cancelled-claim-{new_id('api_key').lower()[-12:]}")
    slow = SlowAfterFirstCommit(engine=plain.engine)
    app = create_app(settings_for_tests(), database=slow)
    headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "cancelled-claim"}
    body = {"name": "Cancelled claim", "config": config()}
    claims = text("SELECT count(*) FROM idempotency_keys WHERE key LIKE :pattern").bindparams(
        pattern="%:cancelled-claim"
    )
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            request = asyncio.ensure_future(http.post("/v1/agents", json=body, headers=headers))
            async with plain.read() as conn:
                for _ in range(200):  # until the claim has committed
                    if await conn.scalar(claims):
                        break
                    await asyncio.sleep(0.01)
                assert await conn.scalar(claims) == 1
                request.cancel()  # as the request's deadline does
                with pytest.raises(asyncio.CancelledError):
                    await request
                for _ in range(200):  # the claim is let go of
                    if not await conn.scalar(claims):
                        break
                    await asyncio.sleep(0.01)
                assert await conn.scalar(claims) == 0, "the cancelled request still holds the key"
        retry_app = create_app(settings_for_tests(), database=plain)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=retry_app), base_url="http://test") as http:
            retry = await http.post("/v1/agents", json=body, headers=headers)
        assert retry.status_code == 201, retry.text
    finally:
        await plain.dispose()
