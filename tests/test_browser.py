"""The chat page end to end in headless Chromium, against the real app served by Daphne.

The app runs as a subprocess with its own SQLite file and the in-memory channel
layer; its only provider is the loopback ``FakeUpstream`` of this process, so each
test scripts the model's replies and checks what a person sees in the browser.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import LiveApp
from tests.upstream import Error, FakeUpstream, Raw, Reply

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/shots/browser.png")
ADMIN = {"username": "admin", "password": "a-long-test-passphrase-42"}
TIMEOUT_MS = 10_000

# Black-box: the app keeps its own SQLite file in a subprocess, so these tests ask for no
# test database (no ``db`` fixture, no ``django_db`` mark) and touch none.
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")

# Runs in every page before its scripts: counts websocket openings, and remembers what
# the streaming reply body showed when the page loaded and the last text it showed
# while streaming (the swap to the finished message replaces that body).
INIT_SCRIPT = """
window.__wsOpens = 0;
window.__streamSeen = {};
document.addEventListener("htmx:wsOpen", function () { window.__wsOpens += 1; });
document.addEventListener("DOMContentLoaded", function () {
  window.__initialStream = {};
  document.querySelectorAll("#messages .body.streaming").forEach(function (body) {
    window.__initialStream[body.id] = body.textContent;
  });
  var messages = document.getElementById("messages");
  if (!messages) return;
  new MutationObserver(function () {
    document.querySelectorAll("#messages .body.streaming").forEach(function (body) {
      window.__streamSeen[body.id] = body.textContent;
    });
  }).observe(messages, {subtree: true, childList: true, characterData: true});
});
"""


# --- The app, the provider and the browser --------------------------------------------


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    app = LiveApp(upstream=fake_upstream, data_dir=tmp_path_factory.mktemp("chatweb-live"))
    try:
        app.start()
        yield app
    finally:
        app.stop()


@pytest.fixture
def upstream(fake_upstream: FakeUpstream, live: LiveApp) -> Iterator[FakeUpstream]:
    """The provider with an empty script for this test (nothing scripted: it echoes)."""
    fake_upstream.reset()
    yield fake_upstream
    fake_upstream.reset()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_context(browser: Any, live: LiveApp, storage_state: dict | None = None) -> Any:
    """A browser context on the app; uncaught script errors of its pages go to ``context.page_errors``."""
    context = browser.new_context(base_url=live.url, storage_state=storage_state)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(INIT_SCRIPT)
    context.page_errors = []
    context.on("page", lambda page: page.on("pageerror", lambda error: context.page_errors.append(str(error))))
    return context


@pytest.fixture(scope="module")
def signed_in(browser: Any, live: LiveApp) -> dict:
    """Cookies of the admin account: signs in, or creates it if this is the first visit."""
    context = new_context(browser, live)
    page = context.new_page()
    page.goto("/accounts/login/")
    if page.url.endswith("/accounts/signup/"):
        signup(page)
    else:
        page.fill("input[name=username]", ADMIN["username"])
        page.fill("input[name=password]", ADMIN["password"])
        page.click("button[type=submit]")
    expect(page.locator("#composer-input")).to_be_visible()
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def page(browser: Any, live: LiveApp, signed_in: dict, upstream: FakeUpstream) -> Iterator[Any]:
    """A signed-in tab on the chat home page."""
    context = new_context(browser, live, signed_in)
    tab = context.new_page()
    tab.goto("/")
    yield tab
    context.close()
    assert not context.page_errors, f"script errors on the page: {context.page_errors}"


# --- What a person does ----------------------------------------------------------------


def signup(page: Any) -> None:
    page.fill("input[name=username]", ADMIN["username"])
    page.fill("input[name=password1]", ADMIN["password"])
    page.fill("input[name=password2]", ADMIN["password"])
    page.click("button[type=submit]")


def type_and_enter(page: Any, text: str) -> None:
    box = page.locator("#composer-input")
    box.fill(text)
    box.press("Enter")


def start_conversation(page: Any, text: str) -> int:
    """From the home page: send the first message; returns the new conversation's id."""
    type_and_enter(page, text)
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    wait_socket(page)
    return int(re.search(r"/c/(\d+)/$", page.url).group(1))


