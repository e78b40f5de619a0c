"""`bertkit finetune`: a task head on a pretrained BERT, trained by the same fit() as pretraining.

    out_dir = run_finetune(load_recipe("recipes/demo-zh.yaml"))
    BertForSequenceClassification.from_pretrained(out_dir)   # the best checkpoint by the dev metric

The task family (`finetune.task.type`) decides the reader, the transformers head, the collator and the metric
(bertkit/tasks/); this module only wires them into fit().
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
from bertkit.config import RunConfig, TrainConfig
from bertkit.errors import BertkitError, Interrupted
from bertkit.modeling.bilstm import BiLSTMClassifier
from bertkit.modeling.dropout import use_fast_dropout
from bertkit.modeling.model import check_fits, check_model_dir, checkpoint_layers, load_model, quiet_transformers
from bertkit.tasks import TASKS, get_task
from bertkit.tasks.common import Task, check_gold
from bertkit.tokenizer.train import has_tokenizer, load_tokenizer
from bertkit.training.checkpoint import write_model
from bertkit.training.loop import TrainState, fit, total_steps
from bertkit.training.optim import describe_schedule, make_optimizer, make_schedule
from bertkit.training.runtime import make_accelerator, tune_allocator

OUTPUT_KEY = "finetune.task.name"  # the output dir is <output_dir>/finetune/<task.name>


@dataclass
class Setup:
    """What set-up builds and the training and the finish use."""

    task: Task
    tokenizer: PreTrainedTokenizerBase
    model_dir: Path
    out_dir: Path
    labels: list[str] | None
    dev_examples: list | None
    metric: str  # the dev metric that picks the best model
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    loader: DataLoader
    train: TrainConfig  # finetune.train, with eval_every resolved (after each epoch when unset)
    steps: int


@dataclass
class Best:
    """The best dev score so far, its step, and evaluations since (for early stopping)."""

    score: float = float("-inf")
    step: int = 0  # 0: no model saved yet
    since: int = 0


def run_finetune(cfg: RunConfig) -> Path:
    """Fine-tune `finetune.model_dir` (default: this recipe's pretrained model) on the task's files."""
    run = setup(cfg)
    best = Best()
    # The main process writes the run (best model, metrics, config) into a temporary sibling of out_dir that
    # replaces it only at the end: a failed or interrupted run leaves an earlier output as it was.
    with atomic_dir(run.out_dir) if run.accelerator.is_main_process else contextlib.nullcontext() as stage:
        state = train(cfg, run, best, stage)
    return finish(cfg, run, best, state)


def setup(cfg: RunConfig) -> Setup:
    """The task's files (read and checked before anything heavy), the output dir, the model with its head,
    the length-grouped loader, optimizer and schedule."""
    quiet_transformers()
    tune_allocator()
    task_cfg, train_cfg = cfg.finetune.task, cfg.finetune.train
    bilstm = cfg.finetune.model_type == "bilstm"
    if bilstm:  # trained from scratch: its own LR, not BERT's fine-tuning one (nor BERT's layer-wise decay)
        train_cfg = train_cfg.model_copy(update={"lr": cfg.finetune.bilstm.lr, "layer_lr_decay": None})
    task = get_task(task_cfg.type)
    if task_cfg.train_file is None:
        raise BertkitError("finetune.task.train_file is not set; point it at the training file")
    model_dir = _tokenizer_dir(cfg) if bilstm else check_model_dir(cfg.finetune.model_dir or cfg.pretrain_dir)
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
    tokenizer = load_tokenizer(model_dir)
    train_examples = task.read(task_cfg.train_file, task_cfg, labelled=True)
    labels = task.labels(train_examples)
    dev_examples = task.read(task_cfg.validation_file, task_cfg, labelled=True) if task_cfg.validation_file else None
    if labels and dev_examples:
        check_gold(dev_examples, labels, task_cfg.validation_file)

    accelerator = make_accelerator(train_cfg.precision, "finetune.train.precision", train_cfg.grad_accum)
    set_seed(train_cfg.seed)
    model = _model(cfg, task, tokenizer, model_dir, labels, task.model_settings(train_examples, task_cfg))
    features = task.encode(tokenizer, train_examples, labels, task_cfg, train=True)
    features = [{k: v for k, v in f.items() if k not in ("example", "word_ids", "offsets")} for f in features]
    sampler = None
    if cfg.finetune.group_by_length:
        sampler = LengthGroupedSampler(train_cfg.batch_size, lengths=[task.length(f) for f in features])
    loader = DataLoader(
        features,
        batch_size=train_cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        collate_fn=partial(task.collate, pad_id=tokenizer.pad_token_id),
    )
    optimizer = make_optimizer(model, train_cfg, {"crf.": task_cfg.crf_lr} if task_cfg.crf else None)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps = total_steps(train_cfg, len(loader))
    scheduler = make_schedule(optimizer, train_cfg, steps)
    if train_cfg.eval_every is None:  # evaluate after each epoch
        train_cfg = train_cfg.model_copy(update={"eval_every": max(1, len(loader) // train_cfg.grad_accum)})
    if accelerator.is_main_process:
        what = f" with {len(labels)} labels" if labels else ""
        start = (
            f"training a BiLSTM baseline (tokenizer of {model_dir}; lr {train_cfg.lr:g} from finetune.bilstm.lr, "
            "not finetune.train.lr)"
            if bilstm
            else f"fine-tuning {model_dir}"
        )
        print(
            f"{start} for {task_cfg.type}{what} on {len(train_examples)} examples ({len(features)} inputs), "
            f"{steps} steps"
        )
        print(describe_schedule(train_cfg, steps))
    return Setup(
        task=task,
        tokenizer=tokenizer,
        model_dir=model_dir,
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


def _tokenizer_dir(cfg: RunConfig) -> Path:
    """Where the BiLSTM takes its tokenizer (and nothing else): finetune.model_dir, any dir with a BERT
    tokenizer; unset, this recipe's pretrained model, or its `bertkit tokenize` output when not pretrained."""
    candidates = [cfg.finetune.model_dir] if cfg.finetune.model_dir else [cfg.pretrain_dir, cfg.tokenizer_dir]
    for directory in candidates:
        if has_tokenizer(directory):
            return Path(directory)
    raise BertkitError(
        f"{' or '.join(map(str, candidates))}: no tokenizer (vocab.txt or tokenizer.json); "
        "finetune.model_type=bilstm needs only that: set finetune.model_dir to a BERT dir or to a `bertkit tokenize` "
        "output's tokenizer/ dir"
    )


def _model(cfg: RunConfig, task: Task, tokenizer, model_dir: Path, labels, settings: dict) -> torch.nn.Module:
    """The pretrained BERT with the family's head (or the BiLSTM baseline), `settings` in its config."""
    if cfg.finetune.model_type == "bilstm":
        if task.bilstm_head is None:
            with_head = ", ".join(name for name, t in TASKS.items() if t.bilstm_head)
            raise BertkitError(
                f"finetune.model_type=bilstm is for {with_head}, not {cfg.finetune.task.type}; "
                "set finetune.model_type=bert"
            )
        if cfg.finetune.train.gradient_checkpointing:
            raise BertkitError(
                "finetune.train.gradient_checkpointing is for BERT encoders, not the BiLSTM baseline; set it to false"
            )
        id2label = task.model_kwargs(labels)["id2label"]
        model = BiLSTMClassifier.build(
            len(tokenizer), tokenizer.pad_token_id, id2label, task.bilstm_head, cfg.finetune.bilstm, **settings
        )
    else:
        cls = task.head(cfg.finetune.task)
        model = load_model(cls, model_dir, cfg.allow_pickle_weights, **task.model_kwargs(labels))
        # Set after loading: from_pretrained passes keys its config class does not know to the model's __init__.
        model.config.update(settings)
        if cfg.finetune.train.gradient_checkpointing:
            checkpoint_layers(model)
    use_fast_dropout(model)
    check_fits(model, tokenizer, model_dir, cfg.finetune.task.max_seq_length, "finetune.task.max_seq_length")
    return model


def train(cfg: RunConfig, run: Setup, best: Best, stage: Path | None) -> TrainState:
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
                write_model(unwrapped, run.tokenizer, stage, cfg, scalars)
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
        write_model(accelerator.unwrap_model(run.model), run.tokenizer, stage, cfg)
    return state


def _stopped(run: Setup, state: TrainState) -> str:
    return f"{signal.Signals(state.signal).name} at step {state.step} of {run.steps}"


def finish(cfg: RunConfig, run: Setup, best: Best, state: TrainState) -> Path:
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
        loads = (
            "bertkit.modeling.bilstm.load_bilstm"
            if cfg.finetune.model_type == "bilstm"
            else f"{run.task.head(cfg.finetune.task).__name__}.from_pretrained"
        )
        print(f"model: {run.out_dir} (loads with {loads})")
    if state.signal:
        saved = f"the best model so far (step {best.step})" if run.dev_examples else "the model of that step"
        raise Interrupted(state.signal, f"{_stopped(run, state)}; {saved} is in {run.out_dir}")
    return run.out_dir
