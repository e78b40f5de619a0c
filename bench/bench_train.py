"""`make bench`: bertkit's pretraining and fine-tuning steps against stock Hugging Face, same models and data.

Stock: BertForPreTraining(labels=…) with SDPA attention, every example padded to 128, torch's AdamW, glibc's
allocator as it comes; at fp32 and with bf16 autocast (what `Trainer --bf16` does). bertkit: the same weights
and the same masked batches through PretrainingObjective (MLM head on the masked positions only), sequences
packed into full rows (block-diagonal attention), the allocator tuned (bertkit/training/runtime.py), bertkit's dropout
(bertkit/modeling/dropout.py), fused AdamW, at fp32 and with bf16 autocast. "vs same prec": against stock at the same
precision.
BERT-mini and BERT-small (vocabulary 21,128), batch 32, real lengths uniform in 32..128, 15% masked, NSP labels.
Each variant runs in its own process (the allocator setting is per process), timing collation + forward +
backward + optimizer step.

Model FLOPs count only useful work, 3× the forward (forward + backward):
    per real token 2·(4H² + 2·H·F)·L   (Q, K, V, output and the two FFN matmuls)
    per sequence of n tokens 4·n²·H·L  (QKᵀ and attention·V over its own tokens)
    per masked token 2·H² + 2·H·V       (MLM transform and decoder), per sequence 2·H² + 4·H (pooler, NSP)
MFU = model FLOP/s ÷ the matmul peak measured in the same run (2048³ torch.mm, fp32 or bf16).
"matmul s" is the time one step spends in matrix-multiply kernels alone (torch.profiler, self time of
aten::mm/addmm/bmm); "ceiling" = stock s/step ÷ that: the speedup if everything else in the step took no time.

Fine-tuning (sequence classification, BERT-mini, 2 labels, batch 32, lengths uniform in 16..128, one epoch of
12 batches, --finetune-batches): stock = BertForSequenceClassification with every input padded to 128 (run_glue's
default) in random batches, torch's AdamW; bertkit = batches grouped by length (finetune.group_by_length) and
padded to their longest, its dropout, allocator and fused AdamW.

Prints the tables, writes bench/results.json (--out), ends with
`speedup_fp32=X.XX speedup_bf16=Y.YY mfu_fp32=0.ZZ ceiling_fp32=… ceiling_bf16=… finetune_speedup_fp32=…`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"mini": (4, 256), "small": (4, 512)}
VOCAB, BATCH, MAX_LEN, SEED = 21128, 32, 128, 0
VARIANTS = ["stock-fp32", "stock-bf16", "bertkit-fp32", "bertkit-bf16"]
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm"}


class StubTokenizer:
    """What the pretraining collator needs of a tokenizer: the ids of [PAD] and [MASK], and the vocabulary size."""

    pad_token_id, mask_token_id = 0, 4

    def __init__(self, vocab: int = VOCAB):
        self.vocab = vocab

    def __len__(self):
        return self.vocab


def example(rng: random.Random, n: int, seed: int, vocab: int = VOCAB) -> dict:
    """A random NSP example of `n` tokens ([CLS] a [SEP] b [SEP]), its masks drawn from `seed`."""
    a = rng.randint(1, n - 4)
    ids = [2, *(rng.randrange(5, vocab) for _ in range(a)), 3, *(rng.randrange(5, vocab) for _ in range(n - a - 3)), 3]
    return {
        "input_ids": ids,
        "token_type_ids": [0] * (a + 2) + [1] * (n - a - 2),
        "word_ids": [-1 if t in (2, 3) else k for k, t in enumerate(ids)],
        "next_sentence_label": rng.randint(0, 1),
        "mask_seed": seed,
    }


def make_examples(n_batches: int) -> list[list[dict]]:
    rng = random.Random(SEED)
    return [[example(rng, rng.randint(32, MAX_LEN), b * BATCH + i) for i in range(BATCH)] for b in range(n_batches)]


def model_flops(batch, hidden: int, layers: int, vocab: int = VOCAB) -> float:
    """Useful FLOPs of one training step on a padded batch (formula in the module docstring)."""
    lengths = batch["attention_mask"].sum(1).tolist()
    return step_flops(lengths, (batch["labels"] != -100).sum().item(), hidden, layers, vocab)


def step_flops(lengths: list[int], masked: float, hidden: int, layers: int, vocab: int = VOCAB) -> float:
    """Useful FLOPs of forward + backward over sequences of these lengths with `masked` MLM tokens."""
    ffn = 4 * hidden
    forward = (
        sum(lengths) * 2 * (4 * hidden**2 + 2 * hidden * ffn) * layers
        + sum(4 * n**2 * hidden * layers for n in lengths)
        + masked * (2 * hidden**2 + 2 * hidden * vocab)
        + len(lengths) * (2 * hidden**2 + 4 * hidden)
    )
    return 3 * forward


def matmul_peak(dtype_name: str) -> float:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(3):
        a @ b
    best, reps = 0.0, 4
    for _ in range(5):  # the best of five: a busy neighbour slows a trial, nothing speeds one up
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * 2048**3 * reps / (time.perf_counter() - start))
    return best


def bert_config(size: str, vocab_size: int = VOCAB, **extra):
    from transformers import BertConfig

    layers, hidden = SIZES[size]
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
        attn_implementation="sdpa",
        **extra,
    )


def worker(variant: str, size: str, steps: int, warmup: int) -> dict:
    import torch
    from transformers import BertForPreTraining
    from transformers import logging as hf_logging

    from bertkit.config.sections import MaskingConfig, TrainConfig
    from bertkit.data.masking import PretrainingCollator
    from bertkit.data.packing import pack_batch
    from bertkit.modeling.dropout import use_fast_dropout
    from bertkit.modeling.model import PretrainingObjective
    from bertkit.training.optim import make_optimizer
    from bertkit.training.runtime import tune_allocator

    hf_logging.set_verbosity_error()
    stock = variant.startswith("stock")
    if not stock:
        tune_allocator()
    layers, hidden = SIZES[size]
    torch.manual_seed(SEED)
    model = BertForPreTraining(bert_config(size)).train()

    collate = PretrainingCollator(StubTokenizer(), MaskingConfig())
    if stock:

        def step_inputs(examples):
            batch = collate(examples)
            pad = MAX_LEN - batch["input_ids"].shape[1]  # fixed padding to 128, as the stock recipe
            fills = {"input_ids": 0, "token_type_ids": 0, "attention_mask": 0, "labels": -100}
            for k, fill in fills.items():
                batch[k] = torch.nn.functional.pad(batch[k], (0, pad), value=fill)
            return batch

        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        run = model
    else:

        def step_inputs(examples):
            packed = pack_batch(collate(examples), MAX_LEN)
            packed.pop("num_tokens")
            return packed

        run = PretrainingObjective(use_fast_dropout(model))
        optimizer = make_optimizer(model, TrainConfig(lr=1e-4))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.endswith("bf16"))
    batches = make_examples(3)
    flops = [model_flops(collate(b), hidden, layers) for b in batches]
    tokens = [sum(len(e["input_ids"]) for e in b) for b in batches]
    elapsed, done_flops, done_tokens, losses = 0.0, 0.0, 0, []

    def one_step(i: int) -> torch.Tensor:
        inputs = step_inputs(batches[i % len(batches)])
        with autocast:
            out = run(**inputs)
        loss = out["loss"] if isinstance(out, dict) else out.loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = one_step(i)
        if i >= warmup:
            elapsed += time.perf_counter() - start
            done_flops += flops[i % len(batches)]
            done_tokens += tokens[i % len(batches)]
            losses.append(loss.item())
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(len(batches)):
            one_step(i)
    matmul_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in MATMULS)
    return {
        "variant": variant,
        "size": size,
        "steps": steps,
        "s_per_step": elapsed / steps,
        "tokens_per_s": done_tokens / elapsed,
        "model_flop_s": done_flops / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_loss": losses[0],
        "matmul_s_per_step": matmul_us / 1e6 / len(batches),
    }


def finetune_worker(variant: str, n_batches: int = 12) -> dict:
    import torch
    from transformers import BertForSequenceClassification
    from transformers import logging as hf_logging
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from bertkit.config.sections import TrainConfig
    from bertkit.modeling.dropout import use_fast_dropout
    from bertkit.tasks.classification import collate
    from bertkit.training.optim import make_optimizer
    from bertkit.training.runtime import tune_allocator

    hf_logging.set_verbosity_error()
    stock = variant.startswith("stock")
    torch.manual_seed(SEED)
    model = BertForSequenceClassification(bert_config("mini", num_labels=2)).train()
    rng = random.Random(SEED)
    features = []
    for _ in range(n_batches * BATCH):
        n = rng.randint(16, MAX_LEN)
        ids = [2, *(rng.randrange(5, VOCAB) for _ in range(n - 2)), 3]
        features.append({"input_ids": ids, "token_type_ids": [0] * n, "labels": rng.randint(0, 1)})
    generator = torch.Generator().manual_seed(SEED)
    if stock:
        order = torch.randperm(len(features), generator=generator).tolist()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    else:
        tune_allocator()
        use_fast_dropout(model)
        lengths = [len(f["input_ids"]) for f in features]
        order = list(LengthGroupedSampler(BATCH, lengths=lengths, generator=generator))
        optimizer = make_optimizer(model, TrainConfig(lr=1e-4))
    batches = [[features[i] for i in order[b : b + BATCH]] for b in range(0, len(order), BATCH)]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.endswith("bf16"))

    def one_step(examples: list[dict]) -> None:
        batch = collate(examples)
        if stock:
            pad = MAX_LEN - batch["input_ids"].shape[1]
            for k in ("input_ids", "token_type_ids", "attention_mask"):
                batch[k] = torch.nn.functional.pad(batch[k], (0, pad))
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for examples in batches[:2]:  # warm-up, not timed
        one_step(examples)
    start = time.perf_counter()
    for examples in batches:
        one_step(examples)
    elapsed = time.perf_counter() - start
    return {
        "variant": variant,
        "s_per_epoch": elapsed,
        "tokens_per_s": sum(len(f["input_ids"]) for f in features) / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_worker(*args: str, script: str = __file__) -> dict:
    """`script --worker args` in a fresh process (allocator and compile caches are per process); its last line."""
    out = subprocess.run([sys.executable, script, "--worker", *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs="*")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--sizes", nargs="*", default=list(SIZES))
    parser.add_argument("--finetune-batches", type=int, default=12, help="the fine-tuning epoch's batches")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json", help="where the JSON report goes")
    args = parser.parse_args()
    if args.worker is not None:
        kind, *rest = args.worker
        if kind == "peak":
            result = {"peak": matmul_peak(rest[0])}
        elif kind == "finetune":
            result = finetune_worker(rest[0], int(rest[1]))
        else:
            result = worker(kind, rest[0], args.steps, args.warmup)
        print(json.dumps(result))
        return
    peaks = {d: run_worker("peak", d)["peak"] for d in ("fp32", "bf16")}
    rows = [
        run_worker(v, size, "--steps", str(args.steps), "--warmup", str(args.warmup))
        for size in args.sizes
        for v in VARIANTS
    ]
    for r in rows:
        base = next(b for b in rows if b["size"] == r["size"] and b["variant"] == "stock-fp32")
        r["speedup"] = r["tokens_per_s"] / base["tokens_per_s"]
        same = next(b for b in rows if b["size"] == r["size"] and b["variant"] == "stock-" + r["variant"].split("-")[1])
        r["speedup_same_precision"] = r["tokens_per_s"] / same["tokens_per_s"]
        r["ceiling"] = base["s_per_step"] / r["matmul_s_per_step"]
        r["mfu"] = r["model_flop_s"] / peaks["bf16" if r["variant"].endswith("bf16") else "fp32"]
    print(
        f"\npretraining step, batch {BATCH}, lengths 32..{MAX_LEN}, vocab {VOCAB}, {os.cpu_count()} cores; "
        f"matmul peak fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s"
    )
    header = ["size", "variant", "s/step", "tokens/s", "speedup", "vs same prec", "GFLOP/s", "MFU", "matmul s"]
    header += ["ceiling", "peak MB"]
    print("  ".join(f"{h:>13}" for h in header))
    for r in rows:
        values = [
            r["size"],
            r["variant"],
            f"{r['s_per_step']:.3f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{r['speedup']:.2f}",
            f"{r['speedup_same_precision']:.2f}",
            f"{r['model_flop_s'] / 1e9:.1f}",
            f"{r['mfu']:.3f}",
            f"{r['matmul_s_per_step']:.3f}",
            f"{r['ceiling']:.2f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        print("  ".join(f"{v:>13}" for v in values))
    tuning = [run_worker("finetune", v, str(args.finetune_batches)) for v in VARIANTS]
    for r in tuning:
        r["speedup"] = r["tokens_per_s"] / tuning[0]["tokens_per_s"]
    print(
        f"\nfine-tuning (sequence classification), BERT-mini, batch {BATCH}, lengths 16..{MAX_LEN}, one epoch of "
        f"{args.finetune_batches} batches"
    )
    header = ["variant", "s/epoch", "tokens/s", "speedup", "peak MB"]
    print("  ".join(f"{h:>13}" for h in header))
    for r in tuning:
        values = [r["variant"], f"{r['s_per_epoch']:.2f}", f"{r['tokens_per_s']:,.0f}", f"{r['speedup']:.2f}"]
        print("  ".join(f"{v:>13}" for v in [*values, f"{r['peak_rss_mb']:.0f}"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"matmul_peak_flop_s": peaks, "rows": rows, "finetune": tuning}, indent=2) + "\n")
    tuned = {r["variant"]: r for r in tuning}
    mini = {r["variant"]: r for r in rows if r["size"] == "mini"}
    print(
        f"speedup_fp32={mini['bertkit-fp32']['speedup']:.2f} speedup_bf16={mini['bertkit-bf16']['speedup']:.2f} "
        f"mfu_fp32={mini['bertkit-fp32']['mfu']:.2f} ceiling_fp32={mini['bertkit-fp32']['ceiling']:.2f} "
        f"ceiling_bf16={mini['bertkit-bf16']['ceiling']:.2f} "
        f"finetune_speedup_fp32={tuned['bertkit-fp32']['speedup']:.2f} "
        f"finetune_speedup_bf16={tuned['bertkit-bf16']['speedup']:.2f}"
    )


if __name__ == "__main__":
    main()
