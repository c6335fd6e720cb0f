"""Locate files shipped with tablechat: prompts and the demo data.

In a checkout they live at the top level (``prompts/``, ``data/``); in an installed wheel they
are packaged under ``tablechat/_resources/``. Callers never need to know which.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_PACKAGED = _PACKAGE_DIR / "_resources"
_CHECKOUT = _PACKAGE_DIR.parents[1]


def checkout_root() -> Path | None:
    """The source checkout this package runs from, or None when installed from a wheel."""
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "prompts").is_dir():
        return _CHECKOUT
    return None


def resource_path(relative: str) -> Path:
    """Path of a shipped file, e.g. ``resource_path("prompts/sql.md")``."""
    packaged = _PACKAGED / relative
    if packaged.exists():
        return packaged
    root = checkout_root()
    if root is not None and (root / relative).exists():
        return root / relative
    raise FileNotFoundError(f"tablechat resource not found: {relative}")