def wait_socket(page: Any) -> None:
    # A function, not an expression string: Playwright evaluates a polled string with eval, which
    # the pages' Content-Security-Policy refuses.
    page.wait_for_function("() => window.__wsOpens > 0")


def assistant_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("#messages > article.message.assistant", "els => els.map(e => e.id)")


def send_in_conversation(page: Any, text: str) -> Any:
    """Send over the socket; returns the new reply's article once it is on the page."""
    before = len(assistant_ids(page))
    type_and_enter(page, text)
    page.wait_for_function(
        "n => document.querySelectorAll('#messages > article.message.assistant').length > n", arg=before
    )
    return page.locator(f"#{assistant_ids(page)[-1]}")


def last_reply(page: Any) -> Any:
    return page.locator("#messages > article.message.assistant").last


def wait_streaming(
    page: Any,
    article_id: str,
    *,
    min_chars: int = 1,
    below: int | None = None,
    contains: str = "",
    prefix_of: str | None = None,
) -> str:
    """Wait until the reply shows as streaming with at least ``min_chars`` (and fewer than
    ``below``) characters, containing ``contains`` and starting ``prefix_of``; returns that text.

    On timeout it fails with the text the reply last showed.
    """
    try:
        handle = page.wait_for_function(
            """([id, min, below, contains, full]) => {
                 const a = document.getElementById(id);
                 if (!a || a.dataset.status !== "streaming") return false;
                 const text = a.querySelector(".body").textContent;
                 const ok = text.length >= min && (below === null || text.length < below)
                   && text.includes(contains) && (full === null || full.startsWith(text));
                 return ok ? text : false;
               }""",
            arg=[article_id, min_chars, below, contains, prefix_of],
        )
    except sync_api.TimeoutError:
        shown = page.evaluate(
            """id => { const a = document.getElementById(id);
                       return a ? [a.dataset.status, a.querySelector(".body").textContent] : null; }""",
            article_id,
        )
        seen = page.evaluate("id => window.__streamSeen[id + '-body']", article_id)
        raise AssertionError(
            f"reply {article_id} never showed the expected streaming text; now (status, text) = {shown!r},"
            f" last streamed text {seen!r}"
        ) from None
    return handle.json_value()


def wait_partial(page: Any, article_id: str, full: str, min_chars: int = 1) -> str:
    """Wait until the reply streams some, not all, of ``full``, from its beginning.

    (Right after a socket connects, a delta can land just before the text-so-far snapshot
    replaces the body, so a state that is not a prefix is waited past, not failed on.)
    """
    return wait_streaming(page, article_id, min_chars=min_chars, below=len(full), prefix_of=full)


def last_streamed(page: Any, article_id: str) -> str:
    """The last text the page showed while the reply streamed (before the finished swap)."""
    return page.evaluate("id => window.__streamSeen[id + '-body']", article_id)


def paced(pieces: list[str], pause: float) -> list[str | float]:
    """Pieces with a pause before each."""
    return [part for piece in pieces for part in (pause, piece)]


