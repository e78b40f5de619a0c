"""Saving models and training checkpoints atomically, and resuming from them exactly.

    save_model(model, tokenizer, out_dir, cfg)      # a plain Hugging Face dir: config, safetensors, tokenizer
    save_checkpoint(accelerator, root, state, model, tokenizer, optimizer, scheduler, keep_last=2, layout=layout)
    state = load_checkpoint(accelerator, path, optimizer, scheduler, layout)   # after accelerator.prepare

`model` is a PreTrainedModel, or ELECTRA's objective, which writes its three parts with its own
`save_pretrained` (the discriminator, generator/ and its head; bertkit/modeling/electra.py). A checkpoint `step-N/` is a
model dir (it loads with `from_pretrained`) plus `training_state.pt` (optimizer, scheduler, grad scaler, step,
epoch, position in the epoch, training time so far) and `rng_states.pt` (every process' Python and torch RNG
states). Both load with `torch.load(weights_only=True)`: no pickled code runs.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bertkit.atomic import atomic_dir, is_ours
from bertkit.config import Recipe, save_config
from bertkit.errors import BertkitError
from bertkit.modeling.model import UNREADABLE
from bertkit.tokenizer.train import save_tokenizer
from bertkit.training.model_card import write_model_card
from bertkit.training.state import TrainState

STATE_FILE = "training_state.pt"
RNG_FILE = "rng_states.pt"


def check_finite(model: torch.nn.Module, what: Path) -> None:
    """Weights that became NaN/inf never reach a file: a checkpoint of them could only be resumed into NaN."""
    bad = next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if bad is not None:
        raise BertkitError(
            f"{what}: the weights became NaN or infinite ({bad}); nothing was saved there; lower train.lr, "
            "clip gradients (train.clip_grad_norm) or use train.precision=bf16 instead of fp16"
        )


def write_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    cfg: Recipe | None = None,
    metrics: dict | None = None,
    resolved: dict | None = None,
) -> None:
    """A Hugging Face model dir's files (config, safetensors, tokenizer; with `cfg`, bertkit.yaml, resolved.yaml
    of what its `auto` settings became (`resolved`, runtime.run_state) and a model card with `metrics`) written
    into `directory`."""
    check_finite(model, directory)
    model.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)
    if cfg is not None:
        save_config(cfg, directory, resolved)
        write_model_card(directory, model, cfg, metrics)


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    cfg: Recipe | None = None,
    keep: tuple[str, ...] = (),
    metrics: dict | None = None,
    resolved: dict | None = None,
) -> Path:
    """Write a Hugging Face model dir atomically; `keep` names entries of an existing dir to carry over."""
    with atomic_dir(directory, keep=keep) as tmp:
        write_model(model, tokenizer, tmp, cfg, metrics, resolved)
    return directory


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    found = [p for p in Path(root).glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def _rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(
    accelerator: Accelerator,
    root: Path,
    state: TrainState,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    optimizer: torch.optim.Optimizer,
    scheduler,
    keep_last: int,
    layout: dict,
) -> Path | None:
    """Called on every process (the RNG states of all are gathered); the main process writes. `layout` holds what
    the data position depends on (recipe key → value, e.g. batch size, data signature); resuming checks it."""
    directory = Path(root) / f"step-{state.step}"
    check_finite(model, directory)  # on every process, so that none waits for a save that will not come
    rng_states = gather_object([_rng_state()])  # one per process, in rank order
    if accelerator.is_main_process:
        with atomic_dir(directory) as tmp:
            model.save_pretrained(tmp)
            save_tokenizer(tokenizer, tmp)
            scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
            torch.save(
                {
                    "step": state.step,
                    "epoch": state.epoch,
                    "batches_in_epoch": state.batches_in_epoch,
                    "seconds": state.seconds,  # training time: a time budget and its LR schedule go on from here
                    "num_processes": accelerator.num_processes,
                    "layout": layout,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler,
                },
                tmp / STATE_FILE,
            )
            torch.save(rng_states, tmp / RNG_FILE)
        for old in checkpoint_dirs(root)[:-keep_last]:
            if is_ours(old):  # a step-N dir that bertkit did not write is left alone
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return directory


def resolve_resume(resume: str | None, root: Path) -> Path | None:
    """The checkpoint to resume from: None, `auto` (the newest under `root`, if any) or an explicit dir."""
    if resume is None:
        return None
    if resume == "auto":
        found = checkpoint_dirs(root)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise BertkitError(
            f"{path}: not a bertkit checkpoint ({STATE_FILE} missing); give a checkpoints/step-N "
            "dir or train.resume=auto"
        )
    return path


def load_checkpoint(
    accelerator: Accelerator, path: Path, optimizer: torch.optim.Optimizer, scheduler, layout: dict
) -> TrainState:
    """Restore optimizer, scheduler, scaler and this process' RNG states; returns where training stood. The saved
    `layout` (see save_checkpoint) must equal this run's."""
    try:
        saved = torch.load(path / STATE_FILE, weights_only=True, map_location="cpu")
        rng_states = torch.load(path / RNG_FILE, weights_only=True)
    except UNREADABLE as e:  # a truncated or foreign file: say which; --debug shows how torch failed
        raise BertkitError(
            f"{path}: checkpoint is unreadable ({type(e).__name__}); resume from an earlier step-N dir"
        ) from e
    # Checkpoints from before `layout` was saved are checked for the process count only.
    saved_layout = {"number of processes": saved["num_processes"], **saved.get("layout", {})}
    current = {"number of processes": accelerator.num_processes, **layout}
    for key, value in saved_layout.items():
        if key in current and current[key] != value:
            raise BertkitError(
                f"{path}: saved with {key} = {value}, resumed with {current[key]}; the position in the data would "
                f"not match; resume with the same {key}, or start afresh with overwrite=true"
            )
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if saved["scaler"] is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(saved["scaler"])
    rng = rng_states[accelerator.process_index]
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return TrainState(
        step=saved["step"],
        epoch=saved["epoch"],
        batches_in_epoch=saved["batches_in_epoch"],
        seconds=saved.get("seconds", 0.0),  # checkpoints from before it was saved: the budget starts afresh
    )
