"""Held-out metrics of the platform's classifiers, in numpy (no scikit-learn dependency).

ROC AUC is the Mann-Whitney statistic: the probability that a random positive scores
above a random negative, ties counting one half, computed from average ranks.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Rank-based ROC AUC; tied scores get their average rank."""
    y = np.asarray(is_positive, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both positive and negative examples")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # 1-based average rank of each score
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def binary_metrics(truth: list[str], p_positive: list[float], positive: str,
                   threshold: float = 0.5) -> dict[str, Any]:
    """Precision, recall and F1 of `positive` at `threshold`, and ROC AUC."""
    y = np.array([t == positive for t in truth])
    s = np.asarray(p_positive, dtype=np.float64)
    pred = s >= threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    precision, recall, f1 = _prf(tp, fp, fn)
    return {"type": "binary", "positive": positive, "threshold": threshold, "n": len(truth),
            "n_positive": int(y.sum()), "precision": round(precision, 4),
            "recall": round(recall, 4), "f1": round(f1, 4),
            "accuracy": round(float((pred == y).mean()), 4), "roc_auc": round(roc_auc(y, s), 4)}


def multiclass_metrics(truth: list[str], predicted: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over the labels present in `truth` (a label trained but not held
    out is not evaluated) and the confusion matrix {true: {predicted: n}} over `labels`."""
    confusion = {t: dict.fromkeys(labels, 0) for t in labels}
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    f1s = {}
    for lab in labels:
        tp = confusion[lab][lab]
        fp = sum(confusion[t][lab] for t in labels) - tp
        fn = sum(confusion[lab].values()) - tp
        f1s[lab] = round(_prf(tp, fp, fn)[2], 4)
    correct = sum(confusion[lab][lab] for lab in labels)
    evaluated = [lab for lab in labels if lab in set(truth)]
    return {"type": "multiclass", "n": len(truth),
            "accuracy": round(correct / len(truth), 4) if truth else 0.0,
            "macro_f1": round(sum(f1s[lab] for lab in evaluated) / max(1, len(evaluated)), 4),
            "f1": {lab: f1s[lab] for lab in evaluated}, "evaluated_labels": evaluated,
            "confusion": confusion}


def confusion_table(confusion: dict[str, dict[str, int]]) -> str:
    """The confusion matrix as a text table: rows true labels, columns predictions."""
    labels = list(confusion)
    width = max(8, *(len(lab) + 1 for lab in labels))
    head = "true \\ pred".ljust(width + 4) + "".join(lab.rjust(width) for lab in labels)
    rows = [lab.ljust(width + 4) + "".join(str(confusion[lab][p]).rjust(width) for p in labels)
            for lab in labels]
    return "\n".join([head, *rows])


def format_metrics(metrics: dict[str, Any] | None) -> str:
    """One summary line (and the confusion table) for the CLI."""
    if metrics is None:
        return "no held-out split (heldout_fraction: 0): no metrics"
    if metrics["type"] == "binary":
        return (f"held-out ({metrics['n']} docs, {metrics['n_positive']} {metrics['positive']}): "
                f"precision {metrics['precision']:.4f} recall {metrics['recall']:.4f} "
                f"F1 {metrics['f1']:.4f} ROC AUC {metrics['roc_auc']:.4f}")
    return (f"held-out ({metrics['n']} docs): accuracy {metrics['accuracy']:.4f} "
            f"macro-F1 {metrics['macro_f1']:.4f}\n{confusion_table(metrics['confusion'])}")
