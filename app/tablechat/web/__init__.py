"""Web front ends: the Gradio UI and the FastAPI server. Clients of the core, nothing more."""

from . import _env  # noqa: F401  (first: environment for gradio, before anything imports it)
