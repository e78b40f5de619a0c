"""Where training stands: what fit() (bertkit/training/loop.py) advances and a checkpoint saves and restores.

    state = TrainState()                                    # a fresh run
    state = load_checkpoint(accelerator, path, optimizer, scheduler, layout)   # or a resumed one
    state = fit(accelerator, model, optimizer, scheduler, loader, cfg.train, max_steps, state=state)

Its own module, below both the loop and checkpointing: checkpoint.py saves and restores it without importing
the loop that advances it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of `epoch` this process has consumed
    seconds: float = 0.0  # training time so far, agreed by all processes (see bertkit/training/loop.py)
    stopped_early: bool = False  # max_time reached, a signal received, or early stopping
    stopped_by: str | None = None  # why: "time", "signal" or "early stopping"
    signal: int | None = None  # the SIGINT/SIGTERM that stopped training
