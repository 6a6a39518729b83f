"""Finding and keeping conversations in Chromium: search as you type, landing on the match, the
sidebar loading past 200 as it scrolls, bulk archive and restore; on a phone and a desktop, light
and dark, with screenshots under test-artifacts/screenshots/."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.live import LiveApp
from tests.test_browser import ADMIN, CHROMIUM, browser, fake_upstream, live, new_context, signed_in  # noqa: F401
from tests.test_ui import close, in_viewport, overflow, shoot

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")

SEED = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from conversations.models import Conversation, Message
user = get_user_model().objects.get(username={username!r})
now = timezone.now()
chats = Conversation.objects.bulk_create(Conversation(user=user, title=f"Filler chat {{i}}") for i in range(230))
for i, c in enumerate(chats):
    Conversation.objects.filter(pk=c.pk).update(updated_at=now - timedelta(hours=i))
old = Conversation.objects.create(user=user, title="Birds of <i>Lisbon</i>")
parent = None
for i in range(60):
    parent = Message.objects.create(conversation=old, parent=parent, role="user" if i % 2 == 0 else "assistant",
        content=f"Filler line {{i}}. " * 5, model_name="fake-model")
question = Message.objects.create(conversation=old, parent=parent, role="user", content="Which birds nest there?")
target = Message.objects.create(conversation=old, parent=question, role="assistant", model_name="fake-model",
    content="The pelican <img src=x onerror=window.__ran=1> nests by the river.")
leaf = Message.objects.create(conversation=old, parent=question, role="assistant", model_name="fake-model",
    content="A regenerated reply about herons.")
for i in range(10):
    leaf = Message.objects.create(conversation=old, parent=leaf, role="user", content=f"Later line {{i}}. " * 5)
Conversation.objects.filter(pk=old.pk).update(current_leaf=leaf)
Conversation.objects.filter(pk=old.pk).update(updated_at=now - timedelta(days=400))
print(old.pk, target.pk)
"""


@pytest.fixture(scope="module")
def seeded(live: LiveApp, signed_in: dict) -> tuple[int, int]:
    out = live.manage("shell", "-c", SEED.format(username=ADMIN["username"]))
    conversation_id, message_id = out.split()[-2:]
    return int(conversation_id), int(message_id)


def open_page(browser: Any, live: LiveApp, state: dict, *, width: int, height: int, scheme: str) -> Any:
    context = new_context(browser, live, state)
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.emulate_media(color_scheme=scheme)
    return page


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", [(1280, 800), (375, 740)], ids=["desktop", "phone"])
def test_search_as_you_type_lands_on_the_matching_message(
    browser: Any,
    live: LiveApp,
    signed_in: dict,
    seeded: tuple[int, int],
    size: tuple[int, int],
    scheme: str,
) -> None:
    conversation_id, message_id = seeded
    page = open_page(browser, live, signed_in, width=size[0], height=size[1], scheme=scheme)
    page.goto("/")
    if size[0] < 768:
        page.get_by_role("button", name="Chats and account").click()
    page.get_by_role("searchbox", name="Search chats").press_sequentially("pelic", delay=30)
    hit = page.locator("#search-results .hit").filter(has_text="Birds of <i>Lisbon</i>")
    expect(hit).to_be_visible()
    expect(hit.locator("mark")).to_have_text("pelican")
    expect(hit.locator(".hit-snippet")).to_contain_text("<img src=x onerror=window.__ran=1>")
    expect(page.locator("#conversations")).to_be_hidden()
    assert overflow(page) == 0
    shoot(page, f"library-{'phone' if size[0] < 768 else 'desktop'}-{scheme}-search")
    search_box = page.get_by_role("searchbox", name="Search chats")
    search_box.fill("")  # an emptied search brings the list back
    expect(page.locator("#conversations")).to_be_visible()
    search_box.fill("zzzqqq")
    expect(page.locator("#search-results")).to_contain_text("No conversations match “zzzqqq”.")
    search_box.fill("pelic")
    hit.click()
    page.wait_for_url(f"**/c/{conversation_id}/#message-{message_id}")
    target = page.locator(f"#message-{message_id}")
    expect(target).to_contain_text("The pelican")
    expect(page.locator("#messages")).not_to_contain_text("herons")  # the match's branch is the one shown
    page.wait_for_function(
        "id => { const r = document.getElementById(id).getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= window.innerHeight; }",
        arg=f"message-{message_id}",
    )
    assert page.evaluate("window.__ran") is None
    shoot(page, f"library-{'phone' if size[0] < 768 else 'desktop'}-{scheme}-landed")
    if size[0] >= 768:  # the open conversation, 400 days old, is listed and in view in the sidebar
        current = page.locator("#conversations .conversation-link.current")
        expect(current).to_have_text("Birds of <i>Lisbon</i>")
        assert in_viewport(page, current)
    close(page)


