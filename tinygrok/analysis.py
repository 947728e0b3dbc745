"""Reading a run's metric rows (PAPER.md §4): grok steps and the memorization step."""
from __future__ import annotations

from typing import Iterable, Optional


def first_step(rows: Iterable[dict], key: str, threshold: float) -> Optional[int]:
    """The first evaluated step whose `key` is at least `threshold` (grok_90: key test_acc, threshold 0.9)."""
    return next((r["step"] for r in rows if r.get(key) is not None and r[key] >= threshold), None)


def detection_step(rows: Iterable[dict], threshold: float = 0.98, patience: int = 3) -> Optional[int]:
    """The step of the `patience`-th consecutive evaluation with test accuracy >= threshold (the early stop)."""
    streak = 0
    for r in rows:
        streak = streak + 1 if r["test_acc"] >= threshold else 0
        if streak == patience:
            return r["step"]
    return None


def grok_summary(rows: list[dict], threshold: float = 0.98, patience: int = 3) -> dict:
    """The grok and memorization steps of §4 (None where never reached).

    grok_step_90: first evaluation with test accuracy >= 0.90 (the paper's Table 1 "grok step");
    grok_step: the detection step, test accuracy >= threshold on `patience` consecutive evaluations;
    memorization_step: first evaluation with train accuracy >= 0.95.
    """
    return {
        "grok_step_90": first_step(rows, "test_acc", 0.90),
        "grok_step": detection_step(rows, threshold, patience),
        "memorization_step": first_step(rows, "train_acc", 0.95),
    }
