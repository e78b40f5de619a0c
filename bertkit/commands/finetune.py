"""`bertkit finetune`: a task head on a pretrained BERT, trained by the same fit() as pretraining.

    out_dir = run_finetune(load_recipe("recipes/demo-zh.yaml"))
    BertForSequenceClassification.from_pretrained(out_dir)   # the best checkpoint by the dev metric

The task family (`finetune.task.type`) decides the reader, the transformers head, the collator and the metric
(bertkit/tasks/), and `finetune.model_type` whether that head or the BiLSTM baseline trains (tasks/models.py);
this module only wires them into fit().
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler

from bertkit.atomic import atomic_dir, check_apart, check_output
from bertkit.config import FinetuneRecipe
from bertkit.config.sections import TaskConfig, TrainConfig
from bertkit.errors import BertkitError, Interrupted
from bertkit.modeling.dropout import use_fast_dropout
from bertkit.modeling.model import check_fits, quiet_transformers
from bertkit.tasks import get_task
from bertkit.tasks.common import Task, check_gold
from bertkit.tasks.models import MODEL_TYPES, ModelType
from bertkit.tokenizer.train import load_tokenizer
from bertkit.training.checkpoint import write_model
from bertkit.training.loop import fit, total_steps
from bertkit.training.optim import describe_schedule, make_optimizer, make_schedule
from bertkit.training.runtime import make_accelerator, run_state, tune_allocator
from bertkit.training.state import TrainState

OUTPUT_KEY = "finetune.task.name"  # the output dir is <output_dir>/finetune/<task.name>


@dataclass
class Setup:
    """What set-up builds and the training and the finish use."""

    task: Task
    model_type: ModelType  # finetune.model_type's
    tokenizer: PreTrainedTokenizerBase
    out_dir: Path
    labels: list[str] | None
    dev_examples: list | None
    metric: str  # the dev metric that picks the best model
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    loader: DataLoader
    train: TrainConfig  # finetune.train as the model type trains it, eval_every resolved (after each epoch when unset)
    steps: int


@dataclass
class Best:
    """The best dev score so far, its step, and evaluations since (for early stopping)."""

    score: float = float("-inf")
    step: int = 0  # 0: no model saved yet
    since: int = 0


def run_finetune(cfg: FinetuneRecipe) -> Path:
    """Fine-tune `finetune.model_dir` (default: this recipe's pretrained model) on the task's files."""
    run = setup(cfg)
    best = Best()
    # The main process writes the run (best model, metrics, config) into a temporary sibling of out_dir that
    # replaces it only at the end: a failed or interrupted run leaves an earlier output as it was.
    with atomic_dir(run.out_dir) if run.accelerator.is_main_process else contextlib.nullcontext() as stage:
        state = train(cfg, run, best, stage)
    return finish(cfg, run, best, state)


def setup(cfg: FinetuneRecipe) -> Setup:
    """The task's files (read and checked before anything heavy), the output dir, the model with its head,
    the length-grouped loader, optimizer and schedule."""
    quiet_transformers()
    tune_allocator()
    task_cfg = cfg.finetune.task
    task = get_task(task_cfg.type)
    model_type = MODEL_TYPES[cfg.finetune.model_type]
    model_dir, out_dir = _paths(cfg, model_type)
    tokenizer = load_tokenizer(model_dir)
    train_examples, labels, dev_examples = _examples(task, task_cfg)

    train_cfg = model_type.train_config(cfg)
    accelerator = make_accelerator(train_cfg.precision, "finetune.train.precision", train_cfg.grad_accum)
    set_seed(train_cfg.seed)
    model = model_type.build(cfg, task, tokenizer, model_dir, labels, task.model_settings(train_examples, task_cfg))
    use_fast_dropout(model)
    check_fits(model, tokenizer, model_dir, task_cfg.max_seq_length, "finetune.task.max_seq_length")
    features = [task.model_inputs(f) for f in task.encode(tokenizer, train_examples, labels, task_cfg, train=True)]
    loader = _loader(cfg, task, tokenizer, features, train_cfg)
    optimizer = make_optimizer(model, train_cfg, task.own_lrs(task_cfg))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps = total_steps(train_cfg, len(loader))
    scheduler = make_schedule(optimizer, train_cfg, steps)
    if train_cfg.eval_every is None:  # evaluate after each epoch
        train_cfg = train_cfg.model_copy(update={"eval_every": max(1, len(loader) // train_cfg.grad_accum)})
    if accelerator.is_main_process:
        what = f" with {len(labels)} labels" if labels else ""
        print(
            f"{model_type.describe(cfg, model_dir)} for {task_cfg.type}{what} on {len(train_examples)} examples "
            f"({len(features)} inputs), {steps} steps"
        )
        print(describe_schedule(train_cfg, steps))
    return Setup(
        task=task,
        model_type=model_type,
        tokenizer=tokenizer,
        out_dir=out_dir,
        labels=labels,
        dev_examples=dev_examples,
        metric=task_cfg.metric or task.default_metric,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loader=loader,
        train=train_cfg,
        steps=steps,
    )


def _paths(cfg: FinetuneRecipe, model_type: ModelType) -> tuple[Path, Path]:
    """(the dir of the tokenizer and of any weights the model starts from, the output dir), checked."""
    task_cfg = cfg.finetune.task
    if task_cfg.train_file is None:
        raise BertkitError("finetune.task.train_file is not set; point it at the training file")
    model_dir = model_type.source(cfg)
    out_dir = cfg.finetune_dir
    check_apart(
        {OUTPUT_KEY: out_dir},
        {
            "finetune.model_dir": model_dir,
            "finetune.task.train_file": task_cfg.train_file,
            "finetune.task.validation_file": task_cfg.validation_file,
            "finetune.task.test_file": task_cfg.test_file,
        },
    )
    check_output(out_dir, OUTPUT_KEY, cfg.overwrite)
    return model_dir, out_dir


def _examples(task: Task, task_cfg: TaskConfig) -> tuple[list, list[str] | None, list | None]:
    """(train examples, their label set or None, dev examples or None), the dev file's labels known to the train
    file."""
    train_examples = task.read(task_cfg.train_file, task_cfg, labelled=True)
    labels = task.labels(train_examples)
    dev_examples = task.read(task_cfg.validation_file, task_cfg, labelled=True) if task_cfg.validation_file else None
    if labels and dev_examples:
        check_gold(dev_examples, labels, task_cfg.validation_file)
    return train_examples, labels, dev_examples


def _loader(cfg: FinetuneRecipe, task: Task, tokenizer, features: list[dict], train_cfg: TrainConfig) -> DataLoader:
    """Shuffled batches of the training features, of similar lengths with finetune.group_by_length."""
    sampler = None
    if cfg.finetune.group_by_length:
        sampler = LengthGroupedSampler(train_cfg.batch_size, lengths=[task.length(f) for f in features])
    return DataLoader(
        features,
        batch_size=train_cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        collate_fn=partial(task.collate, pad_id=tokenizer.pad_token_id),
    )


def train(cfg: FinetuneRecipe, run: Setup, best: Best, stage: Path | None) -> TrainState:
    """fit() with the dev evaluation, which writes each better model into `stage` (main process); the model
    of the last step when there is no dev file."""
    task, accelerator = run.task, run.accelerator

    def evaluate(state: TrainState) -> dict:
        unwrapped = accelerator.unwrap_model(run.model)
        task_cfg = cfg.finetune.task
        metrics, _ = task.evaluate(
            unwrapped, run.tokenizer, run.dev_examples, run.labels, task_cfg, cfg.eval.batch_size
        )
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
        if run.metric not in scalars:
            raise BertkitError(
                f"finetune.task.metric={run.metric} is not reported for {task_cfg.type}; "
                f"choose one of {', '.join(scalars)}"
            )
        best.since += 1
        if scalars[run.metric] > best.score:
            best.score, best.step, best.since = scalars[run.metric], state.step, 0
            if stage is not None:
                write_model(unwrapped, run.tokenizer, stage, cfg, scalars, run_state(accelerator))
        return scalars

    patience = cfg.finetune.early_stopping_patience
    state = fit(
        accelerator,
        run.model,
        run.optimizer,
        run.scheduler,
        run.loader,
        run.train,
        run.steps,
        evaluate=evaluate if run.dev_examples else None,
        log_file=stage / "metrics.jsonl" if stage is not None else None,
        desc="finetune",
        stop=(lambda: best.since >= patience) if patience else None,
    )
    accelerator.wait_for_everyone()
    if run.dev_examples and not best.step:  # no evaluation, or a NaN metric: there is no best model
        if state.signal:
            raise Interrupted(
                state.signal, f"{_stopped(run, state)}, before the first dev evaluation; no model was saved"
            )
        raise BertkitError(
            f"{cfg.finetune.task.validation_file}: the dev {run.metric} was never a number; no model was saved; "
            "check the dev file and finetune.task.metric"
        )
    if stage is not None and not run.dev_examples:
        write_model(accelerator.unwrap_model(run.model), run.tokenizer, stage, cfg, resolved=run_state(accelerator))
    return state


def _stopped(run: Setup, state: TrainState) -> str:
    return f"{signal.Signals(state.signal).name} at step {state.step} of {run.steps}"


def finish(cfg: FinetuneRecipe, run: Setup, best: Best, state: TrainState) -> Path:
    """Say what was kept, and exit as the signal asks when one stopped training."""
    if run.accelerator.is_main_process:
        if run.dev_examples:
            print(f"best dev {run.metric} {best.score:.4f} at step {best.step}")
        patience = cfg.finetune.early_stopping_patience
        if state.stopped_by == "early stopping":
            print(f"early stop at step {state.step}: no better dev {run.metric} in {patience} evaluations")
        elif state.stopped_by == "time":
            budget = run.train.max_time_minutes
            print(f"stopped at step {state.step} of {run.steps}: the {budget:g}-minute budget is used up")
        print(f"model: {run.out_dir} (loads with {run.model_type.loads_with(run.task, cfg.finetune.task)})")
    if state.signal:
        saved = f"the best model so far (step {best.step})" if run.dev_examples else "the model of that step"
        raise Interrupted(state.signal, f"{_stopped(run, state)}; {saved} is in {run.out_dir}")
    return run.out_dir
