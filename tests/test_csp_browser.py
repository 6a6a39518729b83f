"""The Content-Security-Policy in headless Chromium: the main flows run under it with nothing refused.

Every page is sent ``script-src 'self'`` and ``style-src 'self'`` (chatweb/settings.py): no inline
script, no <style>, no eval, and style attributes only of the three table alignments listed there. A page that
still relied on any of them would lose that behaviour in the browser, and Chromium says so twice: a
"Refused to …" console message and a ``securitypolicyviolation`` event. Both are collected while a
person signs in, chats, changes settings, renames and deletes a conversation, makes and revokes an
API key, reads the usage and search pages, switches the theme and opens the admin; none may occur.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.live import LiveApp
from tests.test_attachments import png
from tests.test_browser import (  # noqa: F401 - browser, fake_upstream, live, signed_in and upstream are fixtures
    ADMIN,
    CHROMIUM,
    browser,
    expect,
    fake_upstream,
    last_reply,
    live,
    new_context,
    signed_in,
    start_conversation,
    upstream,
    wait_streaming,
)
from tests.upstream import FakeUpstream, Reply

pytestmark = pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")

# Each violation is kept in the tab's sessionStorage, so those of every page the tab went through
# are still there to read at the end, after navigations.
VIOLATIONS_SCRIPT = """
window.addEventListener("securitypolicyviolation", function (event) {
  var seen = JSON.parse(sessionStorage.getItem("csp-violations") || "[]");
  seen.push(location.pathname + ": " + event.effectiveDirective + " refused " + (event.blockedURI || "?")
            + " " + (event.sample || ""));
  sessionStorage.setItem("csp-violations", JSON.stringify(seen));
}, true);
"""

SIZES = {"phone": (390, 844), "desktop": (1280, 800)}

# A reply with a table whose number column is right-aligned: markdown-it writes the alignment as a
# style attribute, one of the few the policy allows by hash.
REPLY = "Here are the counts:\n\n| Bird | Count |\n|:-----|------:|\n| Heron | 3 |\n| Gull | 12 |\n\nThat is all."
PIECES = [REPLY[i : i + 12] for i in range(0, len(REPLY), 12)]


def watched(browser: Any, live: LiveApp, size: str, state: dict | None = None) -> Any:
    """A tab whose CSP refusals are recorded: console messages in ``page.csp_console``, events in sessionStorage."""
    width, height = SIZES[size]
    context = new_context(browser, live, state)
    context.add_init_script(VIOLATIONS_SCRIPT)
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.csp_console = []
    page.on(
        "console",
        lambda message: (
            page.csp_console.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    return page


def violations(page: Any) -> list[str]:
    events = page.evaluate("JSON.parse(sessionStorage.getItem('csp-violations') || '[]')")
    return [*events, *page.csp_console]


def finish(page: Any) -> None:
    found = violations(page)
    context = page.context
    context.close()
    assert not found, f"the Content-Security-Policy refused: {found}"
    assert not context.page_errors, f"script errors on the page: {context.page_errors}"


def sign_in(page: Any) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", ADMIN["username"])
    page.fill("input[name=password]", ADMIN["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#composer-input")).to_be_visible()


def open_account_menu(page: Any) -> None:
    if not page.locator(".account-menu[open]").count():
        page.locator(".account-summary").click()


def open_actions(page: Any) -> None:
    """Open the conversation's ⋮ menu (it stays open after a rename, which swaps only its form)."""
    if not page.locator(".actions-menu[open]").count():
        page.locator(".actions-menu summary").click()


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_chatting_renaming_and_deleting_under_the_policy(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream, size: str
) -> None:
    page = watched(browser, live, size)
    response = page.goto("/accounts/login/")
    policy = response.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", policy).group(1)
    assert script_src.split() == ["'self'"], policy
    sign_in(page)

    # A streamed reply, shown as it comes, then formatted: the table's numbers are right-aligned.
    upstream.script(Reply(text=REPLY, pieces=PIECES, delay=0.08))
    start_conversation(page, f"Count the birds ({size})")
    reply = last_reply(page)
    wait_streaming(page, reply.get_attribute("id"), contains="Here are the counts")
    expect(reply).to_have_attribute("data-status", "complete")
    page.reload()  # as the page itself draws it (the parser applies the policy to style attributes)
    cell = page.locator("#messages .message.assistant td", has_text="12")
    expect(cell).to_be_visible()
    assert cell.evaluate("el => getComputedStyle(el).textAlign") == "right"

    # Chat settings open and save over htmx.
    page.get_by_text("Chat settings", exact=True).click()
    page.get_by_label("System prompt").fill("Answer like an ornithologist.")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Saved: they apply from the next reply.")).to_be_visible()
    expect(page.locator("#chat-settings .settings-summary")).to_contain_text("system prompt")

    # Rename through the conversation's menu.
    open_actions(page)
    page.locator("#title-input").fill(f"Bird census ({size})")
    page.locator("#title-form").get_by_role("button", name="Save").click()
    expect(page.locator("#conversation-title")).to_have_text(f"Bird census ({size})")

    # Delete: cancelled first (nothing happens), then accepted.
    conversation_url = page.url
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    open_actions(page)
    page.get_by_role("button", name="Delete conversation").click()
    expect(page.locator("#conversation-title")).to_have_text(f"Bird census ({size})")
    assert page.url == conversation_url
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    open_actions(page)
    page.get_by_role("button", name="Delete conversation").click()
    expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()
    assert questions == ["Delete this conversation?", "Delete this conversation?"]
    assert page.goto(conversation_url).status == 404
    finish(page)


