"""The offline engine: answers common analytical questions with no LLM and no download.

It reads the schema, the semantic layer and the data's own values, builds the SQL as sqlglot
expressions, runs it through the same guard and sandbox as the LLM path, and declines (saying
what it understood) when it is not confident.
"""

from .engine import OfflineEngine, Plan

__all__ = ["OfflineEngine", "Plan"]
