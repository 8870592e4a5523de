"""`plain`: user text escaped so that markdown (CommonMark, GFM, Streamlit directives) shows it
literally. Checked by rendering with markdown-it (CommonMark, raw HTML on: the worst case)."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from labeling_app.app.text import plain

MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def rendered(source: str) -> tuple[list[str], str]:
    """(the HTML tags markdown-it makes of `source`, the text they hold)."""
    out = MD.render(source)
    return re.findall(r"<(\w+)", out), html.unescape(re.sub(r"<[^>]+>", "", out)).strip()


@pytest.mark.parametrize(
    "text",
    [
        "[x](http://e.com) **b** \\ _i_",
        "# heading",
        "- item",
        "1. first",
        "> quote",
        "`code` ~~gone~~ <b>bold</b> &amp; &#42;",
        "<http://e.com> ![img](x.png) [ref]: http://e.com",
        "a | b\n--- | ---\nc | d",
        "$x^2$ :red[colour] :material/home: :smile:",
        "back\\slash at the end\\",
        "    four spaces",
    ],
)
def test_plain_text_is_inert(text):
    tags, shown = rendered(plain(text))
    assert tags == ["p"]  # one paragraph: no link, emphasis, heading, list, code, HTML, table
    assert shown == text.replace("\n", " ").strip()


def test_plain_escapes_what_streamlit_reads_itself():
    escaped = plain("www.e.com http://e.com a@b.com :red[x] :material/home: $x$")
    # GFM autolinks, directives and math need an unescaped `www.`, `:`, `@` or `$` to start
    assert not re.search(r"(?<!\\)[.:@$\[]", escaped)
    assert plain("a large red circle") == "a large red circle"  # plain words stay as they are
    assert plain(7) == "7"
