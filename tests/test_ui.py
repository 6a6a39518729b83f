"""How the pages look and behave on a phone, a tablet and a desktop, in light and dark, in Chromium.

One app (Daphne, as in test_browser.py) and one browser serve the whole module. Every test
saves screenshots under test-artifacts/screenshots/ (git-ignored) for a person to look at.
The accessibility check injects axe-core from tests/vendor/axe-core (npm package axe-core,
MPL-2.0) into each main page and fails on serious or critical violations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import ROOT, LiveApp
from tests.test_browser import (  # noqa: F401 - browser, fake_upstream and upstream are fixtures
    ADMIN,
    CHROMIUM,
    assert_nothing_ran,
    browser,
    fake_upstream,
    new_context,
    paced,
    signup,
    sse,
    start_conversation,
    stream_words,
    type_and_enter,
    upstream,
    wait_socket,
)
from tests.upstream import FakeUpstream, Reply

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

SHOTS = ROOT / "test-artifacts" / "screenshots"
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
SIZES = {"phone": (375, 740), "tablet": (768, 1024), "desktop": (1280, 800)}
DISPLAY_NAME = "Fake Model One"
MARKDOWN_REPLY = (
    "## A plan\n\nThree steps:\n\n- read the *question*\n- write `code`\n- check it\n\n"
    '```python\ndef greet(name):\n    # say hello\n    return f"Hello, {name}!" * 2\n```\n\n'
    "Done: try it with your own name, and change the greeting to suit the occasion."
)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


# --- The app, the provider, the browser and a few rows ----------------------------------


@pytest.fixture(scope="module")
def live(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    app = LiveApp(upstream=fake_upstream, data_dir=tmp_path_factory.mktemp("chatweb-ui"))
    try:
        app.start()
        app.manage(
            "shell",
            "-c",
            f"from conversations.models import ChatModel; ChatModel.objects.update(display_name={DISPLAY_NAME!r})",
        )
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def signed_in(browser: Any, live: LiveApp) -> dict:
    """Cookies of the admin, the first account (so sign-up is closed afterwards)."""
    context = new_context(browser, live)
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto("/")
    assert in_viewport(page, page.get_by_role("button", name="Create account"))  # no scrolling to sign up
    shoot(page, "desktop-light-signup")
    signup(page)
    expect(page.locator("#composer-input")).to_be_visible()
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture(scope="module")
def formatted_conversation(browser: Any, live: LiveApp, signed_in: dict, fake_upstream: FakeUpstream) -> int:
    """A conversation whose reply has a heading, a list and highlighted code."""
    fake_upstream.reset()
    fake_upstream.script(Reply(text=MARKDOWN_REPLY))
    context = new_context(browser, live, signed_in)
    page = context.new_page()
    page.goto("/")
    conversation_id = start_conversation(page, "How do I greet someone in Python?")
    expect(page.locator("#messages .message.assistant .markdown pre")).to_be_visible()
    context.close()
    fake_upstream.reset()
    return conversation_id


@pytest.fixture(scope="module")
def long_conversation(live: LiveApp, signed_in: dict) -> int:
    """A conversation of 150 messages, more than the page shows at first."""
    out = live.manage(
        "shell",
        "-c",
        "from conversations.models import Conversation, Message\n"
        "from django.contrib.auth import get_user_model\n"
        f"user = get_user_model().objects.get(username={ADMIN['username']!r})\n"
        "c = Conversation.objects.create(user=user, title='A long talk')\n"
        "parent = None\n"
        "for i in range(150):\n"
        "    parent = Message.objects.create(conversation=c, parent=parent, role='user' if i % 2 == 0 else 'assistant',"
        " content=f'Message number {i}. ' + 'Some words to fill a line or two. ' * 3, model_name='fake-model')\n"
        "Conversation.objects.filter(pk=c.pk).update(current_leaf=parent)\n"
        "print(c.pk)",
    )
    return int(out.strip().splitlines()[-1])


def open_page(browser: Any, live: LiveApp, state: dict | None, *, size: str, scheme: str, **options: Any) -> Any:
    width, height = SIZES[size] if size in SIZES else size
    context = new_context(browser, live, state)
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.emulate_media(color_scheme=scheme, **options)
    return page


def shoot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def in_viewport(page: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return (
        bool(box)
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= size["width"]
        and box["y"] + box["height"] <= size["height"]
    )


def at_the_bottom(page: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    return 0 <= page.viewport_size["height"] - (box["y"] + box["height"]) < 24


def close(page: Any) -> None:
    context = page.context
    context.close()
    assert not context.page_errors, f"script errors on the page: {context.page_errors}"


# --- Layout ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
def test_every_size_fits_the_window_and_reaches_chats_send_and_stop(
    browser: Any,
    live: LiveApp,
    signed_in: dict,
    upstream: FakeUpstream,
    formatted_conversation: int,
    size: str,
    scheme: str,
) -> None:
    page = open_page(browser, live, signed_in, size=size, scheme=scheme)
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("What can I help with?")
    assert overflow(page) == 0
    shoot(page, f"{size}-{scheme}-home")

    sidebar = page.locator("#sidebar")
    menu = page.get_by_role("button", name="Chats and account")
    if size == "phone":
        assert at_the_bottom(page, page.locator("#composer-form"))  # where the thumb and the keyboard are
        expect(sidebar).to_be_hidden()
        expect(menu).to_have_attribute("aria-expanded", "false")
        menu.click()
        expect(sidebar).to_be_visible()
        expect(menu).to_have_attribute("aria-expanded", "true")
        page.locator(".account-summary").click()
        expect(page.get_by_role("link", name="Usage")).to_be_visible()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        assert overflow(page) == 0
        shoot(page, f"{size}-{scheme}-drawer")
        page.get_by_role("button", name="Close menu").click()
        expect(sidebar).to_be_hidden()
        menu.click()
        page.keyboard.press("Escape")  # closes the account menu
        page.keyboard.press("Escape")  # then the drawer
        expect(sidebar).to_be_hidden()
    else:
        expect(sidebar).to_be_visible()
        expect(menu).to_be_hidden()

    page.goto(f"/c/{formatted_conversation}/")
    wait_socket(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("How do I greet someone in Python?")
    expect(page.locator("#messages .message.assistant .role").first).to_have_text(DISPLAY_NAME)
    assert at_the_bottom(page, page.locator("#composer-form"))
    assert overflow(page) == 0
    shoot(page, f"{size}-{scheme}-conversation")

    page.locator(".actions-menu summary").click()
    expect(page.get_by_role("button", name="Delete conversation")).to_be_visible()
    expect(page.get_by_label("Rename")).to_have_value("How do I greet someone in Python?")
    assert overflow(page) == 0
    shoot(page, f"{size}-{scheme}-actions")
    page.keyboard.press("Escape")

    full, pieces = stream_words(40, prefix="p")
    upstream.script(sse(paced(pieces, 0.08)))
    page.goto("/")
    start_conversation(page, "Count for me")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    assert in_viewport(page, stop)
    shoot(page, f"{size}-{scheme}-streaming")
    stop.click()
    expect(page.locator("#messages .message.assistant").last).to_have_attribute("data-status", "stopped")
    send = page.get_by_role("button", name="Send")
    expect(send).to_be_visible()
    assert in_viewport(page, send)
    assert overflow(page) == 0
    close(page)


def test_nothing_overflows_at_320_px(browser: Any, live: LiveApp, signed_in: dict, formatted_conversation: int) -> None:
    page = open_page(browser, live, signed_in, size=(320, 640), scheme="light")
    for path, name in (
        ("/", "home"),
        (f"/c/{formatted_conversation}/", "conversation"),
        ("/account/keys/", "keys"),
        ("/usage/", "usage"),
    ):
        page.goto(path)
        assert overflow(page) == 0, f"{path} is wider than 320 px"
        shoot(page, f"320-light-{name}")
    close(page)


def test_touch_targets_are_at_least_44_px(
    browser: Any, live: LiveApp, signed_in: dict, formatted_conversation: int
) -> None:
    page = open_page(browser, live, signed_in, size="phone", scheme="light")
    page.goto(f"/c/{formatted_conversation}/")
    page.get_by_role("button", name="Chats and account").click()
    page.locator(".account-summary").click()
    small = page.evaluate(
        """() => [...document.querySelectorAll('button, summary, select, .new-chat, .menu-item, .conversation-link')]
             .filter(el => el.offsetParent !== null)
             .map(el => [el.textContent.trim() || el.getAttribute('aria-label') || el.tagName, el.getBoundingClientRect()])
             .filter(([, r]) => r.height < 44 || r.width < 44)
             .map(([name, r]) => `${name}: ${Math.round(r.width)}x${Math.round(r.height)}`)"""
    )
    assert not small, f"controls smaller than a finger: {small}"
    close(page)


def test_keyboard_focus_is_always_visible(
    browser: Any, live: LiveApp, signed_in: dict, formatted_conversation: int
) -> None:
    page = open_page(browser, live, signed_in, size="desktop", scheme="dark")
    page.goto(f"/c/{formatted_conversation}/")
    page.locator("#composer-input").focus()
    unmarked, seen = [], []
    for _ in range(100):  # once round the page: from the message box, out to the browser, in at the top, back
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => { const el = document.activeElement, style = getComputedStyle(el);
                       const ring = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2;
                       const box = el.closest('.composer-box');
                       return [el.tagName + ' ' + (el.textContent.trim() || el.name || el.id).slice(0, 30),
                               ring || (box && getComputedStyle(box).boxShadow !== 'none')]; }"""
        )
        if focused[0].startswith("BODY"):
            continue  # focus is in the browser's own UI
        if focused[0].startswith("TEXTAREA"):
            break
        seen.append(focused[0])
        if not focused[1]:
            unmarked.append(focused[0])
    assert not unmarked, f"focused without a visible mark: {unmarked}"
    for control in (
        "A New chat",
        "SUMMARY A",
        "SUMMARY Conversation actions",
        "SECTION",
        "BUTTON Regenerate",
        "SELECT",
        "BUTTON Send",
    ):
        assert any(name.startswith(control) for name in seen), (control, seen)
    close(page)


