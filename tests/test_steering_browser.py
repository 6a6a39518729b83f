"""Steering a chat in Chromium: settings and presets, copying, keys, and editing, versions and continuing.

One app (Daphne, as in test_browser.py) and one browser serve the module; screenshots go to
test-artifacts/screenshots/ for a person to look at (375 and 1280 px, light and dark).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.live import LiveApp
from tests.test_browser import (  # noqa: F401 - browser, fake_upstream, live, signed_in and upstream are fixtures
    CHROMIUM,
    browser,
    fake_upstream,
    live,
    new_context,
    signed_in,
    start_conversation,
    type_and_enter,
    upstream,
)
from tests.test_ui import close, inject_axe, shoot
from tests.upstream import FakeUpstream, Reply

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CODE_REPLY = "Here it is:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nThat is all."

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")


def open_page(
    browser: Any,
    live: LiveApp,
    state: dict,
    *,
    width: int = 1280,
    height: int = 800,
    scheme: str = "light",
    clipboard: bool = False,
) -> Any:
    context = new_context(browser, live, state)
    if clipboard:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.emulate_media(color_scheme=scheme)
    return page


def reply(page: Any, index: int = -1) -> Any:
    """The index-th reply on the page, once it has finished."""
    replies = page.locator("#messages > article.message.assistant")
    target = replies.nth(index) if index >= 0 else replies.last
    expect(target).not_to_have_attribute("data-status", "streaming")
    return target


# --- Settings ------------------------------------------------------------------------------


def test_system_prompt_and_temperature_reach_the_provider(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    page = open_page(browser, live, signed_in)
    page.goto("/")
    page.get_by_text("Chat settings").click()
    page.get_by_label("System prompt").fill("You are a pirate.")
    page.get_by_label("Temperature").fill("0.4")
    shoot(page, "steering-new-chat-settings-desktop-light")
    start_conversation(page, "Ahoy?")
    expect(reply(page)).to_contain_text("You said: Ahoy?")

    sent = upstream.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "You are a pirate."}
    assert sent["temperature"] == 0.4

    # Changed later, the settings apply from the next turn; a value out of range is refused by name.
    page.get_by_text("Chat settings").click()
    page.get_by_label("Temperature").fill("1.5")
    page.get_by_label("Top p").fill("0.8")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#chat-settings")).to_contain_text("Saved")
    type_and_enter(page, "And now?")
    expect(reply(page, 1)).to_contain_text("You said: And now?")
    assert (upstream.requests[-1]["temperature"], upstream.requests[-1]["top_p"]) == (1.5, 0.8)
    close(page)


# --- Copying and keys ---------------------------------------------------------------------------


def test_copy_a_code_block_and_a_whole_reply(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(text=CODE_REPLY))
    page = open_page(browser, live, signed_in, clipboard=True)
    page.goto("/")
    start_conversation(page, "Write add in Python")
    answer = reply(page)
    copy_code = answer.locator(".code-block button")
    expect(copy_code).to_have_accessible_name("Copy code")
    copy_code.click()
    expect(copy_code).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "def add(a, b):\n    return a + b"

    copy_reply = answer.locator("[data-copy-message]")
    expect(copy_reply).to_have_accessible_name("Copy reply")
    copy_reply.focus()
    page.keyboard.press("Enter")  # reachable and usable by keyboard
    expect(copy_reply).to_have_accessible_name("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == CODE_REPLY
    expect(page.locator("#action-status")).to_have_text("Copied to the clipboard.")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        shoot(page, f"steering-copied-desktop-{scheme}")
    close(page)


def test_escape_stops_a_streaming_reply(browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream) -> None:
    words = [f" w{i}" for i in range(300)]
    upstream.script(Reply(text="".join(words), pieces=words, delay=0.03))
    page = open_page(browser, live, signed_in)
    page.goto("/")
    start_conversation(page, "Talk for a long time")
    streaming = page.locator('#messages > article.message.assistant[data-status="streaming"]')
    expect(streaming).to_contain_text("w3")
    page.keyboard.press("Escape")
    stopped = page.locator("#messages > article.message.assistant").last
    expect(stopped).to_have_attribute("data-status", "stopped")
    expect(stopped.get_by_role("button", name="Continue the reply")).to_be_visible()
    close(page)


# --- Versions: edit, switch, regenerate, continue -------------------------------------------------


def versions(article: Any) -> Any:
    return article.locator(".sibling-count")


def test_edit_a_message_and_switch_back_and_forth(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    page = open_page(browser, live, signed_in)
    page.goto("/")
    start_conversation(page, "What is 2 + 2?")
    expect(reply(page)).to_contain_text("You said: What is 2 + 2?")

    # Up-arrow in the empty composer edits the last message sent.
    page.locator("#composer-input").press("ArrowUp")
    editor = page.locator("#messages .message.user .message-editor textarea")
    expect(editor).to_have_value("What is 2 + 2?")
    expect(editor).to_be_focused()
    editor.fill("")
    page.get_by_role("button", name="Save and send").click()
    expect(page.locator("#edit-notice")).to_have_text("Type a message first.")  # said beside it
    editor.fill("What is 3 + 3?")
    shoot(page, "steering-editing-desktop-light")
    page.get_by_role("button", name="Save and send").click()

    question = page.locator("#messages > .message.user")
    expect(reply(page)).to_contain_text("You said: What is 3 + 3?")
    expect(versions(question)).to_have_text("2 / 2 versions")
    question.get_by_role("button", name="Previous version").click()
    expect(question).to_contain_text("What is 2 + 2?")
    expect(reply(page)).to_contain_text("You said: What is 2 + 2?")
    expect(versions(question)).to_have_text("1 / 2 versions")
    question.get_by_role("button", name="Next version").click()
    expect(question).to_contain_text("What is 3 + 3?")
    expect(reply(page)).to_contain_text("You said: What is 3 + 3?")

    page.reload()  # the branch chosen is the conversation's: it is what a reload shows
    expect(page.locator("#messages > .message.user")).to_contain_text("What is 3 + 3?")
    url = page.url
    close(page)
    for scheme in ("light", "dark"):
        for width, height, name in ((375, 740, "phone"), (1280, 800, "desktop")):
            shown = open_page(browser, live, signed_in, width=width, height=height, scheme=scheme)
            shown.goto(url)
            expect(shown.locator("#messages .sibling-count")).to_have_text("2 / 2 versions")
            shoot(shown, f"steering-versions-{name}-{scheme}")
            if name == "phone":
                shown.get_by_text("Chat settings").click()
                shoot(shown, f"steering-settings-{name}-{scheme}")
            close(shown)


def test_regenerate_twice_gives_three_versions(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(text="First answer"), Reply(text="Second answer"), Reply(text="Third answer"))
    page = open_page(browser, live, signed_in)
    page.goto("/")
    start_conversation(page, "Tell me something")
    expect(reply(page)).to_contain_text("First answer")
    for text in ("Second answer", "Third answer"):
        reply(page).get_by_role("button", name="Regenerate reply").click()
        expect(reply(page)).to_contain_text(text)
    expect(versions(reply(page))).to_have_text("3 / 3 versions")
    reply(page).get_by_role("button", name="Previous version").click()
    expect(reply(page)).to_contain_text("Second answer")
    expect(versions(reply(page))).to_have_text("2 / 3 versions")
    assert page.locator("#messages > .message.assistant").count() == 1
    close(page)


def test_continue_a_reply_cut_at_the_length_limit(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(text="Once upon a time", finish_reason="length"), Reply(text=", the end."))
    page = open_page(browser, live, signed_in)
    page.goto("/")
    start_conversation(page, "Tell me a story")
    expect(reply(page)).to_contain_text("reached this model's length limit")
    shoot(page, "steering-continue-desktop-light")
    reply(page).get_by_role("button", name="Continue the reply").click()
    expect(reply(page)).to_contain_text("Once upon a time, the end.")
    expect(reply(page).get_by_role("button", name="Continue the reply")).to_have_count(0)
    assert upstream.requests[-1]["messages"][-1] == {"role": "assistant", "content": "Once upon a time"}
    page.reload()
    expect(reply(page)).to_contain_text("Once upon a time, the end.")
    close(page)


# --- Presets, and the pages' accessibility --------------------------------------------------------


def axe_violations(page: Any, shot: str) -> list[str]:
    """Serious and critical axe-core violations of the page (tests/test_ui.py's check), and a screenshot."""
    shoot(page, shot)
    inject_axe(page)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_a_preset_made_default_starts_new_chats(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    page = open_page(browser, live, signed_in)
    page.goto("/presets/")
    form = page.locator("form", has=page.get_by_role("button", name="Create preset"))
    form.get_by_label("Name").fill("Terse")
    form.get_by_label("System prompt").fill("Answer in five words.")
    form.get_by_label("Temperature").fill("0.2")
    form.get_by_role("button", name="Create preset").click()
    expect(page.get_by_role("heading", name="Terse")).to_be_visible()
    page.get_by_label("Your system prompt").fill("Call me Sam.")
    page.get_by_label("Start new chats from").select_option(label="Terse")
    page.get_by_role("button", name="Save", exact=True).first.click()
    expect(page.get_by_label("Your system prompt")).to_have_value("Call me Sam.")
    found = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found[f"presets {scheme}"] = axe_violations(page, f"steering-presets-desktop-{scheme}")

    page.goto("/")
    page.get_by_text("Chat settings").click()
    expect(page.get_by_role("link", name="Terse")).to_have_attribute("aria-current", "true")
    expect(page.get_by_label("System prompt")).to_have_value("Call me Sam.\n\nAnswer in five words.")
    start_conversation(page, "Hi there")
    expect(reply(page)).to_contain_text("You said: Hi there")
    sent = upstream.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Call me Sam.\n\nAnswer in five words."}
    assert sent["temperature"] == 0.2
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found[f"conversation {scheme}"] = axe_violations(page, f"steering-axe-conversation-{scheme}")
    close(page)

    phone = open_page(browser, live, signed_in, width=375, height=740)
    phone.goto("/presets/")
    shoot(phone, "steering-presets-phone-light")
    phone.emulate_media(color_scheme="dark")
    shoot(phone, "steering-presets-phone-dark")
    assert phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") == 0
    close(phone)
    assert not {where: v for where, v in found.items() if v}
