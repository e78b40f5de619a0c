"""Evaluation metrics as pure functions, and the printed table.

    classification_metrics(gold=[0, 1, 1], pred=[0, 1, 0], labels=["neg", "pos"])
    # {"accuracy": 0.667, "macro_f1": 0.667, "micro_f1": 0.667, "per_class": {"neg": {...}, "pos": {...}}}

Definitions follow scikit-learn (F1 of a class with no predictions and no gold is 0).
"""

from __future__ import annotations

import math
import unicodedata

from sklearn.metrics import accuracy_score, precision_recall_fscore_support


def classification_metrics(gold: list[int], pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro/micro F1 and per-class precision, recall, F1 and support."""
    ids = list(range(len(labels)))
    p, r, f, support = precision_recall_fscore_support(gold, pred, labels=ids, zero_division=0)
    _, _, macro_f1, _ = precision_recall_fscore_support(gold, pred, labels=ids, average="macro", zero_division=0)
    _, _, micro_f1, _ = precision_recall_fscore_support(gold, pred, labels=ids, average="micro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(macro_f1),
        "micro_f1": float(micro_f1),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, name in enumerate(labels)
        },
    }


def pretraining_metrics(
    mlm_loss_sum: float, mlm_correct: int, mlm_count: int, pair_correct: int, pair_count: int, pair: str = "nsp"
) -> dict:
    """MLM accuracy and perplexity (exp of the mean cross-entropy over masked tokens), and the accuracy of the
    sentence-pair task `pair` (nsp or sop) when it was scored."""
    out = {
        "mlm_accuracy": mlm_correct / max(1, mlm_count),
        "mlm_perplexity": math.exp(min(mlm_loss_sum / max(1, mlm_count), 700.0)),
        "mlm_loss": mlm_loss_sum / max(1, mlm_count),
        "masked_tokens": mlm_count,
    }
    if pair_count:
        out |= {f"{pair}_accuracy": pair_correct / pair_count, "examples": pair_count}
    return out


def _width(text: str) -> int:
    """Terminal columns of `text` (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _ljust(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def format_table(report: dict) -> str:
    """Scalar metrics, then a per-class P/R/F1 block when present, as aligned text."""
    lines = []
    scalars = {k: v for k, v in report.items() if isinstance(v, int | float)}
    width = max(map(len, scalars), default=0)
    for k, v in scalars.items():
        lines.append(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    per_class = report.get("per_class")
    if per_class:
        name_w = max(8, *map(_width, per_class))
        lines.append("")
        lines.append(f"{'label':<{name_w}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}")
        for name, m in per_class.items():
            lines.append(
                f"{_ljust(name, name_w)}  {m['precision']:>9.4f}  {m['recall']:>9.4f}  {m['f1']:>9.4f}"
                f"  {m['support']:>7}"
            )
    return "\n".join(lines)