# --- Themes -----------------------------------------------------------------------------


def background(page: Any) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_the_theme_follows_the_browser_until_the_user_picks_one_which_every_device_then_keeps(
    browser: Any, live: LiveApp, signed_in: dict
) -> None:
    page = open_page(browser, live, signed_in, size="desktop", scheme="dark")
    page.goto("/")
    dark_by_default = background(page)
    page.emulate_media(color_scheme="light")
    light = background(page)
    assert dark_by_default != light

    try:
        page.locator(".account-summary").click()
        with page.expect_response("**/account/theme") as saved:
            page.get_by_role("button", name="Dark").click()
        expect(page.get_by_role("button", name="Dark")).to_have_attribute("aria-pressed", "true")
        assert background(page) == dark_by_default  # dark although the browser asks for light
        assert saved.value.ok
        page.reload()
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        assert background(page) == dark_by_default

        # Another browser, signed in afresh as the same user, opens in dark too.
        other = open_page(browser, live, None, size="phone", scheme="light")
        other.goto("/accounts/login/")
        other.fill("input[name=username]", ADMIN["username"])
        other.fill("input[name=password]", ADMIN["password"])
        other.get_by_role("button", name="Sign in").click()
        expect(other.locator("#composer-input")).to_be_visible()
        expect(other.locator("html")).to_have_attribute("data-theme", "dark")
        assert background(other) == dark_by_default
        close(other)
    finally:
        page.locator(".account-summary").click()
        with page.expect_response("**/account/theme") as saved:
            page.get_by_role("button", name="System").click()
        expect(page.locator("html")).not_to_have_attribute("data-theme", re.compile("."))
        assert saved.value.ok
    page.reload()
    assert background(page) == light
    close(page)


