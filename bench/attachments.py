"""What processing an attachment costs: the upload's work (sniff, decode, re-encode, extract text) and what
an image adds to a request, for a few typical files made here. Prints figures; asserts nothing.

    .venv/bin/python bench/attachments.py [--rounds 5] [--smoke]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
os.environ.setdefault("LOCAL_MODEL", "0")

import django  # noqa: E402

django.setup()

from PIL import Image  # noqa: E402
from reportlab.pdfgen import canvas  # noqa: E402

from conversations.chat.attachments.upload import _processed  # noqa: E402


def photo(width: int, height: int) -> bytes:
    """A noisy JPEG, as hard to compress as a photo."""
    out = io.BytesIO()
    Image.effect_noise((width, height), 64).convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


def screenshot(width: int, height: int) -> bytes:
    """A PNG of flat areas and lines, as a screenshot is."""
    image = Image.new("RGB", (width, height), "white")
    for y in range(0, height, 24):
        image.paste((40, 40, 40), (20, y, width // 2 + (y * 7) % (width // 2), y + 12))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pdf(pages: int) -> bytes:
    out = io.BytesIO()
    page = canvas.Canvas(out)
    for n in range(pages):
        for line in range(45):
            page.drawString(
                50, 800 - line * 17, f"Page {n + 1}, line {line + 1}: the quarterly figures, region by region."
            )
        page.showPage()
    page.save()
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one round: that it runs, not figures")
    args = parser.parse_args()
    rounds = 1 if args.smoke else args.rounds
    files = {
        "photo 4000x3000 JPEG": ("photo.jpg", photo(4000, 3000)),
        "screenshot 2880x1800 PNG": ("screen.png", screenshot(2880, 1800)),
        "PDF, 30 pages of text": ("report.pdf", pdf(30)),
        "text, 1 MB of code": ("big.py", b"def f(x):\n    return x * 2  # doubles\n" * 26_000),
    }
    print(f"{'file':28} {'bytes in':>10} {'bytes kept':>10} {'median ms':>10} {'max ms':>8}  notes")
    for label, (name, data) in files.items():
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            kept = _processed(name, data)
            times.append((time.perf_counter() - started) * 1000)
        note = (
            f"{kept['width']}x{kept['height']}, ~{kept['tokens']} tokens (tile rule), "
            f"{len(base64.b64encode(kept['content'])):,} bytes as a data URL"
            if kept["kind"] == "image"
            else f"{len(kept['text']):,} characters, ~{kept['tokens']:,} tokens"
        )
        print(
            f"{label:28} {len(data):>10,} {kept['size']:>10,} {statistics.median(times):>10.0f} {max(times):>8.0f}  {note}"
        )


if __name__ == "__main__":
    main()
