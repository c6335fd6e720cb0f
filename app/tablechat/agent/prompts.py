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


def render(name: str, **values: object) -> str:
    """Fill ``prompts/<name>.md``; every placeholder in the template must be given."""
    template = load_template(name)
    missing = template_names(template) - values.keys()
    if missing:
        raise KeyError(f"prompt {name!r} needs {sorted(missing)}")
    return _PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template
    )
