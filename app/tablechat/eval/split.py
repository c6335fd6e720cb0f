"""Cross-validation by database: tune on some databases, measure on the others.

Rules tuned on every Spider dev database reached precision 0.90 there and 0.62 on unseen
schemas (issue 12), so a figure measured where it was tuned predicts nothing. ``tablechat eval
--split K`` deals the databases into K folds. For each fold, the offline engine's confidence
threshold is chosen on the *other* folds only (the highest accuracy whose precision reaches the
target; failing that, the highest precision), then applied to the held-out fold. The reported
figure pools the held-out folds: every question is scored by a threshold that never saw its
database.

The engine runs once, with its threshold at 0 (every reading with SQL answers and reports its
confidence); applying a threshold afterwards is the same as running with it, because the
threshold only decides whether a plan is answered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .harness import QuestionResult

GRID = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 ... 1.0
DEFAULT_TARGET = 0.97


@dataclass(slots=True)
class Score:
    """Totals over some questions for one threshold."""

    total: int = 0
    answered: int = 0
    correct: int = 0  # strict column order
    correct_any_order: int = 0  # columns in any order (Spider's test-suite rule)

    def add(self, r: QuestionResult, threshold: float) -> None:
        self.total += 1
        if not answered_at(r, threshold):
            return
        self.answered += 1
        self.correct += int(r.correct)
        self.correct_any_order += int(r.correct_any_order)

    def merge(self, other: Score) -> None:
        self.total += other.total
        self.answered += other.answered
        self.correct += other.correct
        self.correct_any_order += other.correct_any_order

    def rates(self) -> dict[str, float]:
        """Accuracy and precision, strict and in any column order."""
        def ratio(a: int, b: int) -> float:
            return round(a / b, 6) if b else 0.0
        return {"accuracy": ratio(self.correct, self.total),
                "precision": ratio(self.correct, self.answered),
                "accuracy_any_order": ratio(self.correct_any_order, self.total),
                "precision_any_order": ratio(self.correct_any_order, self.answered)}

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "answered": self.answered, "correct": self.correct,
                "correct_any_order": self.correct_any_order, **self.rates()}


@dataclass(slots=True)
class Fold:
    databases: list[str]
    threshold: float
    train: Score
    held_out: Score


@dataclass(slots=True)
class SplitReport:
    k: int
    seed: int
    target: float
    folds: list[Fold] = field(default_factory=list)
    held_out: Score = field(default_factory=Score)

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.k, "seed": self.seed, "target_precision": self.target,
                "held_out": self.held_out.to_dict(),
                "folds": [{"databases": f.databases, "threshold": f.threshold,
                           "train": f.train.to_dict(), "held_out": f.held_out.to_dict()}
                          for f in self.folds]}


def answered_at(r: QuestionResult, threshold: float) -> bool:
    """The engine would have answered ``r`` with its threshold at ``threshold``."""
    return r.answered and r.confidence is not None and r.confidence >= threshold


def folds_of(databases: list[str], k: int, seed: int) -> list[list[str]]:
    """The databases dealt into ``k`` folds, in an order fixed by ``seed``."""
    names = sorted(databases)
    random.Random(seed).shuffle(names)
    return [sorted(names[i::k]) for i in range(k)]


def score(results: list[QuestionResult], threshold: float) -> Score:
    out = Score()
    for r in results:
        out.add(r, threshold)
    return out


def choose_threshold(results: list[QuestionResult], target: float) -> tuple[float, Score]:
    """The threshold with the best accuracy whose precision (any column order) reaches
    ``target`` on ``results``; when none does, the one with the best precision."""
    scored = [(t, score(results, t)) for t in GRID]
    ok = [(t, s) for t, s in scored if s.answered and s.rates()["precision_any_order"] >= target]
    if ok:
        return max(ok, key=lambda ts: (ts[1].correct_any_order, -ts[0]))
    return max(scored, key=lambda ts: (ts[1].rates()["precision_any_order"], -ts[0]))


def cross_validate(results: list[QuestionResult], k: int, *, seed: int = 0,
                   target: float = DEFAULT_TARGET) -> SplitReport:
    """Tune the threshold on K-1 folds of databases and score the held-out fold, K times."""
    scored = [r for r in results if r.scored]
    databases = sorted({r.db for r in scored})
    if k < 2 or k > len(databases):
        raise ValueError(f"--split needs between 2 and {len(databases)} folds, got {k}")
    report = SplitReport(k, seed, target)
    for fold in folds_of(databases, k, seed):
        inside = set(fold)
        train = [r for r in scored if r.db not in inside]
        test = [r for r in scored if r.db in inside]
        threshold, train_score = choose_threshold(train, target)
        held = score(test, threshold)
        report.folds.append(Fold(fold, threshold, train_score, held))
        report.held_out.merge(held)
    return report


def format_split(report: SplitReport) -> str:
    """The human summary: each fold's threshold and scores, then the pooled held-out figure."""
    lines = [f"cross-validation by database: {report.k} folds (seed {report.seed}); the "
             f"threshold is tuned on the other folds for precision >= {report.target:.2f} "
             "(any column order)", "",
             f"{'fold':<6} {'dbs':>4} {'thr':>5}  {'train prec':>10}  {'held-out':>8} "
             f"{'answered':>8} {'strict acc':>10} {'strict prec':>11} {'any-order acc':>13} "
             f"{'any-order prec':>14}"]
    for i, f in enumerate(report.folds, 1):
        h, t = f.held_out.rates(), f.train.rates()
        lines.append(f"{i:<6} {len(f.databases):>4} {f.threshold:>5.2f}  "
                     f"{t['precision_any_order']:>10.1%}  {f.held_out.total:>8} "
                     f"{f.held_out.answered:>8} {h['accuracy']:>10.1%} {h['precision']:>11.1%} "
                     f"{h['accuracy_any_order']:>13.1%} {h['precision_any_order']:>14.1%}")
    h = report.held_out.rates()
    lines += ["", f"held-out (all folds pooled): {report.held_out.total} questions, "
              f"{report.held_out.answered} answered",
              f"  strict column order:            accuracy {h['accuracy']:.1%}, "
              f"precision {h['precision']:.1%}",
              f"  any column order (test-suite):  accuracy {h['accuracy_any_order']:.1%}, "
              f"precision {h['precision_any_order']:.1%}"]
    return "\n".join(lines)
