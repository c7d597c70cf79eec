from tests.helpers import create_agent


async def test_create_and_get(client):
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['slug']}")
    assert response.status_code == 200
    assert response.json()["id"] == agent["id"]
