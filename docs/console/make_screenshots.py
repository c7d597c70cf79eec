"""Make the README's console screenshots: a throwaway server on its own data directory,
the walk-through's agent with a variant and a running experiment, then Chromium.

    .venv/bin/python docs/console/make_screenshots.py
"""

import asyncio
import os
import random
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "console"
DATA = Path(tempfile.mkdtemp(prefix="av-screenshots-"))

PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
env = {**os.environ, "DATA_DIR": str(DATA), "LOG_LEVEL": "warning"}
env.pop("DATABASE_URL", None)
server = subprocess.Popen(
    [str(ROOT / ".venv" / "bin" / "agent-variants"), "serve", "--port", str(PORT)],
    env=env,
    cwd=ROOT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.STDOUT,
)


async def main():
    async with httpx.AsyncClient(base_url=BASE, timeout=20) as http:
        for _ in range(300):
            try:
                if (await http.get("/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        key = (DATA / "admin-key").open().read().strip()
        http.headers["Authorization"] = f"Bearer {key}"
        (
            await http.post(
                "/v1/agents",
                json={
                    "name": "Support Bot",
                    "description": "Answers customer questions.",
                    "config": {
                        "model_provider": "openai",
                        "model_name": "gpt-4o",
                        "system_prompt": "You are a helpful support agent.",
                        "user_prompt_template": "{question}",
                        "prompt_version": "v1",
                        "temperature": 0.7,
                        "context_window": 128000,
                        "max_tokens": 1024,
                        "input_token_limit": 8000,
                    },
                },
            )
        ).json()
        concise = (
            await http.post(
                "/v1/agents/support-bot/variants",
                json={
                    "variant_name": "Concise",
                    "overrides": {
                        "system_prompt": "You are a helpful support agent. Answer in two sentences.",
                        "max_tokens": 256,
                        "temperature": 0.3,
                        "prompt_version": "v2",
                    },
                },
            )
        ).json()
        await http.post(
            "/v1/agents/support-bot/variants",
            json={
                "variant_name": "Claude",
                "clone_from": "base",
                "overrides": {"model_provider": "anthropic", "model_name": "claude-sonnet"},
            },
        )
        exp = (
            await http.post(
                "/v1/agents/support-bot/experiments",
                json={
                    "name": "Concise vs base",
                    "arms": [{"variant": "base", "weight": 1}, {"variant": "concise", "weight": 1}],
                },
            )
        ).json()
        await http.post(f"/v1/agents/support-bot/experiments/{exp['id']}/start")
        rnd = random.Random(7)
        data = []
        for n in range(600):
            arm = n % 2
            data.append(
                {
                    "variant_id": concise["id"] if arm else None,
                    "experiment_id": exp["id"],
                    "subject": f"user-{n}",
                    "input_tokens": rnd.randint(300, 900),
                    "output_tokens": rnd.randint(60, 200) if arm else rnd.randint(150, 420),
                    "latency_ms": rnd.gauss(900 if arm else 1400, 250),
                    "success": rnd.random() < (0.78 if arm else 0.71),
                    "score": max(0, min(5, rnd.gauss(4.1 if arm else 3.9, 0.8))),
                }
            )
        r = await http.post("/v1/agents/support-bot/outcomes", json={"data": data})
        assert r.status_code == 202, r.text
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = await browser.new_page(viewport={"width": 1200, "height": 800})
        await page.goto(BASE + "/console/sign-in")
        await page.fill("#key", key)
        await page.press("#key", "Enter")
        await page.wait_for_url("**/console/agents")
        await page.goto(BASE + "/console/agents/support-bot/variants/concise/activate")
        await page.screenshot(path=str(OUT / "confirm.png"), full_page=False)
        await page.click("button[type=submit]:has-text('Activate')")
        await page.wait_for_url("**/console/agents/support-bot")
        await page.screenshot(path=str(OUT / "agent.png"), full_page=True)
        await page.goto(BASE + f"/console/agents/support-bot/experiments/{exp['id']}")
        await page.screenshot(path=str(OUT / "experiment-results.png"), full_page=True)
        await page.goto(BASE + "/console/agents/support-bot/history")
        await page.screenshot(path=str(OUT / "history.png"), full_page=False)
        await browser.close()


try:
    asyncio.run(main())
finally:
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    shutil.rmtree(DATA, ignore_errors=True)