def test_keys_usage_search_theme_and_admin_under_the_policy(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    page = watched(browser, live, "desktop", signed_in)
    live.manage(
        "shell", "-c", "from conversations.models import ChatModel; ChatModel.objects.update(accepts_images=True)"
    )
    upstream.script(Reply(text="Kestrels hover over the meadow."))
    page.goto("/")
    page.set_input_files(
        "#attachment-input", files=[{"name": "kestrel.png", "mimeType": "image/png", "buffer": png(1600, 1200, "teal")}]
    )
    expect(page.locator("#attachment-chips input[name=attachments]")).to_have_count(1)
    start_conversation(page, "Which bird hovers?")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")

    # The theme switch: applied at once and kept by the server.
    open_account_menu(page)
    with page.expect_response("**/account/theme") as saved:
        page.get_by_role("button", name="Dark").click()
    assert saved.value.ok
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    open_account_menu(page)
    with page.expect_response("**/account/theme"):
        page.get_by_role("button", name="System").click()
    expect(page.locator("html")).not_to_have_attribute("data-theme", re.compile("."))

    # API keys: made, shown selected on a click, revoked after its confirmation.
    open_account_menu(page)
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("csp check key")
    page.get_by_role("button", name="Create key").click()
    new_key = page.locator("#new-key")
    expect(new_key).to_have_value(re.compile(r"^sk-cw-"))
    new_key.click()
    assert new_key.evaluate("el => el.selectionStart === 0 && el.selectionEnd === el.value.length")
    row = page.locator("table.keys tbody tr").filter(has_text="csp check key")
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    row.get_by_role("button", name="Revoke").click()
    expect(row.get_by_role("button", name="Revoke")).to_be_visible()
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    assert questions == ["Revoke this key? Apps using it stop working."] * 2

    # Usage, and search: the conversation is found.
    page.goto("/usage/")
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
    expect(page.locator("#usage-chart .bar")).not_to_have_count(0)
    page.goto("/search/?q=hovers")
    expect(page.locator("#search-hits .hit").first).to_contain_text("Which bird hovers?")

    # The sidebar's search as you type (htmx, with a delay trigger: no eval needed).
    page.goto("/")
    page.locator("#search-input").fill("kestrels")
    expect(page.locator("#search-results .hit").first).to_contain_text("Which bird hovers?")

    # The admin.
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    page.goto("/admin/conversations/conversation/")
    expect(page.locator("#result_list")).to_contain_text("Which bird hovers?")
    # Its transcript: the attached image as a thumbnail, sized by the admin's stylesheet.
    page.locator("#result_list").get_by_role("link", name="Which bird hovers?").click()
    thumbnail = page.locator("img.attachment-thumb")
    expect(thumbnail).to_be_visible()
    box = thumbnail.bounding_box()
    assert box is not None and 0 < box["height"] <= 120 and 0 < box["width"] <= 240
    finish(page)


def test_an_injected_inline_script_is_refused_and_reported(browser: Any, live: LiveApp, signed_in: dict) -> None:
    """What the policy is for (and proof that the watch above sees refusals): markup that got into a
    page cannot run script, nor restyle it."""
    page = watched(browser, live, "desktop", signed_in)
    page.goto("/")
    page.evaluate("""() => {
        const box = document.createElement("div");
        box.innerHTML = '<img src="data:," onerror="window.__ran = 1"><p id="restyled" style="color: red">x</p>';
        document.body.append(box);
        const script = document.createElement("script");
        script.textContent = "window.__ran = 2";
        document.body.append(script);
    }""")
    page.wait_for_function("() => JSON.parse(sessionStorage.getItem('csp-violations') || '[]').length >= 3")
    assert page.evaluate("window.__ran") is None
    assert page.locator("#restyled").evaluate("el => getComputedStyle(el).color") != "rgb(255, 0, 0)"
    found = violations(page)
    assert any("script-src-elem" in v for v in found) and any("script-src-attr" in v for v in found)
    assert any("style-src-attr" in v for v in found)
    assert any("Executing inline event handler violates" in line for line in page.csp_console), page.csp_console
    page.context.close()
