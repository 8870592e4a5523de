"""User text on the page: rater names, prompts, batch names and messages that embed them are data.

Streamlit reads markdown (plus its own directives such as `:red[...]` and `:material/icon:`)
in st.markdown, st.caption, st.info / st.warning / st.error, widget labels and image captions,
so a name like `[x](http://e.com)` would render as a link. `plain` escapes a string for those
places; st.text, selectbox options and dataframe cells show text as it is and need no escaping.

What escaping cannot stop: Streamlit rewrites a few character runs in the rendered text itself,
after markdown is read (`:streamlit:` becomes its logo; a spaced `->`, `<-`, `--`, `>=`, `<=` or
`~=` becomes an arrow, dash or sign). Those change how text looks, not what it links to.
"""

from __future__ import annotations

import re

# Every ASCII punctuation character: CommonMark lets each be backslash-escaped, and escaping all
# of them (not a hand-picked list) also covers GFM autolinks (`www.`, `http:`, `a@b.c`),
# entities (`&amp;`), HTML, math (`$`) and Streamlit's directives (`:name[` and `:name:`).
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def plain(text: object) -> str:
    """`text` (as str) escaped so that markdown shows it literally, on one line.

    Line breaks become spaces: a name or prompt sits inside one line of markdown (a heading, a
    bold run), where a break would end it and could start a list or a code block. Leading and
    trailing spaces go (markdown drops them anyway, and four of them would start a code block).
    """
    return _PUNCTUATION.sub(r"\\\1", _LINE_BREAK.sub(" ", str(text)).strip())
