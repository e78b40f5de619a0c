"""Figures of a run, written as PNG next to its outputs.

plot_curves(out_dir / "metrics.jsonl", out_dir / "curves.png")   # loss, and eval metrics, by step
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402

from bertkit.atomic import write_bytes  # noqa: E402


def plot_curves(metrics_file: Path, out: Path, title: str = "") -> Path | None:
    """Training loss and every `eval/…` accuracy in metrics.jsonl against the step; None if nothing logged."""
    if not metrics_file.is_file():
        return None
    records = [json.loads(line) for line in metrics_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = {k: [(r["step"], r[k]) for r in records if k in r] for r in records for k in r if k.startswith("eval/")}
    accuracies = {k: v for k, v in evals.items() if "accuracy" in k or "f1" in k}
    if not train:
        return None
    fig, axes = plt.subplots(1, 2 if accuracies else 1, figsize=(11 if accuracies else 6, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(*zip(*train, strict=True), label="train loss (sum of objectives)")
    if "eval/mlm_loss" in evals:
        ax.plot(*zip(*evals["eval/mlm_loss"], strict=True), "o-", label="eval MLM loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if accuracies:
        ax = axes[0][1]
        for name, points in accuracies.items():
            ax.plot(*zip(*points, strict=True), "o-", label=name.removeprefix("eval/"))
        ax.set_xlabel("step")
        ax.set_ylabel("held-out score")
        ax.set_ylim(0, 1)
        ax.legend()
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(out, buffer.getvalue())
    return out
