"""The peer at equal wall-clock: run_mlm-style MLM pretraining in the Hugging Face Trainer.

What a user would pick instead of `bertkit pretrain`: BertForMaskedLM with transformers' own initialisation,
DataCollatorForLanguageModeling (15% of tokens, 80/10/10), the Trainer with its fused AdamW, bf16 and a linear
schedule — given bertkit's model shape, data (the same tokenized Arrow examples) and hyperparameters (peak LR,
warm-up share, weight decay, batch size), so that only the machinery differs. The Trainer has no time budget:
as a user would, we time a few steps first and set max_steps so that the schedule ends with the budget; a
callback stops it at the budget in any case.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def trainer_pretrain(
    dataset_dir: Path,
    model_dir: Path,
    out: Path,
    minutes: float,
    lr: float,
    warmup_ratio: float,
    weight_decay: float,
    batch_size: int,
    seed: int = 42,
) -> dict:
    """Pretrain a BERT shaped as `model_dir`'s (a bertkit model dir: config and tokenizer) on `dataset_dir`'s
    train split for `minutes`; saves model and tokenizer to `out`. Returns {"steps", "seconds"}."""
    from datasets import load_from_disk
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train = load_from_disk(str(dataset_dir))["train"].select_columns(["input_ids", "token_type_ids"])
    config = BertConfig.from_pretrained(model_dir)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    budget = minutes * 60

    class Budget(TrainerCallback):
        def __init__(self, seconds: float):
            self.seconds = seconds
            self.start = None
            self.times = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())
            if self.times[-1] - self.start >= self.seconds:
                control.should_training_stop = True

    def run(max_steps: int, seconds: float, directory: Path) -> tuple[Trainer, Budget]:
        args = TrainingArguments(
            output_dir=str(directory),
            max_steps=max_steps,
            per_device_train_batch_size=batch_size,
            learning_rate=lr,
            warmup_steps=warmup_ratio,
            weight_decay=weight_decay,
            bf16=True,
            use_cpu=True,
            seed=seed,
            save_strategy="no",
            logging_steps=100,
            disable_tqdm=True,
            report_to="none",
        )
        callback = Budget(seconds)
        trainer = Trainer(
            model=BertForMaskedLM(config),
            args=args,
            train_dataset=train,
            data_collator=collator,
            callbacks=[callback],
        )
        trainer.train()
        return trainer, callback

    with tempfile.TemporaryDirectory() as scratch:  # the Trainer's output_dir: it saves nothing there
        _, probe = run(60, float("inf"), Path(scratch))  # steps 20..60: the steady state
        steps_per_second = 40 / (probe.times[59] - probe.times[19])
        trainer, callback = run(int(budget * steps_per_second), budget, Path(scratch))
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    return {"steps": len(callback.times), "seconds": round(callback.times[-1] - callback.start, 1)}
