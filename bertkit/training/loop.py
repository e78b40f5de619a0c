"""fit(): the one training loop, for pretraining and fine-tuning alike.

    state = fit(accelerator, model, optimizer, scheduler, loader, cfg.train, max_steps,
                evaluate=lambda state: {"accuracy": …}, save=lambda state: …, save_every=1000,
                log_file=out / "metrics.jsonl")

`model(**batch)` must return a mapping or ModelOutput with a scalar "loss", and may say how many real tokens
the batch held as "num_tokens" (else the batch's attention_mask counts them, for the throughput) and the parts
of its loss as other "…_loss" scalars (logged beside it: mlm_loss, rtd_loss); fit knows nothing else about the
task or how the batch was made. Evaluation and checkpointing are the caller's
functions, called every `train.eval_every` / `save_every` steps (0 or None: never before the end) and at the end.
`state` (bertkit/training/state.py) says where training is (step, epoch, micro-batches into the epoch, training
time); a resumed run passes the checkpoint's state and continues exactly where it stopped.

Training time (`state.seconds`, what `train.max_time_minutes` budgets and a BudgetLR schedule follows) is the
time of the steps themselves (loading, forward, backward, optimizer, logging), not evaluation or checkpointing,
summed over resumed runs; `clock` measures it (tests replace it with a fake clock).
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from bertkit.config.sections import TrainConfig
from bertkit.errors import BertkitError
from bertkit.progress import progress
from bertkit.training.optim import BudgetLR
from bertkit.training.state import TrainState

clock = time.perf_counter  # the clock of training time; read through the module, so a test can replace it


class Stopper:
    """When training stops before its last step: SIGINT/SIGTERM (while active they ask for a stop at the next
    step, with a checkpoint, instead of killing the process; a second SIGINT interrupts at once), the time
    budget, or early stopping. Every process stops at the same step, or the saves would deadlock."""

    def __init__(self, accelerator: Accelerator, max_minutes: float | None, early: Callable[[], bool] | None):
        self.accelerator = accelerator
        self.budget = max_minutes * 60 if max_minutes else math.inf  # seconds of training time
        self.early = early
        self.received: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def timed(self) -> bool:
        """Whether a time budget is set."""
        return math.isfinite(self.budget)

    def spent(self, state: TrainState) -> bool:
        """Whether the time budget is used up."""
        return state.seconds >= self.budget

    def last_step(self, state: TrainState, max_steps: int) -> int:
        """The step the run is expected to end at: max_steps, or sooner where the budget runs out at the steps'
        rate so far (what the progress bar counts to, so that its ETA is the budget's)."""
        if not self.timed or state.seconds <= 0 or state.step <= 0:
            return max_steps
        left = max(0.0, self.budget - state.seconds) * state.step / state.seconds
        return min(max_steps, state.step + math.ceil(left))

    def check(self, state: TrainState) -> str | None:
        """After a step: "signal", "time" or None, agreed by all processes. Sets `state.seconds` to the largest
        of the processes' clocks, so that every process computes the same LR and stops at the same step. The
        one sync of a step (with several processes)."""
        signalled = self.received is not None
        if self.accelerator.num_processes > 1:
            # float64: float32 seconds lose precision over a long run
            flags = torch.tensor([float(signalled), state.seconds], dtype=torch.float64, device=self.accelerator.device)
            signalled, state.seconds = self.accelerator.reduce(flags, "max").tolist()
            signalled = signalled > 0
        if signalled:
            return "signal"
        return "time" if self.spent(state) else None

    def early_stop(self) -> bool:
        """Early stopping, asked after an evaluation (its metrics are the same on every process)."""
        return self.early is not None and self.early()

    @property
    def signal(self) -> int:
        """The signal that stopped training (SIGTERM when another process received it)."""
        return self.received or signal.SIGTERM


class Window:
    """Loss (and its parts) and real tokens since the last log line, kept on the device: read (a sync) once per
    line."""

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator
        self.loss = torch.zeros((), device=accelerator.device)
        self.parts: dict[str, torch.Tensor] = {}  # "mlm_loss" → its sum over the window
        self.tokens = torch.zeros((), device=accelerator.device, dtype=torch.long)
        self.finite = torch.ones((), dtype=torch.bool, device=accelerator.device)  # no NaN/inf loss so far
        self.count, self.start = 0, time.perf_counter()

    def add(self, loss: torch.Tensor, tokens: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        self.loss += loss.detach()
        for name, value in parts.items():
            self.parts[name] = self.parts.get(name, 0) + value.detach().float()
        self.finite &= torch.isfinite(loss.detach())
        self.tokens += tokens
        self.count += 1

    def check_finite(self, step: int) -> None:
        """Stop before a NaN/inf loss reaches a checkpoint or a log line (all processes agree)."""
        if self.accelerator.reduce(self.finite.float(), "min").item() < 1:
            raise BertkitError(
                f"the loss became NaN or infinite by step {step}; nothing after the last checkpoint was saved; "
                "lower train.lr, clip gradients (train.clip_grad_norm) or use train.precision=bf16 instead of fp16"
            )

    def read(self) -> tuple[float, float, dict[str, float]]:
        """(mean loss, real tokens per second, mean of each part) of the window, which starts anew."""
        losses = torch.stack([self.loss.float(), *self.parts.values()])  # one reduce for all
        means = [total / self.count for total in self.accelerator.reduce(losses, "mean").tolist()]
        tok_s = self.accelerator.reduce(self.tokens, "sum").item() / max(time.perf_counter() - self.start, 1e-9)
        parts = dict(zip(self.parts, means[1:], strict=True))
        self.loss.zero_()
        self.tokens.zero_()
        self.parts = {}
        self.count, self.start = 0, time.perf_counter()
        return means[0], tok_s, parts


def total_steps(train: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps of a run: `max_steps`, else `epochs` passes over the data."""
    if train.max_steps:
        return train.max_steps
    return max(1, math.ceil(train.epochs * batches_per_epoch / train.grad_accum))


def _log(accelerator: Accelerator, log_file: Path | None, record: dict) -> None:
    """A metrics.jsonl line (main process) and the same values to accelerate's trackers (TensorBoard)."""
    if log_file is not None:
        with open(log_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    accelerator.log({k: v for k, v in record.items() if k not in ("step", "epoch")}, step=record["step"])


@dataclass
class Training:
    """One fit() call: its pieces, and what it does at each batch and after each optimizer step (the update, the
    log line, the evaluation, the checkpoint). A stretch of training time runs from `mark`."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    train: TrainConfig
    max_steps: int
    stopper: Stopper
    bar: tqdm
    log_file: Path | None
    evaluate: Callable[[TrainState], dict] | None
    save: Callable[[TrainState], None] | None
    save_every: int | None
    window: Window = field(init=False)
    mark: float = field(init=False)

    def __post_init__(self):
        self.window = Window(self.accelerator)
        self.mark = clock()

    def epoch(self, loader, state: TrainState) -> str | None:
        """Epoch `state.epoch` from where `state` stands in it, until its end, max_steps, or a stop: why it
        stopped ("signal", "time", "early stopping"), or None."""
        accelerator = self.accelerator
        loader.set_epoch(state.epoch)
        # Resuming mid-epoch: skip what was consumed at the sampler, without loading or masking it.
        batches = accelerator.skip_first_batches(loader, state.batches_in_epoch) if state.batches_in_epoch else loader
        seen = 0
        for batch in batches:
            seen += 1
            state.batches_in_epoch += 1
            self.update(batch)
            if not accelerator.sync_gradients:
                continue
            stopping = self.after_step(state)
            if stopping or state.step == self.max_steps:
                return stopping
        if seen == 0 and state.batches_in_epoch == 0:
            raise BertkitError("the training data yields no batch; check the data files and train.batch_size")
        return None

    def update(self, batch: dict) -> None:
        """Forward and backward of a micro-batch; the optimizer steps where accelerate's accumulation syncs."""
        accelerator, train = self.accelerator, self.train
        with accelerator.accumulate(self.model):
            out = self.model(**batch)
            accelerator.backward(out["loss"])
            if accelerator.sync_gradients and train.clip_grad_norm:
                accelerator.clip_grad_norm_(self.model.parameters(), train.clip_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        tokens = out.get("num_tokens")
        parts = {k: v for k, v in out.items() if k.endswith("_loss") and k != "loss"}
        self.window.add(out["loss"], batch["attention_mask"].sum() if tokens is None else tokens, parts)

    def after_step(self, state: TrainState) -> str | None:
        """After an optimizer step: the step counted (advance), then the log line, the evaluation and the
        checkpoint when due. Whether training stops here, and why."""
        stopping = self.advance(state)
        at_end = state.step == self.max_steps or stopping == "time"
        train = self.train
        if state.step % train.log_every == 0 or at_end:
            self.log(state)
        if self.evaluate is not None and ((train.eval_every and state.step % train.eval_every == 0) or at_end):
            self.evaluation(state)
            if stopping is None and self.stopper.early_stop():
                stopping = "early stopping"
        if self.save and ((self.save_every and state.step % self.save_every == 0) or at_end or stopping):
            self.window.check_finite(state.step)
            self.save(state)
        self.mark = clock()  # evaluation and checkpointing are not training time
        return stopping

    def advance(self, state: TrainState) -> str | None:
        """After an optimizer step: the step and its time counted, the schedule moved on; whether training
        stops here ("signal", "time", or None)."""
        state.step += 1
        state.seconds += clock() - self.mark
        stopping = self.stopper.check(state)
        if stopping == "time" and state.step == self.max_steps:
            stopping = None  # both budgets end here: a plain end
        if isinstance(self.scheduler, BudgetLR):
            self.scheduler.seconds = state.seconds
        self.scheduler.step()
        self.bar.update(1)
        return stopping

    def log(self, state: TrainState) -> None:
        """The window's loss and throughput: a metrics.jsonl line, the trackers' and the progress bar's."""
        self.window.check_finite(state.step)
        loss, tok_s, parts = self.window.read()
        lr = self.scheduler.get_last_lr()[0]
        stopper = self.stopper
        # Under a time budget the bar counts to where the budget is expected to end, and says what it leaves.
        self.bar.total = stopper.last_step(state, self.max_steps)
        left = {"budget_left": f"{max(0.0, stopper.budget - state.seconds) / 60:.1f}min"} if stopper.timed else {}
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}", **left)
        record = {"step": state.step, "epoch": state.epoch, "loss": loss, **parts, "lr": lr}
        _log(self.accelerator, self.log_file, record | {"tokens_per_s": tok_s, "seconds": round(state.seconds, 2)})

    def evaluation(self, state: TrainState) -> None:
        """The caller's evaluation, printed and logged; the model goes back to training."""
        metrics = self.evaluate(state)
        self.model.train()
        if self.accelerator.is_main_process:
            self.bar.write(f"step {state.step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        evaluated = {f"eval/{k}": v for k, v in metrics.items()}
        _log(self.accelerator, self.log_file, {"step": state.step, "seconds": round(state.seconds, 2), **evaluated})

    def stop(self, state: TrainState, stopping: str) -> TrainState:
        """Training ends before max_steps: why, in `state`."""
        if self.accelerator.is_main_process and stopping == "time":
            self.bar.write(f"train.max_time_minutes={self.train.max_time_minutes} reached at step {state.step}")
        state.stopped_early, state.stopped_by = True, stopping
        state.signal = self.stopper.signal if stopping == "signal" else None
        return state


def fit(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    loader,
    train: TrainConfig,
    max_steps: int,
    *,
    state: TrainState | None = None,
    evaluate: Callable[[TrainState], dict] | None = None,
    save: Callable[[TrainState], None] | None = None,
    save_every: int | None = None,
    log_file: Path | None = None,
    desc: str = "train",
    stop: Callable[[], bool] | None = None,
) -> TrainState:
    """Train until `max_steps` optimizer steps, `train.max_time_minutes` of training time, a signal, or `stop()`
    (checked after each evaluation: early stopping) says so; returns where it stopped. A stop on time is the run's
    end, as the last step is: logged, evaluated and saved."""
    state = state or TrainState()
    main = accelerator.is_main_process
    if log_file is not None and main:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    else:
        log_file = None
    model.train()
    bar = progress(total=max_steps, initial=state.step, desc=desc, unit="step", disable=not main)
    with bar, Stopper(accelerator, train.max_time_minutes, stop) as stopper:
        if stopper.spent(state):  # resumed (or a next phase entered) with the budget used up
            state.stopped_early, state.stopped_by = True, "time"
            return state
        training = Training(
            accelerator=accelerator,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            train=train,
            max_steps=max_steps,
            stopper=stopper,
            bar=bar,
            log_file=log_file,
            evaluate=evaluate,
            save=save,
            save_every=save_every,
        )
        while state.step < max_steps:
            stopping = training.epoch(loader, state)
            if stopping:
                return training.stop(state, stopping)
            if state.step < max_steps:
                state.epoch += 1
                state.batches_in_epoch = 0
        return state
