"""`bertkit pretrain`: masked-LM + next-sentence-prediction pretraining, wired into fit().

out_dir = run_pretrain(load_recipe("recipes/demo-zh.yaml", ["train.max_steps=50"]))
BertForMaskedLM.from_pretrained(out_dir)   # or BertForPreTraining, BertModel, pipeline("fill-mask")
"""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from bertkit.checkpoint import save_checkpoint, save_model
from bertkit.config import RunConfig, save_config
from bertkit.data.masking import PretrainingCollator
from bertkit.errors import BertkitError
from bertkit.evaluate import evaluate_pretraining
from bertkit.loop import fit, linear_schedule, make_optimizer, total_steps
from bertkit.model import PretrainingObjective, build_pretraining_model, parameter_count, quiet_transformers
from bertkit.prepare import TOKENIZER_SUBDIR, load_pretraining_data
from bertkit.tokenizer.train import load_tokenizer


def run_pretrain(cfg: RunConfig) -> Path:
    """Pretrain on `cfg.dataset_dir`; the final model goes to `<output_dir>/pretrain`."""
    quiet_transformers()
    splits, meta = load_pretraining_data(cfg.dataset_dir)
    tokenizer = load_tokenizer(cfg.dataset_dir / TOKENIZER_SUBDIR)
    accelerator = Accelerator(mixed_precision=cfg.train.precision, gradient_accumulation_steps=cfg.train.grad_accum)
    set_seed(cfg.train.seed)
    model = build_pretraining_model(cfg.model, tokenizer)
    if meta["max_seq_length"] > model.config.max_position_embeddings:
        raise BertkitError(
            f"{cfg.dataset_dir}: examples of {meta['max_seq_length']} tokens exceed the model's "
            f"{model.config.max_position_embeddings} positions; raise model.max_position_embeddings "
            "or tokenize with a smaller data.max_seq_length"
        )
    objective = PretrainingObjective(model)
    loader = DataLoader(
        splits["train"],
        batch_size=cfg.train.batch_size,
        shuffle=True,
        collate_fn=PretrainingCollator(tokenizer, cfg.masking),
    )
    steps = total_steps(cfg.train, len(loader))
    optimizer = make_optimizer(objective, cfg.train)
    scheduler = linear_schedule(optimizer, round(cfg.train.warmup_ratio * steps), steps)
    # The scheduler is stepped by fit() once per optimizer step, so it is not handed to accelerate.
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)

    out_dir = cfg.pretrain_dir
    if accelerator.is_main_process:
        save_config(cfg, out_dir)
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
        print(
            f"pretraining a {model.config.num_hidden_layers}-layer BERT (H={model.config.hidden_size}, "
            f"{parameter_count(model) / 1e6:.1f}M parameters) for {steps} steps on "
            f"{len(splits['train'])} examples, {accelerator.num_processes} process(es) on {accelerator.device}"
        )

    def evaluate(step: int) -> dict:
        return evaluate_pretraining(
            accelerator, objective, splits["validation"], tokenizer, cfg.masking, cfg.eval.batch_size, cfg.eval.seed
        )

    def save(step: int) -> None:
        if accelerator.is_main_process:
            save_checkpoint(
                out_dir / "checkpoints",
                step,
                accelerator.unwrap_model(objective).model,
                tokenizer,
                optimizer,
                scheduler,
                cfg.train.keep_last,
            )

    fit(
        accelerator,
        objective,
        optimizer,
        scheduler,
        loader,
        cfg.train,
        steps,
        evaluate=evaluate if "validation" in splits else None,
        save=save,
        log_file=out_dir / "metrics.jsonl",
        desc="pretrain",
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # Into a temporary sibling, then renamed: checkpoints/ and metrics.jsonl are carried over.
        final = accelerator.unwrap_model(objective).model
        save_model(final, tokenizer, out_dir, cfg, keep=("checkpoints", "metrics.jsonl"))
        print(f"model: {out_dir} (loads with BertForPreTraining / BertForMaskedLM / BertModel.from_pretrained)")
    return out_dir
