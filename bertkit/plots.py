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
from bertkit.textfile import split_lines  # noqa: E402


def read_metrics(metrics_file: Path) -> list[dict]:
    """The records of a metrics.jsonl; none if it does not exist."""
    if not metrics_file.is_file():
        return []
    return [json.loads(line) for line in split_lines(metrics_file.read_text(encoding="utf-8")) if line.strip()]


def plot_curves(metrics_file: Path, out: Path, title: str = "") -> Path | None:
    """Training loss and every `eval/…` accuracy in metrics.jsonl against the step; None if nothing logged."""
    records = read_metrics(metrics_file)
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
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(out, buffer.getvalue())
    return out


CJK_FONT_HINTS = ("CJK", "WenQuanYi", "Hei", "Song", "Droid Sans Fallback", "PingFang", "Hiragino")


def _tick_labels(labels: list[str]) -> tuple[list[str], str]:
    """Labels as matplotlib can draw them: Chinese needs a CJK font; without one, numbers (and a note)."""
    if all(ord(c) < 0x2E80 for label in labels for c in label):
        return labels, ""
    from matplotlib import font_manager

    for font in font_manager.fontManager.ttflist:
        if any(hint in font.name for hint in CJK_FONT_HINTS):
            plt.rcParams["font.sans-serif"] = [font.name, *plt.rcParams["font.sans-serif"]]
            return labels, ""
    return [str(i) for i in range(len(labels))], " (labels by index: no CJK font installed)"


def plot_confusion(predicted: list[str], gold: list[str], labels: list[str], out: Path) -> Path:
    """Counts of (gold, predicted) label pairs; the diagonal is right."""
    index = {name: i for i, name in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        counts[index[g]][index[p]] += 1
    size = 2 + 0.45 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks, note = _tick_labels(labels)
    ax.set_xticks(range(len(labels)), ticks, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), ticks)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    peak = max(max(row) for row in counts) or 1
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            ax.text(j, i, n, ha="center", va="center", color="white" if n > peak / 2 else "black", fontsize=8)
    ax.set_title(f"confusion matrix, {sum(map(sum, counts))} examples{note}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def plot_layers(scores: list[float], baseline: float, out: Path, title: str = "") -> Path:
    """Held-out score by layer (0 = embeddings), with the majority-class baseline."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(len(scores)), scores, "o-", label="linear probe")
    ax.axhline(baseline, color="grey", linestyle="--", label="majority class")
    ax.set_xticks(range(len(scores)))
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def plot_probe_history(metrics_file: Path, out: Path) -> Path | None:
    """The probe's held-out score of every layer against the pretraining step (eval/probe/layer_N in metrics.jsonl)."""
    records = [r for r in read_metrics(metrics_file) if "eval/probe/layer_0" in r]
    if not records:
        return None
    layers = sorted(
        (k for k in records[0] if k.startswith("eval/probe/layer_")), key=lambda k: int(k.rsplit("_", 1)[1])
    )
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = plt.cm.viridis([i / max(1, len(layers) - 1) for i in range(len(layers))])
    for key, color in zip(layers, colors, strict=True):
        n = int(key.rsplit("_", 1)[1])
        label = "embeddings" if n == 0 else f"layer {n}"
        ax.plot([r["step"] for r in records], [r[key] for r in records], "o-", color=color, label=label)
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("held-out probe accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("linear probe by layer during pretraining", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)
