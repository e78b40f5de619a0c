"""`bertkit pretrain`: masked-LM (+ NSP or SOP) pretraining, wired into fit().

    out_dir = run_pretrain(load_recipe("recipes/demo-zh.yaml", ["train.max_steps=50"]))
    BertForMaskedLM.from_pretrained(out_dir)   # or BertForPreTraining, BertModel, pipeline("fill-mask")

The objective follows the data: `nsp` examples train MLM+NSP, `sop` MLM+SOP (the same seq_relationship head),
`packed` MLM only. The same command runs under `accelerate launch` or `torchrun` on several processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import BertForPreTraining

from bertkit.checkpoint import load_checkpoint, resolve_resume, save_checkpoint, save_model
from bertkit.config import RunConfig, save_config
from bertkit.data.loader import EpochSampler, KeyedDataset
from bertkit.data.masking import PretrainingCollator
from bertkit.errors import BertkitError
from bertkit.evaluate import evaluate_pretraining
from bertkit.loop import TrainState, fit, make_accelerator, total_steps
from bertkit.model import (
    PretrainingObjective,
    build_pretraining_model,
    check_vocabulary,
    parameter_count,
    quiet_transformers,
)
from bertkit.optim import make_optimizer, make_schedule
from bertkit.plots import plot_curves
from bertkit.prepare import TOKENIZER_SUBDIR, load_pretraining_data
from bertkit.tokenizer.train import load_tokenizer

METRICS_FILE = "metrics.jsonl"


def _trim_metrics(path: Path, step: int) -> None:
    """On resume, drop what the interrupted run logged after its checkpoint."""
    if path.is_file():
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def run_pretrain(cfg: RunConfig) -> Path:
    """Pretrain on `cfg.dataset_dir`; the final model goes to `<output_dir>/pretrain`."""
    quiet_transformers()
    splits, meta = load_pretraining_data(cfg.dataset_dir)
    tokenizer = load_tokenizer(cfg.dataset_dir / TOKENIZER_SUBDIR)
    out_dir = cfg.pretrain_dir
    accelerator = make_accelerator(cfg.train, project_dir=out_dir)
    set_seed(cfg.train.seed)
    resume_from = resolve_resume(cfg.train.resume, out_dir / "checkpoints")
    if resume_from:
        model = BertForPreTraining.from_pretrained(str(resume_from), attn_implementation="sdpa")
        check_vocabulary(model, tokenizer, resume_from)
    else:
        model = build_pretraining_model(cfg.model, tokenizer)
    if meta["max_seq_length"] > model.config.max_position_embeddings:
        raise BertkitError(
            f"{cfg.dataset_dir}: examples of {meta['max_seq_length']} tokens exceed the model's "
            f"{model.config.max_position_embeddings} positions; raise model.max_position_embeddings "
            "or tokenize with a smaller data.max_seq_length"
        )
    global_sum = (lambda t: accelerator.reduce(t, "sum")) if accelerator.num_processes > 1 else None
    objective = PretrainingObjective(model, global_sum, accelerator.num_processes)
    loader = DataLoader(
        KeyedDataset(splits["train"], cfg.train.seed),
        batch_size=cfg.train.batch_size,
        sampler=EpochSampler(len(splits["train"]), cfg.train.seed),
        collate_fn=PretrainingCollator(tokenizer, cfg.masking),
        generator=torch.Generator(),  # the loader's own base-seed draw must not touch the global RNG
    )
    optimizer = make_optimizer(objective, cfg.train)
    # The scheduler is stepped by fit() once per optimizer step, so it is not handed to accelerate.
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)
    steps = total_steps(cfg.train, len(loader))
    scheduler = make_schedule(optimizer, cfg.train, steps)
    state = TrainState()
    if resume_from:
        state = load_checkpoint(accelerator, resume_from, optimizer, scheduler)

    pair = meta["objective"] if meta["objective"] in ("nsp", "sop") else None
    if accelerator.is_main_process:
        save_config(cfg, out_dir)
        if resume_from:
            _trim_metrics(out_dir / METRICS_FILE, state.step)
            print(f"resuming from {resume_from} at step {state.step}")
        else:
            (out_dir / METRICS_FILE).unlink(missing_ok=True)
        what = f"MLM+{pair.upper()}" if pair else "MLM"
        print(
            f"pretraining ({what}) a {model.config.num_hidden_layers}-layer BERT (H={model.config.hidden_size}, "
            f"{parameter_count(model) / 1e6:.1f}M parameters) for {steps} steps on {len(splits['train'])} "
            f"examples, {accelerator.num_processes} process(es) on {accelerator.device}"
        )
    accelerator.init_trackers("tensorboard", config={"steps": steps, "lr": cfg.train.lr, "batch": cfg.train.batch_size})

    def evaluate(state: TrainState) -> dict:
        return evaluate_pretraining(
            accelerator,
            objective,
            splits["validation"],
            tokenizer,
            cfg.masking,
            cfg.eval.batch_size,
            cfg.eval.seed,
            pair,
        )

    def save(state: TrainState) -> None:
        save_checkpoint(
            accelerator,
            out_dir / "checkpoints",
            state,
            accelerator.unwrap_model(objective).model,
            tokenizer,
            optimizer,
            scheduler,
            cfg.train.keep_last,
        )

    state = fit(
        accelerator,
        objective,
        optimizer,
        scheduler,
        loader,
        cfg.train,
        steps,
        state=state,
        evaluate=evaluate if "validation" in splits else None,
        save=save,
        log_file=out_dir / METRICS_FILE,
        desc="pretrain",
    )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.is_main_process:
        # Into a temporary sibling, then renamed: checkpoints/, metrics and TensorBoard logs are carried over.
        final = accelerator.unwrap_model(objective).model
        save_model(final, tokenizer, out_dir, cfg, keep=("checkpoints", METRICS_FILE, "tensorboard"))
        plot = plot_curves(out_dir / METRICS_FILE, out_dir / "curves.png", f"pretraining, {what}")
        print(f"model: {out_dir} (loads with BertForPreTraining / BertForMaskedLM / BertModel.from_pretrained)")
        if plot:
            print(f"curves: {plot}")
        if state.stopped_early:
            print(f"stopped at step {state.step} of {steps}; continue with train.resume=auto")
    return out_dir
