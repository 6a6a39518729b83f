"""Model output to safe HTML: Markdown rendered on the server, highlighted, then sanitised."""

import re

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_FORMATTER = HtmlFormatter(nowrap=True)

ALLOWED_TAGS = {
    "a",
    "blockquote",
    "br",
    "code",
    "del",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "span",
    "strong",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "pre": {"class"},
    "th": {"style"},
    "td": {"style"},
}


def _highlight(code: str, lang: str, _attrs: str) -> str:
    """Pygments markup for a fenced block in a known language; '' lets markdown-it escape it."""
    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""
    markup: str = highlight(code, lexer, _FORMATTER)  # Pygments ships no types; with a formatter and no file, a str
    return markup


_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight}).enable(
    ["table", "strikethrough"]
)


def markdown_render(text: str) -> SafeString:
    """Render Markdown to HTML that is safe to put in a page.

    Raw HTML in the text is escaped by markdown-it, and nh3 removes anything that
    could still run: scripts, event handlers, ``javascript:`` links.
    """
    html = _MARKDOWN.render(text)
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )
    return mark_safe(clean)  # noqa: S308 - sanitised by nh3 just above


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"[-*+][ \t]|\d{1,9}[.)][ \t]")
_MAY_BE_LIST_ITEM = re.compile(r"[-*+]|\d{1,9}[.)]?")  # a line still being written that may become one


def finished_blocks_end(text: str) -> int:
    """Where the Markdown blocks of a reply still being written that can no longer change end.

    A block is finished once a blank line outside any fenced code block follows it and the
    next line has begun without continuing it: not indented (a list item's paragraph, more
    indented code) and not another item of the list before. Everything before the returned
    offset renders now as it will in the whole reply; the rest is the open tail, shown as text.
    """
    end = position = 0
    fence = ""
    blank_before = in_list = False
    lines = text.split("\n")
    for number, line in enumerate(lines):
        being_written = number == len(lines) - 1
        opener = _FENCE.match(line)
        if fence:
            if opener and opener.group(1).startswith(fence) and not line[opener.end() :].strip():
                fence = ""
        elif not line.strip():
            blank_before = True
        elif line[0] in " \t":
            blank_before = False
        else:
            item = bool(_LIST_ITEM.match(line))
            undecided = being_written and _MAY_BE_LIST_ITEM.fullmatch(line)
            if blank_before and not undecided and not (item and in_list):
                end = position
            blank_before, in_list = False, item or (in_list and not blank_before)
            if opener and not being_written:
                fence = opener.group(1)
        position += len(line) + 1
    return end


def streaming_render(text: str) -> tuple[SafeString, str]:
    """A reply still being written: its finished blocks as safe HTML, and the open tail, to show as text."""
    done, html = streaming_blocks_extend(text, done=0, html="")
    return mark_safe(html), text[done:]  # noqa: S308 - markdown_render's sanitised output


# Past this much HTML of finished blocks, the rest of a streaming reply stays text until it ends,
# so the blocks and a part of the tail always fit one websocket frame (consumers.FRAME_MAX_BYTES).
STREAMING_BLOCKS_MAX_CHARS = 64 * 1024


def streaming_blocks_extend(text: str, *, done: int, html: str) -> tuple[int, str]:
    """Add the blocks of a streaming reply finished since ``done`` to ``html`` (the rendered ``text[:done]``).

    Only the new blocks are rendered, so formatting a reply as it streams costs about
    what rendering it once does. Returns the new (done, html).
    """
    end = done + finished_blocks_end(text[done:])
    if end == done:
        return done, html
    extended = html + markdown_render(text[done:end])
    if len(extended) > STREAMING_BLOCKS_MAX_CHARS:
        return done, html
    return end, extended
