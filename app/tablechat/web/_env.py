"""Keep Gradio on 127.0.0.1: no analytics, telemetry or version checks. Imported before gradio."""

from __future__ import annotations

import os

for _name, _value in {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_SSR_MODE": "False",
    "GRADIO_MCP_SERVER": "False",
    # the queue's per-event analytics summary (for the monitoring page, off here) builds a
    # DataFrame with an option pandas 3 deprecates: a warning on every event. Never build it.
    "GRADIO_ANALYTICS_CACHE_FREQUENCY": str(10**12),
}.items():
    os.environ.setdefault(_name, _value)
