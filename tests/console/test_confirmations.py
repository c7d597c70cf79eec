"""Issue 16, item 18: starting and stopping an experiment and undoing a change happen behind
a confirmation that says exactly what will happen (like activation's), carries a digest
of what it showed, and shows itself again, up to date, when that moved."""

from __future__ import annotations

import re

from services.api.db import Database
from tests.console.conftest import Browser, csrf_of, make_key


def _state(page: str) -> str:
    found = re.search(r'name="state" value="([0-9a-f]+)"', page)
    assert found, "no state digest on the confirmation"
    return found.group(1)


def _text(html: str) -> str:
    """The page's words, without tags, on one line."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def _agent_with_variant(admin: Browser, name: str) -> str:
    slug = name.lower().replace(" ", "-")
    await admin.submit(
        "/console/agents",
        {"name": name, "config.model_provider": "p", "config.model_name": "m", "config.temperature": "0.7"},
        from_page="/console/agents",
    )
    made = await admin.submit(
        f"/console/agents/{slug}/variants",
        {"variant_name": "Terse", "overrides.temperature": "0.2"},
        from_page=f"/console/agents/{slug}",
    )
    assert made.status_code == 303
    return slug


async def test_starting_and_stopping_an_experiment_are_confirmed_first_saying_who_gets_what(admin: Browser) -> None:
    slug = await _agent_with_variant(admin, "Stop bot")
    made = await admin.submit(
        f"/console/agents/{slug}/experiments",
        {
            "name": "Terse vs base",
            "arms[0].variant": "base",
            "arms[0].weight": "1",
            "arms[1].variant": "terse",
            "arms[1].weight": "3",
        },
        from_page=f"/console/agents/{slug}/experiments",
    )
    assert made.status_code == 303
    page_path = made.headers["location"]
    draft = await admin.page(page_path)
    # No button that starts it in one click: a link to the confirmation.
    assert not re.search(r'<form method="post" action="[^"]+/start"', draft)
    assert f'href="{page_path}/start"' in draft

    # Start: who will get what (each arm's share of subjects, what it serves and how that
    # differs from the live config), and what requests without a subject keep getting.
    confirm = await admin.page(page_path + "/start")
    words = _text(confirm)
    assert "Control" in words and "base config" in words and "25%" in words and "75%" in words
    assert "terse" in words and re.search(r"temperature 0\.7 0\.2", words)
    assert re.search(r"without a subject[^.]*live config", words)
    one_click = await admin.http.post(page_path + "/start", data={"csrf": csrf_of(draft)})
    assert one_click.status_code == 409 and "confirm again" in one_click.text  # shown again, not done
    assert 'id="status">draft' in await admin.page(page_path)
    started = await admin.http.post(
        page_path + "/start", data={"csrf": csrf_of(confirm), "version": "1", "state": _state(confirm)}
    )
    assert started.status_code == 303 and started.headers["location"] == page_path
    running = await admin.page(page_path)
    assert 'id="status">running' in running
    assert not re.search(r'<form method="post" action="[^"]+/stop"', running)
    assert f'href="{page_path}/stop"' in running

    # Stop: final; the subjects go back to normal resolution (the live config), arm by arm.
    confirm = await admin.page(page_path + "/stop")
    words = _text(confirm)
    assert "final" in words and "never start again" in words
    assert re.search(r"normal resolution", words) and "live config" in words
    assert re.search(r"temperature 0\.2 0\.7", words)  # arm 1's subjects: from terse's snapshot to the live config
    one_click = await admin.http.post(page_path + "/stop", data={"csrf": csrf_of(running)})
    assert one_click.status_code == 409 and 'id="status">running' in await admin.page(page_path)
    stopped = await admin.http.post(
        page_path + "/stop", data={"csrf": csrf_of(confirm), "version": "2", "state": _state(confirm)}
    )
    assert stopped.status_code == 303 and 'id="status">stopped' in await admin.page(page_path)
    # Nothing left to confirm: a stopped experiment never starts again.
    again = await admin.page(page_path + "/start")
    assert "never start again" in _text(again) and 'name="state"' not in again


async def test_a_start_confirmation_shown_before_a_change_is_shown_again(admin: Browser) -> None:
    slug = await _agent_with_variant(admin, "Moved bot")
    made = await admin.submit(
        f"/console/agents/{slug}/experiments",
        {
            "name": "Moving",
            "arms[0].variant": "base",
            "arms[0].weight": "1",
            "arms[1].variant": "terse",
            "arms[1].weight": "1",
        },
        from_page=f"/console/agents/{slug}/experiments",
    )
    page_path = made.headers["location"]
    confirm = await admin.page(page_path + "/start")
    # The variant an arm serves changes after the confirmation was shown.
    variant = await admin.page(f"/console/agents/{slug}/variants/terse")
    edited = await admin.http.post(
        f"/console/agents/{slug}/variants/terse/edit",
        data={
            "csrf": csrf_of(variant),
            "version": "1",
            "variant_name": "Terse",
            "description": "",
            "overrides.temperature": "1.5",
        },
    )
    assert edited.status_code == 303
    late = await admin.http.post(
        page_path + "/start", data={"csrf": csrf_of(confirm), "version": "1", "state": _state(confirm)}
    )
    assert late.status_code == 409 and re.search(r"temperature 0\.7 1\.5", _text(late.text))
    assert 'id="status">draft' in await admin.page(page_path)


async def test_undo_is_confirmed_naming_the_change_and_the_history_says_what_was_undone(
    admin: Browser, browser: Browser, db: Database
) -> None:
    slug = await _agent_with_variant(admin, "Undo confirm bot")
    variant = await admin.page(f"/console/agents/{slug}/variants/terse")
    edited = await admin.http.post(
        f"/console/agents/{slug}/variants/terse/edit",
        data={
            "csrf": csrf_of(variant),
            "version": "1",
            "variant_name": "Terse",
            "description": "",
            "overrides.temperature": "0.9",
        },
    )
    assert edited.status_code == 303
    history = await admin.page(f"/console/agents/{slug}/history")
    # No button that undoes in one click: a link to the confirmation.
    assert not re.search(r'<form method="post" action="[^"]+/undo"', history)
    assert f'href="/console/agents/{slug}/undo"' in history

    confirm = await admin.page(f"/console/agents/{slug}/undo")
    latest = re.search(r'name="revision_id" value="(rev_[0-9A-Z]{26})"', confirm)
    assert latest
    words = _text(confirm)
    who = re.search(r"console-admin-[a-z0-9]{10}", history)
    assert who
    # Which change, by whom, when, and its before -> after.
    assert latest.group(1) in words and "update of variant “Terse”" in words and who.group(0) in words
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", words)
    assert re.search(r"overrides\.temperature 0\.2 → 0\.9", words)
    one_click = await admin.http.post(f"/console/agents/{slug}/undo", data={"csrf": csrf_of(history)})
    assert one_click.status_code == 422  # which change to undo is always named

    # Another change comes first: the confirmation is shown again with the new latest change.
    await admin.submit(
        f"/console/agents/{slug}/variants", {"variant_name": "Other"}, from_page=f"/console/agents/{slug}"
    )
    late = await admin.http.post(
        f"/console/agents/{slug}/undo", data={"csrf": csrf_of(confirm), "revision_id": latest.group(1)}
    )
    assert late.status_code == 409 and "latest change is now" in late.text
    assert "create of variant “Other”" in _text(late.text)
    newest = re.search(r'name="revision_id" value="(rev_[0-9A-Z]{26})"', late.text)
    assert newest and newest.group(1) != latest.group(1)

    undone = await admin.http.post(
        f"/console/agents/{slug}/undo", data={"csrf": csrf_of(late.text), "revision_id": newest.group(1)}
    )
    assert undone.status_code == 303
    assert undone.headers["location"] == f"/console/agents/{slug}/history?undone={newest.group(1)}"
    after = await admin.page(undone.headers["location"])
    notice = re.search(r'<div class="notice"[^>]*>(.*?)</div>', after, re.S)
    assert notice and newest.group(1) in notice.group(1) and "create of variant “Other”" in _text(notice.group(1))
    assert "/variants/other" not in await admin.page(f"/console/agents/{slug}")  # really undone

    # A read key (the same browser, signed in again) sees the confirmation, without the button.
    _, secret = await make_key(db, "read")
    reader = await browser.sign_in(secret)
    assert reader.status_code == 303
    read_only = await browser.page(f"/console/agents/{slug}/undo")
    assert "update of variant “Terse”" in _text(read_only)
    assert re.findall(r'<form method="post" action="([^"]+)"', read_only) == ["/console/sign-out"]
    refused = await browser.http.post(
        f"/console/agents/{slug}/undo", data={"csrf": csrf_of(read_only), "revision_id": latest.group(1)}
    )
    assert refused.status_code == 403
