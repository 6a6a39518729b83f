"""Attachments in Chromium: a pasted screenshot and a picked PDF reach the model; thumbnails stay after a reload."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.test_attachments import pdf, png
from tests.test_browser import (  # noqa: F401 - browser, fake_upstream, live, upstream, signed_in, page are fixtures
    CHROMIUM,
    browser,
    fake_upstream,
    live,
    new_context,
    page,
    signed_in,
    upstream,
    wait_socket,
)
from tests.test_ui import axe_violations, close, open_page, overflow, shoot
from tests.upstream import FakeUpstream, Reply

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")

PASTE = """(b64) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], "screenshot.png", {type: "image/png"}));
  const box = document.getElementById("composer-input");
  box.focus();
  box.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
}"""


DROP = """(files) => {
  const data = new DataTransfer();
  for (const [name, type, b64] of files) {
    data.items.add(new File([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], name, {type}));
  }
  const box = document.getElementById("composer-input");
  box.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
  box.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
}"""


@pytest.fixture(scope="module", autouse=True)
def vision(live: Any) -> None:
    """Every model of the app reads images."""
    live.manage(
        "shell", "-c", "from conversations.models import ChatModel; ChatModel.objects.update(accepts_images=True)"
    )


def sent_user_message(upstream: FakeUpstream) -> dict[str, Any]:
    return [m for m in upstream.requests[-1]["messages"] if m["role"] == "user"][-1]


def loaded(locator: Any) -> bool:
    return locator.evaluate("img => img.complete && img.naturalWidth > 0")


def test_a_pasted_screenshot_reaches_the_model_downscaled_and_its_thumbnail_stays(
    page: Any, upstream: FakeUpstream, browser: Any, live: Any
) -> None:
    upstream.script(Reply(text="That is a red rectangle."))
    page.evaluate(PASTE, base64.b64encode(png(3000, 1500)).decode())
    chip = page.locator("#attachment-chips .attachment-chip.image img")
    expect(chip).to_be_visible()
    page.locator("#composer-input").fill("What is in this screenshot?")
    shoot(page, "attachments-composer-desktop")
    page.locator("#composer-input").press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(page.locator("#messages .message.assistant[data-status=complete]")).to_contain_text("red rectangle")

    parts = sent_user_message(upstream)["content"]
    assert parts[0] == {"type": "text", "text": "What is in this screenshot?"}
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))).size == (2048, 1024)

    thumbnail = page.locator("#messages .message.user .attachment-chip img")
    expect(thumbnail).to_be_visible()
    assert loaded(thumbnail)
    file_url = thumbnail.get_attribute("src")
    assert page.locator("#attachment-chips .attachment-chip").count() == 0  # the composer is empty again
    page.reload()
    wait_socket(page)
    expect(thumbnail).to_be_visible()
    assert loaded(thumbnail)
    assert page.locator("#messages .message.user .attachment-chip a").get_attribute("href") == file_url  # full size
    shoot(page, "attachments-message-desktop")

    live.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.filter(username='mallory').exists() or "
        "get_user_model().objects.create_user(username='mallory', password='mallory-password-1')",
    )
    other = new_context(browser, live)
    tab = other.new_page()
    tab.goto("/accounts/login/")
    tab.fill("input[name=username]", "mallory")
    tab.fill("input[name=password]", "mallory-password-1")
    tab.click("button[type=submit]")
    expect(tab.locator("#composer-input")).to_be_visible()
    assert tab.goto(file_url).status == 404
    assert page.goto(file_url).status == 200  # its owner still gets it
    other.close()


def test_a_picked_pdf_has_its_text_in_the_request(page: Any, upstream: FakeUpstream) -> None:
    page.set_input_files(
        "#attachment-input",
        files=[{"name": "minutes.pdf", "mimeType": "application/pdf", "buffer": pdf("The board approved the budget.")}],
    )
    expect(page.locator("#attachment-chips .attachment-chip:not(.pending) .attachment-name")).to_have_text(
        "minutes.pdf"
    )
    expect(page.locator("#attachment-chips input[name=attachments]")).to_have_count(1)
    page.locator("#composer-input").fill("What was decided?")
    page.locator("#composer-input").press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    wait_socket(page)
    expect(page.locator("#messages .message.assistant[data-status=complete]")).to_be_visible()

    content = sent_user_message(upstream)["content"]
    assert content == '<document name="minutes.pdf">\nThe board approved the budget.\n</document>\n\nWhat was decided?'
    expect(page.locator("#messages .message.user .attachment-name")).to_have_text("minutes.pdf")


def test_a_refused_file_says_why_in_its_chip_and_the_typed_text_stays(page: Any, upstream: FakeUpstream) -> None:
    page.locator("#composer-input").fill("Here is my logo")
    page.set_input_files(
        "#attachment-input",
        files=[
            {
                "name": "logo.svg",
                "mimeType": "image/svg+xml",
                "buffer": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            },
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"remember the milk"},
        ],
    )
    error = page.locator("#attachment-chips .attachment-chip.failed")
    expect(error).to_contain_text("SVGs can carry scripts and are not accepted")
    expect(page.locator("#attachment-chips .attachment-chip:not(.failed):not(.pending) .attachment-name")).to_have_text(
        "notes.txt"
    )
    assert page.locator("#composer-input").input_value() == "Here is my logo"
    shoot(page, "attachments-refused-desktop")
    error.locator(".attachment-remove").click()
    expect(error).to_have_count(0)
    page.locator("#attachment-chips .attachment-chip .attachment-remove").click()
    expect(page.locator("#attachment-chips .attachment-chip")).to_have_count(0)
    assert upstream.requests == []


@pytest.mark.parametrize(("size", "scheme"), [("phone", "light"), ("phone", "dark"), ("desktop", "dark")])
def test_chips_and_thumbnails_fit_and_pass_axe(
    browser: Any, live: Any, signed_in: dict, upstream: FakeUpstream, size: str, scheme: str
) -> None:
    tab = open_page(browser, live, signed_in, size=size, scheme=scheme)
    tab.goto("/")
    tab.set_input_files(
        "#attachment-input",
        files=[
            {"name": "photo.png", "mimeType": "image/png", "buffer": png(1600, 1200, "teal")},
            {"name": "a-rather-long-quarterly-report-name.pdf", "mimeType": "application/pdf", "buffer": pdf("Q3")},
            {"name": "empty.txt", "mimeType": "text/plain", "buffer": b""},
        ],
    )
    expect(tab.locator("#attachment-chips input[name=attachments]")).to_have_count(2)
    expect(tab.locator("#attachment-chips .failed")).to_contain_text("is empty")
    assert overflow(tab) == 0
    assert axe_violations(tab, f"attachments-composer-{size}-{scheme}") == []
    upstream.script(Reply(text="Got both: a photo and a report."))
    tab.locator("#composer-input").fill("Two files")
    tab.locator("#composer-input").press("Enter")
    tab.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(tab.locator("#messages .message.assistant[data-status=complete]")).to_be_visible()
    assert overflow(tab) == 0
    assert axe_violations(tab, f"attachments-message-{size}-{scheme}") == []
    close(tab)


def test_files_dropped_on_the_composer_go_with_a_message_in_a_conversation(page: Any, upstream: FakeUpstream) -> None:
    page.locator("#composer-input").fill("First")
    page.locator("#composer-input").press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    wait_socket(page)
    expect(page.locator("#messages .message.assistant[data-status=complete]")).to_have_count(1)

    page.evaluate(
        DROP,
        [
            ["a.csv", "text/csv", base64.b64encode(b"x,y\n1,2\n").decode()],
            ["b.png", "image/png", base64.b64encode(png(40, 40, "green")).decode()],
        ],
    )
    expect(page.locator("#attachment-chips input[name=attachments]")).to_have_count(2)
    page.locator("#composer-input").fill("And these?")
    page.locator("#composer-input").press("Enter")  # over the socket this time
    expect(page.locator("#messages .message.assistant[data-status=complete]")).to_have_count(2)
    expect(page.locator("#attachment-chips .attachment-chip")).to_have_count(0)

    text, image = sent_user_message(upstream)["content"]
    assert text == {"type": "text", "text": '<document name="a.csv">\nx,y\n1,2\n\n</document>\n\nAnd these?'}
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    expect(page.locator("#messages .message.user").nth(1).locator(".attachment-chip")).to_have_count(2)