def test_code_is_highlighted_in_each_theme(
    browser: Any, live: LiveApp, signed_in: dict, formatted_conversation: int
) -> None:
    colours = {}
    for scheme in ("light", "dark"):
        page = open_page(browser, live, signed_in, size="desktop", scheme=scheme)
        page.goto(f"/c/{formatted_conversation}/")
        keyword = page.locator("#messages pre .k").first
        expect(keyword).to_have_text("def")
        colours[scheme] = (
            keyword.evaluate("el => getComputedStyle(el).color"),
            page.locator("#messages pre").evaluate("el => getComputedStyle(el).backgroundColor"),
        )
        close(page)
    assert colours["light"][0] != colours["dark"][0] and colours["light"][1] != colours["dark"][1]


# --- Accessibility ------------------------------------------------------------------------


def inject_axe(page: Any) -> None:
    """Load axe-core into the page as the test's own script (DevTools evaluation): a <script> tag
    added to the page would be inline script, which the pages' Content-Security-Policy refuses."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")


def axe_violations(page: Any, shot: str) -> list[str]:
    """Serious and critical axe-core violations of the page (and a screenshot of it, named ``shot``)."""
    shoot(page, shot)
    inject_axe(page)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_main_pages_have_no_serious_accessibility_violations(
    browser: Any, live: LiveApp, signed_in: dict, formatted_conversation: int, scheme: str
) -> None:
    found = {}
    anonymous = open_page(browser, live, None, size="desktop", scheme=scheme)
    for path, name in (("/accounts/login/", "login"), ("/accounts/signup/", "signup-closed")):
        anonymous.goto(path)
        found[path] = axe_violations(anonymous, f"axe-desktop-{scheme}-{name}")
    expect(anonymous.get_by_role("heading", level=1)).to_have_text("Sign-up is closed; ask your admin")
    close(anonymous)

    page = open_page(browser, live, signed_in, size="desktop", scheme=scheme)
    pages = (
        ("/", "home"),
        (f"/c/{formatted_conversation}/", "conversation"),
        ("/usage/", "usage"),
        ("/accounts/password/", "password"),
        ("/account/keys/", "keys"),
    )
    for path, name in pages:
        page.goto(path)
        expect(page.locator("h1")).to_have_count(1)
        found[path] = axe_violations(page, f"axe-desktop-{scheme}-{name}")
    page.fill("input[name=name]", f"axe {scheme}")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_be_visible()
    found["/account/keys/ (new key)"] = axe_violations(page, f"axe-desktop-{scheme}-new-key")
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(f"/c/{formatted_conversation}/")
    page.get_by_role("button", name="Chats and account").click()
    page.locator(".account-summary").click()
    found["conversation, phone, drawer and menu open"] = axe_violations(page, f"axe-phone-{scheme}-drawer-menu")
    close(page)
    assert not {path: v for path, v in found.items() if v}


def test_reduced_motion_stops_the_blinking_cursor_and_the_reply_is_announced_politely(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    full, pieces = stream_words(30, prefix="m")
    upstream.script(sse(paced(pieces, 0.08)))
    page = open_page(browser, live, signed_in, size="desktop", scheme="light", reduced_motion="reduce")
    page.goto("/")
    start_conversation(page, "Count, calmly")
    body = page.locator("#messages .message.assistant[data-status=streaming] .body .tail")
    expect(body).to_be_visible()
    assert body.evaluate("el => getComputedStyle(el, '::after').animationName") == "none"
    expect(page.locator("#messages")).to_have_attribute("aria-live", "polite")
    page.emulate_media(reduced_motion="no-preference")
    assert body.evaluate("el => getComputedStyle(el, '::after').animationName") == "blink"
    page.get_by_role("button", name="Stop").click()
    close(page)


def test_the_new_api_key_has_a_copy_button(browser: Any, live: LiveApp, signed_in: dict) -> None:
    page = open_page(browser, live, signed_in, size="phone", scheme="light")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page.goto("/account/keys/")
    page.get_by_label("Name").fill("phone script")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").input_value()
    assert key.startswith("sk-")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    assert overflow(page) == 0
    shoot(page, "phone-light-new-key")
    close(page)


# --- Long conversations ---------------------------------------------------------------------


def test_loading_earlier_messages_keeps_the_reading_position(
    browser: Any, live: LiveApp, signed_in: dict, long_conversation: int
) -> None:
    page = open_page(browser, live, signed_in, size="desktop", scheme="light")
    page.goto(f"/c/{long_conversation}/")
    messages = page.locator("#messages > article.message")
    expect(messages).to_have_count(100)
    first_shown = messages.first.get_attribute("id")
    page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    expect(messages).to_have_count(150)
    # The message that was at the top is still where the reader left it, not pushed down out of view.
    top = page.evaluate(
        """id => document.getElementById(id).getBoundingClientRect().top
                 - document.getElementById('messages').getBoundingClientRect().top""",
        first_shown,
    )
    assert 0 <= top < 200, f"the message being read moved to {top} px from the top"
    assert page.locator("#messages").evaluate("el => el.scrollTop") > 1000
    close(page)


def test_jump_to_latest_appears_when_scrolled_up_during_a_reply(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream, long_conversation: int
) -> None:
    full, pieces = stream_words(60, prefix="j")
    upstream.script(sse(paced(pieces, 0.08)))
    page = open_page(browser, live, signed_in, size="phone", scheme="dark")
    page.goto(f"/c/{long_conversation}/")
    wait_socket(page)
    jump = page.get_by_role("button", name="Jump to latest")
    type_and_enter(page, "One more, please")
    expect(page.locator("#messages .message.assistant[data-status=streaming]")).to_be_visible()
    expect(jump).to_be_hidden()  # following the reply at the bottom
    page.locator("#messages").evaluate("el => { el.scrollTop = el.scrollHeight - el.clientHeight - 2000; }")
    expect(jump).to_be_visible()
    shoot(page, "phone-dark-jump-to-latest")
    jump.click()
    expect(jump).to_be_hidden()
    assert page.locator("#messages").evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 120
    page.get_by_role("button", name="Stop").click()
    close(page)


# --- Formatted while streaming --------------------------------------------------------------


def pieces_of(text: str, size: int = 6) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_a_reply_is_formatted_while_it_streams_and_ends_as_a_reload_shows_it(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    upstream.script(sse(paced(pieces_of(MARKDOWN_REPLY), 0.06)))
    page = open_page(browser, live, signed_in, size="phone", scheme="light")
    page.goto("/")
    start_conversation(page, "Plan it, formatted")
    reply = page.locator("#messages .message.assistant").last
    reply_id = reply.get_attribute("id")
    streaming = page.locator(f"#{reply_id}[data-status=streaming]")
    # Before the reply ends: the heading, the list and the highlighted code, each formatted.
    expect(streaming.locator(".blocks h2")).to_have_text("A plan")
    expect(streaming.locator(".blocks ul li")).to_have_count(3)
    expect(streaming.locator(".blocks li code")).to_have_text("code")
    expect(streaming.locator(".blocks pre .k").first).to_have_text("def")
    assert "```" not in streaming.locator(".blocks").inner_text()
    shoot(page, "phone-light-formatted-streaming")

    expect(reply).to_have_attribute("data-status", "complete")
    finished = reply.evaluate("el => el.innerHTML")
    page.reload()
    expect(page.locator(f"#{reply_id}")).to_have_attribute("data-status", "complete")
    assert page.locator(f"#{reply_id}").evaluate("el => el.innerHTML") == finished
    close(page)


def test_formatted_streaming_never_runs_what_the_model_writes(
    browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream
) -> None:
    attack = (
        '## Look <img src=x onerror="window.__pwned=1">\n\n'
        "<script>window.__pwned=2</script>\n\n"
        '- [click](javascript:window.__pwned=3)\n- <svg onload="window.__pwned=4"></svg>\n\n'
        "```html\n</code></pre><script>window.__pwned=5</script>\n```\n\n"
        '<b onmouseover="window.__pwned=6">bold?</b> and the last words of a long enough reply.'
    )
    upstream.script(sse(paced(pieces_of(attack, 5), 0.05)))
    page = open_page(browser, live, signed_in, size="desktop", scheme="dark")
    page.goto("/")
    start_conversation(page, "Try something")
    reply = page.locator("#messages .message.assistant").last
    streaming = reply.locator(".blocks")
    expect(streaming.locator("h2")).to_contain_text('Look <img src=x onerror="window.__pwned=1">')
    expect(streaming.locator("pre")).to_contain_text("<script>window.__pwned=5</script>")
    expect(reply).to_have_attribute("data-status", "streaming")
    assert_nothing_ran(page)
    expect(reply).to_have_attribute("data-status", "complete")
    assert_nothing_ran(page)
    close(page)


# --- Teams: the model picker by group, scoped API keys ----------------------------------------

MEMBER = {"username": "member", "password": "a-member-passphrase-42"}


@pytest.fixture(scope="module")
def team(live: LiveApp) -> int:
    """A user in the group "Writers", allowed fake-model and "Second Model" but not "Hidden Model"; the group's id."""
    out = live.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import Group\n"
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import ChatModel, GroupPolicy\n"
        "first = ChatModel.objects.get(name='fake-model')\n"
        "second = ChatModel.objects.create(name='second-model', display_name='Second Model', position=200,"
        " provider=first.provider, upstream_model='second-up')\n"
        "ChatModel.objects.create(name='hidden-model', display_name='Hidden Model', position=201,"
        " provider=first.provider, upstream_model='hidden-up')\n"
        "group = Group.objects.create(name='Writers')\n"
        "policy = GroupPolicy.objects.create(group=group, all_models=False)\n"
        "policy.allowed_models.set([first, second])\n"
        f"user = get_user_model().objects.create_user(username={MEMBER['username']!r}, password={MEMBER['password']!r})\n"
        "user.groups.add(group)\n"
        "print(group.pk)",
    )
    return int(out.strip().splitlines()[-1])


