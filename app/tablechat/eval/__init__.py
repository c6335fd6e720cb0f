"""Execution-accuracy harness: ``tablechat eval`` and its Python API.

>>> from tablechat.eval import load_dataset, run_eval, EvalOptions, summarize
>>> run = run_eval(load_dataset("data/questions/demo.jsonl"), EvalOptions(engine="gold"))
>>> summarize(run).overall.accuracy
1.0
"""

from .compare import Comparison, compare_results, derive_kind, has_top_level_order_by
from .datasets import Dataset, DatasetError, Question, load_dataset
from .harness import EvalError, EvalOptions, EvalRun, QuestionResult, run_eval
from .report import Summary, format_summary, summarize, summary_json

__all__ = [
    "Comparison",
    "Dataset",
    "DatasetError",
    "EvalError",
    "EvalOptions",
    "EvalRun",
    "Question",
    "QuestionResult",
    "Summary",
    "compare_results",
    "derive_kind",
    "format_summary",
    "has_top_level_order_by",
    "load_dataset",
    "run_eval",
    "summarize",
    "summary_json",
]