def test_the_sidebar_loads_past_200_as_it_scrolls_and_bulk_archives(
    browser: Any,
    live: LiveApp,
    signed_in: dict,
    seeded: tuple[int, int],
) -> None:
    page = open_page(browser, live, signed_in, width=1280, height=800, scheme="light")
    page.goto("/")
    links = page.locator("#conversations .conversation-link")
    expect(links.first).to_be_visible()
    for _ in range(20):
        if links.count() >= 231:
            break
        count = links.count()
        page.locator("#conversations").evaluate("el => el.scrollTop = el.scrollHeight")
        page.wait_for_function(
            f"() => document.querySelectorAll('#conversations .conversation-link').length > {count}"
            " || !document.querySelector('.sidebar-more')"
        )
    expect(links).to_have_count(231)
    expect(page.locator("#conversations .group")).to_have_text(
        ["Today", "Yesterday", "Previous 7 days", "Previous 30 days", "Older"]
    )

    page.locator("#conversations").evaluate("el => el.scrollTop = 0")
    page.get_by_role("button", name="Select").click()
    page.get_by_role("checkbox", name="Select “Filler chat 0”").check()
    page.get_by_role("checkbox", name="Select “Filler chat 1”").check()
    shoot(page, "library-desktop-light-select")
    page.locator("#bulk-form").get_by_role("button", name="Archive").click()
    expect(page.locator(".flash")).to_have_text("2 conversations archived.")
    expect(page.locator("#conversations").get_by_text("Filler chat 0", exact=True)).to_have_count(0)

    page.locator(".account-summary").click()
    page.get_by_role("link", name="Archived chats").click()
    expect(page.get_by_role("heading", name="Archived chats")).to_be_visible()
    shoot(page, "library-desktop-light-archived")
    row = page.locator(".archived-list li").filter(has_text="Filler chat 1")
    row.get_by_role("button", name="Restore").click()
    expect(page.locator(".archived-list li")).to_have_count(1)
    page.goto("/")
    expect(page.locator("#conversations").get_by_text("Filler chat 1", exact=True)).to_be_visible()
    close(page)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", [(1280, 800), (375, 740)], ids=["desktop", "phone"])
def test_share_a_conversation_read_it_signed_out_then_revoke(
    browser: Any,
    live: LiveApp,
    signed_in: dict,
    seeded: tuple[int, int],
    size: tuple[int, int],
    scheme: str,
) -> None:
    conversation_id, _ = seeded
    name = f"library-{'phone' if size[0] < 768 else 'desktop'}-{scheme}"
    page = open_page(browser, live, signed_in, width=size[0], height=size[1], scheme=scheme)
    page.goto(f"/c/{conversation_id}/")
    shown_last = page.locator("#messages .message .body").last.inner_text()[:30]  # the branch shown is shared
    page.locator(".actions-menu summary").click()
    share = page.get_by_role("button", name="Share a read-only link")
    share.scroll_into_view_if_needed()
    assert in_viewport(page, share)
    shoot(page, f"{name}-conversation-menu")
    share.click()
    expect(page.get_by_role("heading", name="Shared links")).to_be_visible()
    address = page.get_by_role("textbox", name="Share link").input_value()
    assert overflow(page) == 0
    shoot(page, f"{name}-shared-links")

    reader = new_context(browser, live)
    public = reader.new_page()
    public.set_viewport_size({"width": size[0], "height": size[1]})
    public.emulate_media(color_scheme=scheme)
    response = public.goto(address)
    assert response.status == 200 and response.headers["x-robots-tag"] == "noindex, nofollow"
    expect(public.get_by_role("heading", level=1)).to_have_text("Birds of <i>Lisbon</i>")
    expect(public.locator(".message").last).to_contain_text(shown_last)
    assert public.evaluate("window.__ran") is None
    assert public.evaluate("document.documentElement.scrollWidth - window.innerWidth") == 0
    shoot(public, f"{name}-shared-page")

    page.once("dialog", lambda dialog: dialog.accept())  # "Revoke this link? It stops working for everyone."
    page.get_by_role("row").filter(has=page.locator(f'a[href="{address.split(live.url)[1]}"]')).get_by_role(
        "button", name="Revoke"
    ).click()
    expect(page.get_by_role("row").filter(has_text="revoked").first).to_be_visible()
    assert public.goto(address).status == 404
    reader.close()
    close(page)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", [(1280, 800), (375, 740)], ids=["desktop", "phone"])
def test_import_a_chatgpt_export_and_download_everything(
    browser: Any,
    live: LiveApp,
    signed_in: dict,
    seeded: tuple[int, int],
    size: tuple[int, int],
    scheme: str,
    tmp_path: Path,
) -> None:
    from tests.test_transfer import chatgpt_branched

    name = f"library-{'phone' if size[0] < 768 else 'desktop'}-{scheme}"
    export = tmp_path / "conversations.json"
    export.write_text(json.dumps([chatgpt_branched(f"{name}-{i}", title=f"Imported {name} {i}") for i in range(3)]))
    page = open_page(browser, live, signed_in, width=size[0], height=size[1], scheme=scheme)
    page.goto("/transfer/")
    page.get_by_label("Export file").set_input_files(str(export))
    page.get_by_role("button", name="Import").click()
    expect(page.locator(".import-done")).to_have_text("Done: 3 conversations imported.")
    assert overflow(page) == 0
    shoot(page, f"{name}-import-done")

    page.goto("/")
    if size[0] < 768:
        page.get_by_role("button", name="Chats and account").click()
    page.get_by_role("searchbox", name="Search chats").fill(f"Imported {name} 2")
    page.locator("#search-results .hit").first.click()
    expect(page.locator("#messages .message")).to_have_count(4)  # the current branch: q1, a2, q2, a3
    expect(page.locator("#messages")).to_contain_text("Yes <img src=x onerror=alert(1)>.")
    assert page.evaluate("window.__ran") is None

    page.goto("/transfer/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download all (zip)").click()
    expect(page.locator("#export-status")).to_contain_text("Done:")
    archive = zipfile.ZipFile(download.value.path())
    titles = [c["title"] for c in json.loads(archive.read("conversations.json"))]
    assert f"Imported {name} 0" in titles and "Birds of <i>Lisbon</i>" in titles
    shoot(page, f"{name}-export-done")
    close(page)
