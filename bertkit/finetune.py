"""`bertkit finetune`: a task head on a pretrained BERT, trained by the same fit() as pretraining.

out_dir = run_finetune(load_recipe("recipes/demo-zh.yaml"))
BertForSequenceClassification.from_pretrained(out_dir)   # the best checkpoint by the dev metric
"""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from bertkit.checkpoint import save_model
from bertkit.config import RunConfig, save_config
from bertkit.data.tasks import TASKS, check_labels, label_set, read_rows
from bertkit.errors import BertkitError, Interrupted
from bertkit.evaluate import predict
from bertkit.loop import TrainState, fit, make_accelerator, total_steps
from bertkit.metrics import classification_metrics
from bertkit.model import check_model_dir, load_model, quiet_transformers
from bertkit.optim import make_optimizer, make_schedule
from bertkit.runtime import tune_allocator
from bertkit.tokenizer.train import load_tokenizer


def run_finetune(cfg: RunConfig) -> Path:
    """Fine-tune `finetune.model_dir` (default: this recipe's pretrained model) on the task's files."""
    quiet_transformers()
    tune_allocator()
    task_cfg, train_cfg = cfg.finetune.task, cfg.finetune.train
    task = TASKS[task_cfg.type]
    if task_cfg.train_file is None:
        raise BertkitError("finetune.task.train_file is not set; point it at a JSONL/CSV/TSV file")
    model_dir = check_model_dir(cfg.finetune.model_dir or cfg.pretrain_dir)
    tokenizer = load_tokenizer(model_dir)

    train_examples = task.read(read_rows(task_cfg.train_file), task_cfg, task_cfg.train_file)
    labels = label_set(train_examples)
    if len(labels) < 2:
        raise BertkitError(
            f"{task_cfg.train_file}: only one label ({labels[0]!r}) in column "
            f"'{task_cfg.label_column}'; classification needs at least two"
        )
    label2id = {name: i for i, name in enumerate(labels)}
    dev_examples = None
    if task_cfg.validation_file:
        dev_examples = task.read(read_rows(task_cfg.validation_file), task_cfg, task_cfg.validation_file)
        check_labels(dev_examples, label2id, task_cfg.validation_file)

    accelerator = make_accelerator(train_cfg)
    set_seed(train_cfg.seed)
    model = load_model(
        task.model_class,
        model_dir,
        cfg.allow_pickle_weights,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
    )
    if task_cfg.max_seq_length > model.config.max_position_embeddings:
        raise BertkitError(
            f"finetune.task.max_seq_length={task_cfg.max_seq_length} exceeds the model's "
            f"{model.config.max_position_embeddings} positions; lower it"
        )
    collate = partial(task.collate, pad_id=tokenizer.pad_token_id)
    features = task.encode(tokenizer, train_examples, label2id, task_cfg.max_seq_length)
    loader = DataLoader(features, batch_size=train_cfg.batch_size, shuffle=True, collate_fn=collate)
    optimizer = make_optimizer(model, train_cfg)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps = total_steps(train_cfg, len(loader))
    scheduler = make_schedule(optimizer, train_cfg, steps)
    if train_cfg.eval_every is None:  # evaluate after each epoch
        train_cfg = train_cfg.model_copy(update={"eval_every": max(1, len(loader) // train_cfg.grad_accum)})

    out_dir = cfg.finetune_dir
    if accelerator.is_main_process:
        save_config(cfg, out_dir)
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
        print(
            f"fine-tuning {model_dir} for {task_cfg.type} with {len(labels)} labels on "
            f"{len(train_examples)} examples, {steps} steps"
        )

    best = {"score": float("-inf"), "step": 0}
    dev_features = task.encode(tokenizer, dev_examples, label2id, task_cfg.max_seq_length) if dev_examples else None

    def evaluate(state: TrainState) -> dict:
        unwrapped = accelerator.unwrap_model(model)
        probs = predict(unwrapped, dev_features, collate, cfg.eval.batch_size)
        metrics = classification_metrics([f["labels"] for f in dev_features], probs.argmax(-1).tolist(), labels)
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
        if scalars[task_cfg.metric] > best["score"] and accelerator.is_main_process:
            best.update(score=scalars[task_cfg.metric], step=state.step)
            save_model(unwrapped, tokenizer, out_dir, cfg, keep=("metrics.jsonl",))
        return scalars

    state = fit(
        accelerator,
        model,
        optimizer,
        scheduler,
        loader,
        train_cfg,
        steps,
        evaluate=evaluate if dev_features else None,
        log_file=out_dir / "metrics.jsonl",
        desc="finetune",
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if dev_features:
            print(f"best dev {task_cfg.metric} {best['score']:.4f} at step {best['step']}")
        else:
            save_model(accelerator.unwrap_model(model), tokenizer, out_dir, cfg, keep=("metrics.jsonl",))
        print(f"model: {out_dir} (loads with {task.model_class.__name__}.from_pretrained)")
    if state.signal is not None:
        raise Interrupted(
            state.signal,
            f"{signal.Signals(state.signal).name} at step {state.step} of {steps}; "
            f"the best model so far is in {out_dir}",
        )
    return out_dir
