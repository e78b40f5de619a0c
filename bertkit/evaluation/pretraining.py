"""Scoring a pretraining model on held-out examples: MLM accuracy and perplexity, NSP or SOP accuracy.

    metrics = evaluate_pretraining(accelerator, objective, splits["validation"], tokenizer, cfg.masking,
                                   batch_size=64, seed=0, pair="nsp")

Called by `bertkit pretrain` at every evaluation and by `bertkit eval` on a pretraining model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from bertkit.config.sections import MaskingConfig
from bertkit.data.loader import EpochSampler, KeyedDataset
from bertkit.data.masking import PretrainingCollator
from bertkit.data.padding import IGNORE_INDEX
from bertkit.metrics import pretraining_metrics
from bertkit.progress import progress


@torch.no_grad()
def evaluate_pretraining(
    accelerator: Accelerator,
    objective: torch.nn.Module,
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    masking: MaskingConfig,
    batch_size: int,
    seed: int,
    pair: str | None,
) -> dict:
    """MLM accuracy/perplexity, and NSP or SOP accuracy (`pair`; None: MLM only, for a model without that head),
    with every example's masks drawn from (seed, index): each call scores the same corrupted inputs, whatever
    the batch size or process count."""
    loader = DataLoader(
        KeyedDataset(dataset, seed),
        batch_size=batch_size,
        sampler=EpochSampler(len(dataset), seed, shuffle=False),
        collate_fn=PretrainingCollator(tokenizer, masking),
    )
    loader = accelerator.prepare(loader)
    objective.eval()
    totals = torch.zeros(5, dtype=torch.float64, device=accelerator.device)  # loss sum, correct, count, pair ok, n
    for batch in progress(loader, desc="eval", leave=False, disable=not accelerator.is_main_process):
        if pair is None:
            batch.pop("next_sentence_label", None)
        out = objective(**batch)
        # Per-example sums, so that gather_for_metrics can drop the examples that data parallelism repeats to
        # give every process full batches.
        rows = (batch["labels"] != IGNORE_INDEX).nonzero()[:, 0]
        per = torch.zeros(len(batch["labels"]), 5, dtype=torch.float64, device=accelerator.device)
        token_loss = F.cross_entropy(out["mlm_logits"].float(), out["mlm_labels"], reduction="none")
        per[:, 0].index_add_(0, rows, token_loss.double())
        per[:, 1].index_add_(0, rows, (out["mlm_logits"].argmax(-1) == out["mlm_labels"]).double())
        per[:, 2].index_add_(0, rows, torch.ones_like(token_loss, dtype=torch.float64))
        if "nsp_logits" in out:
            per[:, 3] = (out["nsp_logits"].argmax(-1) == out["nsp_labels"]).double()
            per[:, 4] = 1
        totals += accelerator.gather_for_metrics(per).sum(0)
    loss_sum, correct, count, pair_correct, pair_count = totals.tolist()
    return pretraining_metrics(loss_sum, int(correct), int(count), int(pair_correct), int(pair_count), pair or "nsp")
