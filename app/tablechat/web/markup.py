"""Text from the model, the data or the client, made inert for Gradio's Markdown.

Gradio's Chatbot and Markdown sanitize HTML (no ``<script>``, no ``onerror``), but keep
``<img src=...>`` and turn ``![x](http://...)`` into an image the browser loads at once: an
answer or a cell value could make every reader's browser call any address (issue 11). So
whatever tablechat did not write itself is shown as text: no HTML, no images, no links.
"""

from __future__ import annotations

import html
import re

# backslash first, so an escape in the text cannot undo one of ours
_MARKUP = str.maketrans({"\\": "\\\\", "[": "\\[", "]": "\\]", "<": "&lt;", ">": "&gt;",
                         "&": "&amp;"})
_FENCE = re.compile(r"`{3,}")


# GitHub-flavoured Markdown turns bare URLs into links: an escaped ``:`` or ``.`` (shown as
# itself) keeps them text
_BARE_LINK = re.compile(r"(?i)(?<=[a-z0-9])(:)(?=//)|(?<=\bwww)(\.)")


def plain(text: object) -> str:
    """``text`` for a Markdown component, shown as written: brackets, angle brackets,
    ampersands and backslashes escaped, and bare URLs kept from becoming links, so it makes
    no image, link, autolink or HTML. Emphasis and lists still render; they load nothing."""
    return _BARE_LINK.sub(r"\\\1\2", str(text).translate(_MARKUP))


def code_block(code: str, language: str = "") -> str:
    """``code`` in a fenced block no line of it can close (a fence longer than any run of
    backticks inside)."""
    longest = max((len(m.group(0)) for m in _FENCE.finditer(code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code}\n{fence}"


_HTML_LINK = re.compile(r"(?i)(?<=[a-z0-9]):(?=//)|(?<=\bwww)\.")


def html_text(text: object) -> str:
    """``text`` for a raw HTML block tablechat writes (a table cell, a chart label, a summary):
    HTML-escaped, quotes too, with bare URLs broken as ``plain`` breaks them, so it is shown
    as written and never becomes markup or a link."""
    escaped = html.escape(str(text), quote=True)
    return _HTML_LINK.sub(lambda m: f"&#{ord(m.group(0))};", escaped)
