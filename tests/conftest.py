"""Shared fixtures: a tokenizer trained on the shipped sample, and one tiny end-to-end run of the CLI.

Everything is offline and seeded; the tiny run (tokenize → pretrain → finetune) takes a few seconds and is
shared by the tests that inspect its outputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertkit.cli import app
from bertkit.config import TokenizerConfig
from bertkit.tokenizer.train import train_wordpiece

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
RECIPE = ROOT / "recipes" / "demo-zh.yaml"


def run_cli(*args: str):
    """Invoke the CLI in-process; returns click's Result (exit_code, output, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def tiny_overrides(out: Path) -> list[str]:
    """The demo recipe shrunk to seconds: a small vocabulary, short examples, a few steps."""
    return [
        f"output_dir={out}",
        "tokenizer.vocab_size=1500",
        "data.max_seq_length=64",
        "data.dupe_factor=1",
        "model.max_position_embeddings=64",
        "model.hidden_size=64",
        "model.num_hidden_layers=1",
        "train.max_steps=6",
        "train.batch_size=8",
        "train.log_every=2",
        "train.eval_every=3",
        "train.save_every=3",
        "finetune.train.epochs=1",
        "finetune.train.batch_size=16",
        "finetune.task.max_seq_length=32",
    ]


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    lines = []
    for path in [DATA / "zh" / "corpus-a.txt", DATA / "en" / "corpus.txt"]:
        lines += [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    return lines


@pytest.fixture(scope="session")
def tokenizer(sentences):
    return train_wordpiece(sentences, TokenizerConfig(vocab_size=3000))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """Output dir and overrides of one tiny tokenize → pretrain → finetune run of the demo recipe."""
    out = tmp_path_factory.mktemp("run")
    overrides = tiny_overrides(out)
    for command in ("tokenize", "pretrain", "finetune"):
        result = run_cli(command, RECIPE, *overrides)
        assert result.exit_code == 0, result.output
    return out, overrides