def sse(parts: list[str | float]) -> Raw:
    """A streamed completion, piece by piece with pauses (floats) between, as raw SSE bytes."""

    def event(delta: dict, finish_reason: str | None = None) -> bytes:
        chunk = {
            "id": "chatcmpl-browser",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "fake-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    body: list[bytes | float] = [event({"role": "assistant", "content": ""})]
    body += [part if isinstance(part, float) else event({"content": part}) for part in parts]
    return Raw([*body, event({}, "stop"), b"data: [DONE]\n\n"])


def stream_words(count: int, prefix: str = "w") -> tuple[str, list[str]]:
    """Distinct numbered words, so a duplicated or missing piece shows in the text."""
    pieces = [f"{'' if i == 0 else ' '}{prefix}{i:02d}" for i in range(count)]
    return "".join(pieces), pieces


# --- Tests -------------------------------------------------------------------------------


def test_first_visit_signup_then_streamed_reply_persists_as_markdown(
    browser: Any, live: LiveApp, upstream: FakeUpstream
) -> None:
    pieces = ["Hello", ", this", " is", " **bold**", " news", " from", " the", " fake", " model."]
    full = "".join(pieces)
    upstream.script(Reply(text=full, pieces=pieces, delay=0.15))
    context = new_context(browser, live)
    page = context.new_page()

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/signup/$"))
    expect(page.get_by_text("This first account will be the administrator")).to_be_visible()
    signup(page)
    expect(page).to_have_url(f"{live.url}/")
    expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()
    expect(page.locator("select[name=model]")).to_have_value("fake-model")

    start_conversation(page, "Tell me the news")
    reply = last_reply(page)
    reply_id = reply.get_attribute("id")
    expect(page.locator("#messages > article.message.user")).to_have_text(re.compile("Tell me the news"))
    partial = wait_partial(page, reply_id, full)
    assert partial and partial != full
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".body")).to_have_text("Hello, this is bold news from the fake model.")
    expect(reply.locator(".body strong")).to_have_text("bold")
    expect(page.locator("form.regenerate-form button")).to_be_visible()
    expect(page.locator("form.stop-form button")).to_be_hidden()

    page.reload()
    expect(page.locator("#messages > article.message")).to_have_count(2)
    expect(page.locator("#messages > article.message.user .body")).to_have_text("Tell me the news")
    reply = page.locator(f"#{reply_id}")
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".body strong")).to_have_text("bold")
    expect(reply.locator(".body")).to_have_text("Hello, this is bold news from the fake model.")
    expect(page.locator("#conversations .conversation-link.current")).to_have_text("Tell me the news")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    context.close()
    assert not context.page_errors, f"script errors on the page: {context.page_errors}"


def test_reload_mid_stream_shows_text_so_far_and_continues_live(page: Any, upstream: FakeUpstream) -> None:
    # Steady words (saved to the database as they come), a quick burst, a pause, then more words:
    # during the pause the newest words exist only in the running generation, not yet in the database.
    full, pieces = stream_words(24)
    upstream.script(sse([*paced(pieces[:8], 0.12), *paced(pieces[8:12], 0.01), 1.2, *paced(pieces[12:], 0.1)]))
    start_conversation(page, "Count slowly")
    reply_id = last_reply(page).get_attribute("id")
    wait_partial(page, reply_id, full, min_chars=len("w00 w01 w02 w03 w04 w05 w06 w07 w08 w09 w10 w11"))

    page.reload()
    initial = page.evaluate("id => window.__initialStream[id + '-body']", reply_id)
    assert initial, "the reloaded page showed none of the text written so far"
    assert full.startswith(initial) and initial != full
    wait_socket(page)
    # All the text so far (the burst included), then the rest live.
    wait_partial(page, reply_id, full, min_chars=len("w00 w01 w02 w03 w04 w05 w06 w07 w08 w09 w10 w11"))
    wait_streaming(page, reply_id, contains="w12")

    reply = page.locator(f"#{reply_id}")
    expect(reply).to_have_attribute("data-status", "complete")
    assert last_streamed(page, reply_id) == full  # no word missing or repeated
    expect(reply.locator(".body")).to_have_text(full)


