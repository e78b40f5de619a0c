"""Saving models and training checkpoints, atomically.

    save_model(model, tokenizer, out_dir, cfg)            # a plain Hugging Face dir: config, safetensors, tokenizer
    save_checkpoint(out_dir / "checkpoints", step, model, tokenizer, optimizer, scheduler, keep_last=2)

A checkpoint is a model dir plus `training_state.pt` (optimizer, scheduler, step, RNG states), so it also
loads with `from_pretrained`.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bertkit.atomic import atomic_dir
from bertkit.config import RunConfig, save_config
from bertkit.tokenizer.train import save_tokenizer

STATE_FILE = "training_state.pt"


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    cfg: RunConfig | None = None,
    keep: tuple[str, ...] = (),
) -> Path:
    """Write a Hugging Face model dir atomically; `keep` names entries of an existing dir to carry over."""
    with atomic_dir(directory, keep=keep) as tmp:
        model.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp)
        if cfg is not None:
            save_config(cfg, tmp)
    return directory


def checkpoint_dirs(root: Path) -> list[Path]:
    """Checkpoints under `root`, oldest first."""
    found = [p for p in Path(root).glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def save_checkpoint(
    root: Path,
    step: int,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    optimizer: torch.optim.Optimizer,
    scheduler,
    keep_last: int,
) -> Path:
    directory = Path(root) / f"step-{step}"
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp)
        torch.save(
            {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
            },
            tmp / STATE_FILE,
        )
    for old in checkpoint_dirs(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return directory
