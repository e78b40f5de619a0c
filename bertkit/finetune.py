"""`bertkit finetune`: a task head on a pretrained BERT, trained by the same fit() as pretraining.

    out_dir = run_finetune(load_recipe("recipes/demo-zh.yaml"))
    BertForSequenceClassification.from_pretrained(out_dir)   # the best checkpoint by the dev metric

The task family (`finetune.task.type`) decides the reader, the transformers head, the collator and the metric
(bertkit/tasks/); this module only wires them into fit().
"""

from __future__ import annotations

import contextlib
import signal
from functools import partial
from pathlib import Path

from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers.trainer_pt_utils import LengthGroupedSampler

from bertkit.atomic import atomic_dir, check_apart, check_output
from bertkit.bilstm import BiLSTMClassifier
from bertkit.checkpoint import write_model
from bertkit.config import RunConfig
from bertkit.dropout import use_fast_dropout
from bertkit.errors import BertkitError, Interrupted
from bertkit.loop import TrainState, fit, make_accelerator, total_steps
from bertkit.model import check_fits, check_model_dir, load_model, quiet_transformers
from bertkit.optim import make_optimizer, make_schedule
from bertkit.runtime import tune_allocator
from bertkit.tasks import TASKS, get_task
from bertkit.tasks.common import check_gold
from bertkit.tokenizer.train import load_tokenizer

OUTPUT_KEY = "finetune.task.name"  # the output dir is <output_dir>/finetune/<task.name>


def run_finetune(cfg: RunConfig) -> Path:
    """Fine-tune `finetune.model_dir` (default: this recipe's pretrained model) on the task's files."""
    quiet_transformers()
    tune_allocator()
    task_cfg, train_cfg = cfg.finetune.task, cfg.finetune.train
    task = get_task(task_cfg.type)
    if task_cfg.train_file is None:
        raise BertkitError("finetune.task.train_file is not set; point it at the training file")
    model_dir = check_model_dir(cfg.finetune.model_dir or cfg.pretrain_dir)
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
    metric = task_cfg.metric or task.default_metric

    accelerator = make_accelerator(train_cfg)
    set_seed(train_cfg.seed)
    settings = task.model_settings(train_examples, task_cfg)
    if cfg.model.type == "bilstm":
        if task.bilstm_head is None:
            with_head = ", ".join(name for name, t in TASKS.items() if t.bilstm_head)
            raise BertkitError(f"model.type=bilstm is for {with_head}, not {task_cfg.type}; set model.type=bert")
        id2label = task.model_kwargs(labels)["id2label"]
        model = BiLSTMClassifier.build(
            len(tokenizer), tokenizer.pad_token_id, id2label, task.bilstm_head, cfg.model, **settings
        )
    else:
        model = load_model(task.model_class, model_dir, cfg.allow_pickle_weights, **task.model_kwargs(labels))
        # Set after loading: from_pretrained passes keys its config class does not know to the model's __init__.
        model.config.update(settings)
    use_fast_dropout(model)
    check_fits(model, tokenizer, model_dir, task_cfg.max_seq_length, "finetune.task.max_seq_length")
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
    optimizer = make_optimizer(model, train_cfg)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps = total_steps(train_cfg, len(loader))
    scheduler = make_schedule(optimizer, train_cfg, steps)
    if train_cfg.eval_every is None:  # evaluate after each epoch
        train_cfg = train_cfg.model_copy(update={"eval_every": max(1, len(loader) // train_cfg.grad_accum)})

    if accelerator.is_main_process:
        what = f" with {len(labels)} labels" if labels else ""
        print(
            f"fine-tuning {model_dir} for {task_cfg.type}{what} on {len(train_examples)} examples "
            f"({len(features)} inputs), {steps} steps"
        )

    best = {"score": float("-inf"), "step": 0, "since": 0}
    # The main process writes the run (best model, metrics, config) into a temporary sibling of out_dir that
    # replaces it only at the end: a failed or interrupted run leaves an earlier output as it was.
    with atomic_dir(out_dir) if accelerator.is_main_process else contextlib.nullcontext() as stage:

        def evaluate(state: TrainState) -> dict:
            unwrapped = accelerator.unwrap_model(model)
            metrics, _ = task.evaluate(unwrapped, tokenizer, dev_examples, labels, task_cfg, cfg.eval.batch_size)
            scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
            if metric not in scalars:
                raise BertkitError(
                    f"finetune.task.metric={metric} is not reported for {task_cfg.type}; "
                    f"choose one of {', '.join(scalars)}"
                )
            best["since"] += 1
            if scalars[metric] > best["score"]:
                best.update(score=scalars[metric], step=state.step, since=0)
                if stage is not None:
                    write_model(unwrapped, tokenizer, stage, cfg)
            return scalars

        patience = cfg.finetune.early_stopping_patience
        state = fit(
            accelerator,
            model,
            optimizer,
            scheduler,
            loader,
            train_cfg,
            steps,
            evaluate=evaluate if dev_examples else None,
            log_file=stage / "metrics.jsonl" if stage is not None else None,
            desc="finetune",
            stop=(lambda: best["since"] >= patience) if patience else None,
        )
        accelerator.wait_for_everyone()
        stopped = f"{signal.Signals(state.signal).name} at step {state.step} of {steps}" if state.signal else ""
        if dev_examples and not best["step"]:  # no evaluation, or a NaN metric: there is no best model
            if stopped:
                raise Interrupted(state.signal, f"{stopped}, before the first dev evaluation; no model was saved")
            raise BertkitError(
                f"{task_cfg.validation_file}: the dev {metric} was never a number; no model was saved; check "
                "the dev file and finetune.task.metric"
            )
        if stage is not None and not dev_examples:
            write_model(accelerator.unwrap_model(model), tokenizer, stage, cfg)
    if accelerator.is_main_process:
        if dev_examples:
            print(f"best dev {metric} {best['score']:.4f} at step {best['step']}")
        if state.stopped_early and state.signal is None and patience:
            print(f"early stop at step {state.step}: no better dev {metric} in {patience} evaluations")
        loads = (
            "bertkit.bilstm.load_bilstm"
            if cfg.model.type == "bilstm"
            else f"{task.model_class.__name__}.from_pretrained"
        )
        print(f"model: {out_dir} (loads with {loads})")
    if stopped:
        saved = f"the best model so far (step {best['step']})" if dev_examples else "the model of that step"
        raise Interrupted(state.signal, f"{stopped}; {saved} is in {out_dir}")
    return out_dir
