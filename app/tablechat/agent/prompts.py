"""Prompt templates: Markdown files in ``prompts/``, rendered with plain ``{name}`` placeholders.

Only the names passed are replaced, so braces elsewhere in a template (or in SQL) are left alone.
"""

from __future__ import annotations

import functools
import re

from .._resources import resource_path

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@functools.cache
def load_template(name: str) -> str:
    return resource_path(f"prompts/{name}.md").read_text(encoding="utf-8")


def template_names(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


@functools.cache
def _pieces(name: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The template split once: literal text at even positions, placeholder names at odd."""
    pieces = tuple(_PLACEHOLDER.split(load_template(name)))
    return pieces, frozenset(pieces[1::2])


def render(name: str, **values: object) -> str:
    """Fill ``prompts/<name>.md``; every placeholder in the template must be given."""
    pieces, needed = _pieces(name)
    missing = needed - values.keys()
    if missing:
        raise KeyError(f"prompt {name!r} needs {sorted(missing)}")
    out = list(pieces)
    for i in range(1, len(out), 2):
        out[i] = str(values[out[i]])
    return "".join(out)
