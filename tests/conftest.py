"""Shared fixtures: a tokenizer trained on the shipped sample, and one tiny end-to-end run of the CLI.

Everything is offline and seeded; the tiny run (tokenize → pretrain → finetune) takes a few seconds and is
shared by the tests that inspect its outputs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# The tests never reach the network: a Hub id resolves from a cache that a test lays out, or fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
import yaml
from typer.testing import CliRunner

from bertkit.cli import app
from bertkit.config.loading import parse_override
from bertkit.config.sections import TokenizerConfig
from bertkit.tokenizer.train import train_wordpiece

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
RECIPE = ROOT / "recipes" / "demo-zh.yaml"


class RecipeEdit(str):
    """An edit of the recipe file (`key=value`), shared by the commands of a run: run_cli writes it into a copy of
    the recipe, as a user would edit the file, and each command takes from the file the keys it reads (a
    command-line override of a key the command does not read is an error)."""


def recipe_edits(overrides: list[str]) -> list[str]:
    return [RecipeEdit(o) for o in overrides]


EDITED = tempfile.TemporaryDirectory(prefix="bertkit-recipes-")  # removed when the test session ends


def edited_recipe(recipe: Path, edits: list[str]) -> Path:
    """A copy of `recipe` with the edits applied, in a fresh temporary dir."""
    tree = yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {}
    for edit in edits:
        keys, value = parse_override(edit)
        node = tree
        for part in keys[:-1]:
            node = node.setdefault(part, {})
        node[keys[-1]] = value
    out = Path(tempfile.mkdtemp(prefix="recipe-", dir=EDITED.name)) / Path(recipe).name
    out.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return out


def run_cli(*args):
    """Invoke the CLI in-process; returns click's Result (exit_code, output, stderr). Recipe edits among the
    arguments go into a copy of the recipe file (the first argument ending in .yaml)."""
    edits = [a for a in args if isinstance(a, RecipeEdit)]
    args = [str(a) for a in args if not isinstance(a, RecipeEdit)]
    if edits:
        at = next(i for i, a in enumerate(args) if a.endswith(".yaml"))
        args[at] = str(edited_recipe(Path(args[at]), edits))
    return CliRunner().invoke(app, args, catch_exceptions=False)


# A 1-layer H64 BERT on one sample file: tokenize and pretrain in a second or two (each gets the keys it reads).
SMALL = recipe_edits(
    [
        "tokenizer.vocab_size=1500",
        "data.max_seq_length=64",
        "model.max_position_embeddings=64",
        "model.hidden_size=64",
        "model.num_hidden_layers=1",
        "train.log_every=1",
        f"data.files={DATA / 'zh' / 'corpus-a.txt'}",
    ]
)


def tiny_overrides(out: Path) -> list[str]:
    """The demo recipe shrunk to seconds: a small vocabulary, short examples, a few steps."""
    overrides = [
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
        # 57 steps: enough for the topic classifier to beat the majority class clearly (test_cli pins it).
        "finetune.train.epochs=3",
        "finetune.train.batch_size=32",
        "finetune.train.lr=5e-3",
        "finetune.task.max_seq_length=32",
    ]
    return recipe_edits(overrides)


class ListLoader(list):
    """Batches for fit() without a DataLoader."""

    def set_epoch(self, epoch: int) -> None:
        pass


class TinyRegression(torch.nn.Module):
    """A linear regression that fit() can train: batches of x (B, 2), y (B,); with a fake `clock` (an object with
    `now`), each forward takes a second of it."""

    def __init__(self, clock=None):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        self.clock = clock

    def forward(self, x, y, attention_mask):
        if self.clock is not None:
            self.clock.now += 1.0
        return {"loss": ((self.linear(x).squeeze(-1) - y) ** 2).mean()}


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    lines = []
    for path in [DATA / "zh" / "corpus-a.txt", DATA / "en" / "corpus.txt"]:
        lines += [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    return lines


@pytest.fixture(scope="session")
def tokenizer(sentences):
    return train_wordpiece(lambda: sentences, TokenizerConfig(vocab_size=3000))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """Output dir and overrides of one tiny tokenize → pretrain → finetune run of the demo recipe."""
    out = tmp_path_factory.mktemp("run")
    overrides = tiny_overrides(out)
    for command in ("tokenize", "pretrain", "finetune"):
        result = run_cli(command, RECIPE, *overrides)
        assert result.exit_code == 0, result.output
    return out, overrides
