"""The console names a `live` arm for what it serves: before the start, the config that will
be live then; after, the variant it took."""

from __future__ import annotations

from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from tests.console.conftest import Browser


async def test_the_experiment_page_names_a_live_arm(admin: Browser, db) -> None:
    key = await keys_service.create_key(db, KeyCreate(name="live-arms-api", scope="admin"))
    api = {"Authorization": f"Bearer {key['secret']}"}
    http = admin.http
    agent = (
        await http.post(
            "/v1/agents",
            headers=api,
            json={"name": "Live arms", "config": {"model_provider": "openai", "model_name": "gpt-4o"}},
        )
    ).json()
    variant = (
        await http.post(f"/v1/agents/{agent['id']}/variants", headers=api, json={"variant_name": "Concise"})
    ).json()
    other = (await http.post(f"/v1/agents/{agent['id']}/variants", headers=api, json={"variant_name": "Long"})).json()
    experiment = (
        await http.post(
            f"/v1/agents/{agent['id']}/experiments",
            headers=api,
            json={
                "name": "Live test",
                "arms": [{"variant": "live", "weight": 1}, {"variant": other["id"], "weight": 1}],
            },
        )
    ).json()
    page = f"/console/agents/{agent['slug']}/experiments/{experiment['id']}"

    draft = await admin.page(page)
    assert "Control: the live config at start" in draft and "base config" not in draft

    await http.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate", headers=api)
    started = await http.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/start", headers=api)
    assert started.status_code == 200, started.text
    running = await admin.page(page)
    assert f"Control: {variant['slug']} (live at start)" in running