def test_model_output_and_user_text_are_shown_as_text_never_run(page: Any, upstream: FakeUpstream) -> None:
    pieces = [
        "Look: ",
        "<script>window.__pwned=1</script>",
        " then <im",
        'g src=x onerror="window.__pwned=1">',
        " and ",
        "[click me](javascript:window.__pwned=1)",
        " <b>bold?</b>",
        " end",
        " of",
        " this",
        " rather",
        " long",
        " reply.",
    ]
    full = "".join(pieces)
    upstream.script(Reply(text=full, pieces=pieces, delay=0.15))
    user_text = "<b>hi</b><img src=x onerror=window.__pwned=2>"

    start_conversation(page, user_text)
    reply_id = last_reply(page).get_attribute("id")
    user = page.locator("#messages > article.message.user .body")
    expect(user).to_have_text(user_text)

    # While streaming, the markup arrives as visible text.
    seen = wait_streaming(page, reply_id, contains=" end", below=len(full))
    assert "<script>window.__pwned=1</script>" in seen
    assert '<img src=x onerror="window.__pwned=1">' in seen
    expect(page.locator(f"#{reply_id} .body")).to_contain_text('<img src=x onerror="window.__pwned=1">')
    assert_nothing_ran(page)

    reply = page.locator(f"#{reply_id}")
    expect(reply).to_have_attribute("data-status", "complete")
    body = reply.locator(".body")
    expect(body).to_contain_text("<script>window.__pwned=1</script>")
    expect(body).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(body).to_contain_text("click me")
    expect(body).to_contain_text("<b>bold?</b>")
    assert_nothing_ran(page)

    page.reload()
    expect(page.locator(f"#{reply_id}")).to_have_attribute("data-status", "complete")
    expect(page.locator("#messages > article.message.user .body")).to_have_text(user_text)
    assert_nothing_ran(page)


def assert_nothing_ran(page: Any) -> None:
    page.wait_for_timeout(50)  # give an injected onerror handler its chance to fire
    assert page.evaluate("typeof window.__pwned") == "undefined"
    messages = page.locator("#messages")
    for tag in ("script", "img", "b", "iframe", "svg:not(.icon)", "[onerror]"):  # .icon: the message actions' own
        expect(messages.locator(tag)).to_have_count(0)
    hrefs = page.eval_on_selector_all("#messages a", "els => els.map(a => a.getAttribute('href') || '')")
    assert not [href for href in hrefs if href.strip().lower().startswith("javascript:")]


def test_stop_keeps_partial_text_and_composer_works_again(page: Any, upstream: FakeUpstream) -> None:
    full, pieces = stream_words(60, prefix="s")
    upstream.script(Reply(text=full, pieces=pieces, delay=0.1))
    start_conversation(page, "Write a long story")
    reply_id = last_reply(page).get_attribute("id")
    wait_partial(page, reply_id, full, min_chars=len("s00 s01 s02"))

    stop = page.locator("form.stop-form button")
    expect(stop).to_be_visible()
    stop.click()

    reply = page.locator(f"#{reply_id}")
    expect(reply).to_have_attribute("data-status", "stopped")
    expect(reply.locator(".status")).to_have_text("Stopped.")
    kept = reply.locator(".body").inner_text().strip()
    assert kept.startswith("s00 s01 s02") and full.startswith(kept) and kept != full
    expect(stop).to_be_hidden()

    page.reload()  # the partial text was saved as well
    expect(page.locator(f"#{reply_id}")).to_have_attribute("data-status", "stopped")
    expect(page.locator(f"#{reply_id} .body")).to_have_text(kept)
    wait_socket(page)

    second = send_in_conversation(page, "Now something short")
    expect(page.locator("#composer-input")).to_have_value("")
    expect(second).to_have_attribute("data-status", "complete")
    expect(second.locator(".body")).to_have_text("You said: Now something short")


def test_upstream_error_is_readable_and_typed_text_survives_a_refused_send(page: Any, upstream: FakeUpstream) -> None:
    upstream.script(Error(status=401, message="Incorrect API key provided", type="invalid_request_error"))
    start_conversation(page, "Hello?")
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "error")
    expect(reply.locator("p.status.error")).to_contain_text("Incorrect API key provided")
    expect(reply.locator("p.status.error")).to_contain_text("API key")
    box = page.locator("#composer-input")
    expect(box).to_be_editable()

    full, pieces = stream_words(20, prefix="e")
    upstream.script(Reply(text=full, pieces=pieces, delay=0.12))
    streaming = send_in_conversation(page, "Try again please")
    wait_partial(page, streaming.get_attribute("id"), full)

    type_and_enter(page, "A second thought")  # refused: a reply is still being written
    notice = page.locator("#composer-notice")
    expect(notice).to_contain_text("Wait for the current reply to finish")
    expect(box).to_have_value("A second thought")

    expect(streaming).to_have_attribute("data-status", "complete")
    expect(streaming.locator(".body")).to_have_text(full)
    box.press("Enter")
    expect(box).to_have_value("")
    expect(notice).to_be_hidden()
    expect(last_reply(page).locator(".body")).to_have_text("You said: A second thought")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")


