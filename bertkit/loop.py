"""fit(): the one training loop, for pretraining and fine-tuning alike.

    step = fit(accelerator, model, optimizer, scheduler, loader, cfg.train, max_steps,
               evaluate=lambda step: {"accuracy": …}, save=lambda step: …, log_file=out / "metrics.jsonl")

`model(**batch)` must return a mapping or ModelOutput with a scalar "loss"; fit knows nothing else about the
task. Evaluation and saving are the caller's functions, called every `eval_every` / `save_every` steps and at
the end.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.optim.lr_scheduler import LambdaLR

from bertkit.config import TrainConfig
from bertkit.errors import BertkitError
from bertkit.model import no_decay
from bertkit.progress import progress


def make_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": train.weight_decay},
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=train.lr, betas=(0.9, 0.999), eps=1e-6)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Linear warm-up to the peak LR, then linear decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor)


def total_steps(train: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps of a run: `max_steps`, else `epochs` passes over the data."""
    if train.max_steps:
        return train.max_steps
    return max(1, math.ceil(train.epochs * batches_per_epoch / train.grad_accum))


def _log(log_file: Path | None, record: dict) -> None:
    if log_file is not None:
        with open(log_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def fit(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    loader,
    train: TrainConfig,
    max_steps: int,
    *,
    evaluate: Callable[[int], dict] | None = None,
    save: Callable[[int], None] | None = None,
    log_file: Path | None = None,
    desc: str = "train",
) -> int:
    """Train until `max_steps` optimizer steps; returns the last step."""
    main = accelerator.is_main_process
    if log_file is not None and main:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    else:
        log_file = None
    step, epoch = 0, 0
    loss_sum, loss_count = torch.zeros((), device=accelerator.device), 0
    tokens = torch.zeros((), device=accelerator.device, dtype=torch.long)
    window_start = time.perf_counter()
    bar = progress(total=max_steps, desc=desc, unit="step", disable=not main)
    model.train()
    while step < max_steps:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        seen = 0
        for batch in loader:
            seen += 1
            with accelerator.accumulate(model):
                loss = model(**batch)["loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients and train.clip_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), train.clip_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            loss_count += 1
            tokens += batch["attention_mask"].sum()
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            bar.update(1)
            if step % train.log_every == 0 or step == max_steps:
                # .item() waits for the device: only once per log interval.
                mean_loss = accelerator.reduce(loss_sum, "mean").item() / loss_count
                if not math.isfinite(mean_loss):
                    raise BertkitError(
                        f"loss became {mean_loss} at step {step}; lower train.lr or use "
                        "train.precision=bf16 instead of fp16"
                    )
                elapsed = time.perf_counter() - window_start
                tok_s = accelerator.reduce(tokens, "sum").item() / max(elapsed, 1e-9)
                lr = scheduler.get_last_lr()[0]
                bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}")
                _log(log_file, {"step": step, "epoch": epoch, "loss": mean_loss, "lr": lr, "tokens_per_s": tok_s})
                loss_sum.zero_()
                tokens.zero_()
                loss_count = 0
                window_start = time.perf_counter()
            if evaluate and ((train.eval_every and step % train.eval_every == 0) or step == max_steps):
                metrics = evaluate(step)
                model.train()
                if main:
                    bar.write(f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                _log(log_file, {"step": step, **{f"eval/{k}": v for k, v in metrics.items()}})
            if save and train.save_every and step % train.save_every == 0 and step != max_steps:
                save(step)
            if step >= max_steps:
                break
        if seen == 0:
            raise BertkitError("the training data yields no batch; check the data files and train.batch_size")
        epoch += 1
    bar.close()
    return step
