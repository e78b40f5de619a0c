"""Scoring a pretraining model on held-out examples: MLM accuracy and perplexity, NSP or SOP accuracy, and for
ELECTRA the discriminator's replaced-token detection (rtd_accuracy, rtd_f1, …) beside its generator's MLM scores.

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
from bertkit.metrics import pretraining_metrics, rtd_metrics
from bertkit.progress import progress


def held_out_masking(masking: MaskingConfig, rate: float | None) -> MaskingConfig:
    """The masking of held-out scores: training's, at `rate` (eval.masking_rate) when set."""
    return masking if rate is None else masking.model_copy(update={"rate": rate})


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
    the batch size or process count. ELECTRA's generator samples from torch's RNG seeded by `seed` and the batch's
    index, in a fork of it: training's own random stream is left as it was."""
    loader = DataLoader(
        KeyedDataset(dataset, seed),
        batch_size=batch_size,
        sampler=EpochSampler(len(dataset), seed, shuffle=False),
        collate_fn=PretrainingCollator(tokenizer, masking),
    )
    loader = accelerator.prepare(loader)
    objective.eval()
    # Columns: MLM loss sum, correct, count; pair correct, count; RTD (ELECTRA) loss sum, correct, tokens,
    # replaced, flagged, caught.
    totals = torch.zeros(11, dtype=torch.float64, device=accelerator.device)
    device = accelerator.device
    for i, batch in enumerate(progress(loader, desc="eval", leave=False, disable=not accelerator.is_main_process)):
        if pair is None:
            batch.pop("next_sentence_label", None)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + i)  # ELECTRA's samples: the same at every evaluation
            out = objective(**batch)
        totals += accelerator.gather_for_metrics(_per_example(out, batch["labels"])).sum(0)
    loss_sum, correct, count, pair_correct, pair_count, *rtd = totals.tolist()
    metrics = pretraining_metrics(loss_sum, int(correct), int(count), int(pair_correct), int(pair_count), pair or "nsp")
    return metrics | (rtd_metrics(rtd[0], *map(int, rtd[1:])) if rtd[2] else {})


def _per_example(out: dict, labels: torch.Tensor) -> torch.Tensor:
    """The batch's sums per example (B, 11), so that gather_for_metrics can drop the examples that data
    parallelism repeats to give every process full batches."""
    per = torch.zeros(len(labels), 11, dtype=torch.float64, device=labels.device)
    rows = (labels != IGNORE_INDEX).nonzero()[:, 0]
    token_loss = F.cross_entropy(out["mlm_logits"].float(), out["mlm_labels"], reduction="none")
    per[:, 0].index_add_(0, rows, token_loss.double())
    per[:, 1].index_add_(0, rows, (out["mlm_logits"].argmax(-1) == out["mlm_labels"]).double())
    per[:, 2].index_add_(0, rows, torch.ones_like(token_loss, dtype=torch.float64))
    if "nsp_logits" in out:
        per[:, 3] = (out["nsp_logits"].argmax(-1) == out["nsp_labels"]).double()
        per[:, 4] = 1
    if "rtd_logits" in out:
        rows = out["rtd_mask"].nonzero()[:, 0]  # an unpacked batch: the mask's rows are the examples
        gold, flagged = out["rtd_labels"], out["rtd_logits"] > 0
        bce = F.binary_cross_entropy_with_logits(out["rtd_logits"].float(), gold.float(), reduction="none")
        for column, value in enumerate((bce, flagged == gold, torch.ones_like(gold), gold, flagged, flagged & gold)):
            per[:, 5 + column].index_add_(0, rows, value.double())
    return per