def test_two_tabs_on_one_conversation_both_stream_the_reply(page: Any, upstream: FakeUpstream) -> None:
    conversation_id = start_conversation(page, "First message")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")

    other = page.context.new_page()
    other.goto(f"/c/{conversation_id}/")
    wait_socket(other)
    expect(other.locator("#messages > article.message")).to_have_count(2)

    full, pieces = stream_words(16, prefix="t")
    upstream.script(Reply(text=full, pieces=pieces, delay=0.12))
    reply = send_in_conversation(page, "Hello from tab one")
    reply_id = reply.get_attribute("id")

    expect(other.locator("#messages > article.message.user").last).to_have_text(re.compile("Hello from tab one"))
    wait_partial(other, reply_id, full)
    wait_partial(page, reply_id, full)
    for tab in (page, other):
        expect(tab.locator(f"#{reply_id}")).to_have_attribute("data-status", "complete")
        expect(tab.locator(f"#{reply_id} .body")).to_have_text(full)
        assert last_streamed(tab, reply_id) == full
    expect(other.locator("#messages > article.message")).to_have_count(4)


ATTACKER_PAGE = """<!doctype html><title>another site</title><script>
window.result = {opened: false, messages: 0, ended: false};
var socket = new WebSocket("%(socket)s");
socket.onopen = function () {
  window.result.opened = true;
  socket.send(JSON.stringify({message: "posted by another site"}));
};
socket.onmessage = function () { window.result.messages += 1; };
socket.onclose = function () { window.result.ended = true; };
</script>"""


def test_a_page_on_another_port_of_the_same_host_gets_nothing_from_the_socket(
    page: Any, live: LiveApp, upstream: FakeUpstream
) -> None:
    """Cross-site websocket hijacking: the browser sends the user's cookies to the socket from any page, so
    only the Origin tells the app's own pages from a page elsewhere on the same host."""
    import http.server
    import threading

    conversation_id = start_conversation(page, "A private question")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    message_ids = ",".join(
        a.split("-")[1] for a in page.eval_on_selector_all("#messages > article", "els => els.map(e => e.id)")
    )
    socket_url = live.url.replace("http://", "ws://") + f"/ws/c/{conversation_id}/?streaming={message_ids}"
    html = (ATTACKER_PAGE % {"socket": socket_url}).encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        elsewhere = page.context.new_page()  # same browser, same cookies for 127.0.0.1
        elsewhere.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        elsewhere.wait_for_function("window.result.ended || window.result.messages > 0")
        assert elsewhere.evaluate("window.result") == {"opened": False, "messages": 0, "ended": True}
    finally:
        server.shutdown()
        server.server_close()

    page.reload()  # the app's own page still gets its socket, and nothing was posted
    wait_socket(page)
    expect(page.locator("#messages > article.message")).to_have_count(2)
    assert "posted by another site" not in page.content()


def test_a_reply_too_long_for_one_socket_frame_is_shown_whole(page: Any, upstream: FakeUpstream) -> None:
    """Rendered, this reply is about 750 KB, more than one frame carries: the page fetches it over HTTP."""
    pieces = [f'line {i}: a < b & "c"\n' * 150 for i in range(130)]
    upstream.script(Reply(text="".join(pieces), pieces=pieces, delay=0.05))  # still streaming when the page opens
    with page.expect_response(re.compile(r"/c/\d+/messages/\d+$"), timeout=60_000) as fetched:
        start_conversation(page, "Write pages and pages")
        wait_streaming(page, last_reply(page).get_attribute("id"), contains="line 1: a < b")
    assert fetched.value.status == 200
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".body.markdown")).to_contain_text('line 129: a < b & "c"')
    page.reload()
    expect(last_reply(page).locator(".body.markdown")).to_contain_text('line 129: a < b & "c"')