def sign_in(page: Any, account: dict) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", account["username"])
    page.fill("input[name=password]", account["password"])
    page.click("button[type=submit]")
    expect(page.locator("#composer-input")).to_be_visible()


def picker_labels(page: Any) -> list[str]:
    return page.locator("select[name=model] option").all_inner_texts()


def test_the_model_picker_offers_a_member_only_their_groups_models_and_refuses_one_taken_away(
    browser: Any, live: LiveApp, signed_in: dict, team: int, upstream: FakeUpstream
) -> None:
    member = open_page(browser, live, None, size="phone", scheme="dark")
    sign_in(member, MEMBER)
    assert picker_labels(member) == [DISPLAY_NAME, "Second Model"]
    shoot(member, "phone-dark-picker-member")

    admin = open_page(browser, live, signed_in, size="desktop", scheme="light")
    admin.goto("/")
    assert {"Second Model", "Hidden Model"} <= set(picker_labels(admin))  # in no group: every model

    member.locator("select[name=model]").select_option(label="Second Model")
    member.locator("#composer-input").fill("A question I typed with care")
    # Meanwhile an admin takes Second Model away from the group, in the admin.
    admin.goto(f"/admin/auth/group/{team}/change/")
    expect(admin.locator("label[for=id_policy-0-allowed_models_2]")).to_have_text(re.compile("Second Model"))
    admin.locator("#id_policy-0-allowed_models_2").uncheck()  # Second Model (the empty template has one too)
    shoot(admin, "desktop-light-admin-group")
    admin.get_by_role("button", name="Save", exact=True).click()
    expect(admin.locator(".messagelist")).to_contain_text("was changed successfully")

    member.locator("#composer-input").press("Enter")
    refusal = member.locator(".notice, [role=alert]").filter(has_text="“second-model” is not available to you")
    expect(refusal).to_be_visible()
    expect(member.locator("#composer-input")).to_have_value("A question I typed with care")
    assert picker_labels(member) == [DISPLAY_NAME]
    assert overflow(member) == 0
    shoot(member, "phone-dark-picker-refused")
    assert upstream.requests == []
    close(member)
    close(admin)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_the_keys_page_creates_scoped_keys_and_shows_scopes_and_spend_at_every_width(
    browser: Any, live: LiveApp, signed_in: dict, size: str, scheme: str
) -> None:
    page = open_page(browser, live, signed_in, size=size, scheme=scheme)
    page.goto("/account/keys/")
    page.get_by_label("Name").fill(f"nightly report {size} {scheme} with a rather long name")
    page.get_by_label("Monthly budget").fill("-3")
    page.get_by_label("Expires on").fill("2001-02-03")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#id_monthly_budget_error")).to_contain_text("greater than or equal to 0")
    expect(page.locator("#id_expires_on_error")).to_contain_text("in the past")
    expect(page.get_by_label("Name")).to_have_value(f"nightly report {size} {scheme} with a rather long name")
    assert overflow(page) == 0
    shoot(page, f"{size}-{scheme}-keys-errors")

    page.get_by_label("Monthly budget").fill("5")
    page.get_by_label("Expires on").fill("2099-12-31")
    page.get_by_label("Requests per minute").fill("30")
    page.locator("input[name=models]").first.check()
    page.get_by_label("Read-only").check()
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_have_value(re.compile(r"^sk-cw-"))
    row = page.locator("table.keys tbody tr").filter(has_text=f"nightly report {size} {scheme}")
    for text in (
        f"Models: {DISPLAY_NAME}",
        "Read-only",
        "30 requests/min",
        "Valid through 2099-12-31 (UTC)",
        "$0.0000 of $5.00",
    ):
        expect(row).to_contain_text(text)
    assert overflow(page) == 0
    revoke = row.get_by_role("button", name="Revoke")
    revoke.scroll_into_view_if_needed()
    assert in_viewport(page, revoke)  # the whole row is reachable: nothing is cut off at the side
    shoot(page, f"{size}-{scheme}-keys")
    page.locator("table.keys").screenshot(path=str(SHOTS / f"{size}-{scheme}-keys-table.png"))
    close(page)
