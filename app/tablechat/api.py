"""``connect()``: build a TableChat from a database and an LLM, with settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from .config import Settings, load_settings
from .core import TableChat
from .demo import default_demo_path, demo_semantic_layer_path, ensure_demo
from .errors import ConfigurationError
from .semantic import SemanticLayer
from .sql.database import Database, ResultLimits, open_database


def connect(
    database: str | Path | Database | None = None,
    *,
    llm: str | BaseChatModel | None = None,
    settings: Settings | None = None,
    **overrides: Any,
) -> TableChat:
    """Open ``database`` (a DuckDB path or SQLAlchemy URL; default: the demo database).

    ``llm`` is an OpenAI-compatible base URL (a vLLM server) or a LangChain chat model. Other
    keyword arguments override settings (``query_timeout=5``, ``max_rows=100``, ...); the rest
    come from ``TABLECHAT_*`` environment variables.
    """
    if isinstance(llm, str):
        overrides["llm_url"] = llm
    elif llm is not None and not isinstance(llm, BaseChatModel):
        raise ConfigurationError("llm must be a base URL or a LangChain chat model")
    if isinstance(database, str | Path):
        overrides["database"] = str(database)
    cfg = settings.model_copy(update=overrides) if settings else load_settings(**overrides)
    if isinstance(database, Database):
        db = database
    else:
        target = cfg.database
        if target is None:
            target = str(ensure_demo())
        db = open_database(
            target,
            timeout=cfg.query_timeout,
            memory_limit=cfg.memory_limit,
            threads=cfg.threads,
            max_temp_directory_size=cfg.max_temp_directory_size,
            sample_values=cfg.sample_values,
            limits=ResultLimits.from_settings(cfg),
            schemas=cfg.schemas,
        )
    semantic = _semantic_layer(cfg, db)
    offline = _offline_engine(db, semantic)
    memory = None
    if cfg.memory:  # verified examples from the store (issue 14): both engines use them
        from .memory import store_memory

        memory = store_memory(cfg, db.name)
        if offline is not None:
            offline.memory = memory
    return TableChat(
        db,
        settings=cfg,
        llm=llm if isinstance(llm, BaseChatModel) else None,
        semantic=semantic,
        offline=offline,
        memory=memory,
    )


def _semantic_layer(cfg: Settings, db: Database) -> SemanticLayer | None:
    if cfg.semantic_layer:
        return SemanticLayer.load(cfg.semantic_layer)
    path = getattr(db, "path", None)
    if path is not None and Path(path).resolve() == default_demo_path().resolve():
        return SemanticLayer.load(demo_semantic_layer_path())
    if path is not None:
        beside = Path(path).with_suffix(".semantic.yaml")
        if beside.is_file():
            return SemanticLayer.load(beside)
    return None


def _offline_engine(db: Database, semantic: SemanticLayer | None) -> Any:
    try:
        from .offline import OfflineEngine
    except ImportError:
        return None
    return OfflineEngine(db, semantic)
