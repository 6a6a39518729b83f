"""Model output rendered as Markdown: formatting survives, anything that could run does not."""

import re

import pytest

from conversations.core.rendering import finished_blocks_end, markdown_render, streaming_blocks_extend

ATTACKS = [
    "<script>alert(1)</script>",
    "Hello <script src=https://evil.example/x.js></script> there",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](  javascript:alert(1) )",
    '<a href="javascript:alert(1)">x</a>',
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![pic](javascript:alert(1))",
    '<div hx-get="/admin/" hx-trigger="load" onclick="alert(1)">hi</div>',
    '<button hx-post="/c/1/delete" hx-trigger="load">go</button>',
    '<iframe src="https://evil.example"></iframe>',
    "<svg onload=alert(1)><circle/></svg>",
    "<style>body{display:none}</style>",
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "**bold <span onmouseover=alert(1)>x</span>**",
    "```\n</code></pre><script>alert(1)</script>\n```",
    "```python\n</code></pre><script>alert(1)</script>\n```",
    "`<script>alert(1)</script>`",
    "<!-- --><script>alert(1)</script>",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_nothing_in_model_output_can_run(text):
    html = str(markdown_render(text)).lower()

    assert "<script" not in html
    assert "<iframe" not in html and "<svg" not in html and "<style" not in html and "<img" not in html
    assert not re.search(r"<[^>]*\son\w+\s*=", html), html  # no event-handler attributes on a tag
    assert not re.search(r"<[^>]*\shx-", html), html  # no htmx attributes on a tag
    assert "javascript:" not in re.sub(r">[^<]*<", "><", html)  # never inside a tag
    assert 'href="data:' not in html


def test_raw_html_is_shown_as_text():
    html = markdown_render("Use <b>bold</b> and <script>alert(1)</script>")

    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_javascript_link_keeps_its_text_but_not_its_target():
    html = markdown_render("[click](javascript:alert(1))")

    assert "click" in html
    assert "javascript" not in html.split("click")[0]


def test_ordinary_markdown_renders():
    html = markdown_render(
        "# Title\n\n**bold**, *italic*, ~~gone~~ and `code`\n\n- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n---\n"
    )

    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html
    assert "<s>gone</s>" in html or "<del>gone</del>" in html
    assert "<code>code</code>" in html
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in html
    assert "<ol>\n<li>first</li>\n<li>second</li>\n</ol>" in html
    assert "<blockquote>" in html and "<hr>" in html


def test_tables_render_with_alignment():
    html = markdown_render("| Name | Price |\n|:-----|------:|\n| tea  | 3     |\n")

    assert "<table>" in html and "<thead>" in html and "<tbody>" in html
    assert '<th style="text-align:left">Name</th>' in html
    assert '<td style="text-align:right">3</td>' in html


def test_links_open_safely():
    html = markdown_render('See [the docs](https://example.com/docs?a=1&b=2 "Docs") or <https://example.org>.')

    link = re.search(r'<a [^>]*href="https://example.com/docs\?a=1&amp;b=2"[^>]*>the docs</a>', html)
    assert link, html
    assert 'rel="noopener noreferrer nofollow"' in link.group(0)
    assert 'title="Docs"' in link.group(0)
    assert 'href="https://example.org"' in html


def test_python_block_is_highlighted():
    html = markdown_render('```python\ndef greet(name):\n    return f"hi {name}"\n```')

    assert "<pre><code" in html
    assert 'class="language-python"' in html
    assert '<span class="k">def</span>' in html
    assert '<span class="nf">greet</span>' in html
    assert re.search(r'<span class="s\w*">', html)


def test_unknown_language_block_is_escaped_not_highlighted():
    html = markdown_render("```nosuchlang\n<b>if</b> x < 1 && y\n```")

    assert "<span" not in html
    assert "&lt;b&gt;if&lt;/b&gt; x &lt; 1 &amp;&amp; y" in html


def test_highlighted_block_escapes_html_in_code():
    html = markdown_render("```html\n<script>alert(1)</script>\n```")

    assert "<script" not in html
    assert "alert" in html and "&lt;" in html and "<span" in html


def test_empty_text():
    assert markdown_render("") == ""


STREAMED_REPLY = """## Greeting people

Here is how, in three steps:

- read the *name*
- build the text

- print it

```python
def greet(name):

    # a blank line above, inside the code
    return f"Hello, {name}!"
```

1. first
2. second

> A quote
> that goes on

| a | b |
|---|---|
| 1 | 2 |

    indented code

That is all.
"""


def test_blocks_shown_as_finished_while_streaming_never_change_as_the_reply_goes_on():
    final = str(markdown_render(STREAMED_REPLY))
    finished_at = set()
    for cut in range(len(STREAMED_REPLY) + 1):
        end = finished_blocks_end(STREAMED_REPLY[:cut])
        finished_at.add(end)
        assert final.startswith(str(markdown_render(STREAMED_REPLY[:end]))), (cut, STREAMED_REPLY[:end])
    # The heading, the paragraph, the list, the code, the numbered list, the quote, the table
    # and the indented code are each finished before the reply ends.
    assert len(finished_at) >= 8


def test_an_open_code_block_stays_unfinished_across_its_blank_lines():
    text = "Intro\n\n```\nline one\n\nline two\n\nmore"
    assert text[: finished_blocks_end(text)] == "Intro\n\n"


def test_blocks_rendered_one_at_a_time_as_they_finish_read_as_the_reply_rendered_whole():
    done, html = 0, ""
    for cut in range(0, len(STREAMED_REPLY) + 1, 7):
        done, html = streaming_blocks_extend(STREAMED_REPLY[:cut], done=done, html=html)
        assert html == str(markdown_render(STREAMED_REPLY[:done])), STREAMED_REPLY[:done]
    assert done > len(STREAMED_REPLY) * 0.9
