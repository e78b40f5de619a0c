"""`make bench-compile`: does torch.compile make bertkit's pretraining step faster on this CPU?

bertkit's step as it runs (bench_train.py's "bertkit" variant: BERT-mini, batch 32, real lengths uniform in
32..128, packed rows with block-diagonal attention, its dropout, allocator and fused AdamW) against the same
step with each encoder layer compiled (regional compilation: inductor fuses the bias adds, GELU, dropout,
residual and LayerNorm around the matmuls, which stay library calls). Packed batches have a different number of
rows every batch, which makes compiled code recompile or go dynamic; so the step is also timed with the rows
padded to a fixed count (the most any batch here needs), one shape for every batch, eager and compiled:
  eager                 bertkit's step as it is (rows vary)
  compiled              each layer compiled; shapes dynamic after the first change
  fixed eager           rows padded to a fixed count
  fixed compiled        the same, compiled with static shapes (bertkit's dropout breaks the graph: its random
                        bits come from an op dynamo does not trace)
  fixed compiled, torch dropout   torch's dropout, whose random numbers inductor generates inside its kernels
Each variant runs in its own process, bf16 autocast and fp32; s/step over the steps after a warm-up that covers
every compile (compile time reported apart). "vs eager" compares at the same shapes (fixed with fixed).
Writes bench/results-compile.json (--out). Ends with `compile_bf16=X compile_fp32=Y` (fixed eager s/step ÷ fixed
compiled s/step, the better of the two dropouts: above 1 only if compiling pays) and `cpu=`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_infer import cpu_name  # noqa: E402
from bench_train import BATCH, MAX_LEN, SEED, StubTokenizer, bert_config, make_examples, run_worker  # noqa: E402

VARIANTS = ["eager", "compiled", "fixed-eager", "fixed-compiled", "fixed-compiled-torch-dropout"]


def worker(variant: str, precision: str, steps: int, warmup: int) -> dict:
    import torch
    from transformers import BertForPreTraining
    from transformers import logging as hf_logging

    from bertkit.config.sections import MaskingConfig, TrainConfig
    from bertkit.data.masking import PretrainingCollator
    from bertkit.modeling.dropout import use_fast_dropout
    from bertkit.modeling.model import PretrainingObjective
    from bertkit.training.optim import make_optimizer
    from bertkit.training.runtime import tune_allocator

    hf_logging.set_verbosity_error()
    tune_allocator()
    torch.manual_seed(SEED)
    model = BertForPreTraining(bert_config("mini")).train()

    collate = PretrainingCollator(StubTokenizer(), MaskingConfig(), pack_to=MAX_LEN)
    batches = [collate(b) for b in make_examples(6)]
    if variant.startswith("fixed"):
        rows = max(len(b["input_ids"]) for b in batches)
        batches = [fixed_rows(b, rows) for b in batches]
    if not variant.endswith("torch-dropout"):
        use_fast_dropout(model)
    if "compiled" in variant:
        for layer in model.bert.encoder.layer:
            layer.compile(dynamic=False if variant.startswith("fixed") else None)
    run = PretrainingObjective(model)
    optimizer = make_optimizer(model, TrainConfig(lr=1e-4))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        batch = dict(batches[i % len(batches)])
        batch.pop("num_tokens")
        with autocast:
            loss = run(**batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {
        "variant": variant,
        "precision": precision,
        "s_per_step": sum(times[warmup:]) / steps,
        "warmup_s": sum(times[:warmup]),
        "rows": [len(b["input_ids"]) for b in batches],
    }


def fixed_rows(batch: dict, rows: int) -> dict:
    """A packed batch padded to `rows` rows of MAX_LEN tokens; padding attends only to itself."""
    import torch
    import torch.nn.functional as F

    extra_rows, extra_cols = rows - len(batch["input_ids"]), MAX_LEN - batch["input_ids"].shape[1]
    out = dict(batch)
    for name, fill in (("input_ids", 0), ("token_type_ids", 0), ("position_ids", 0), ("labels", -100)):
        out[name] = F.pad(batch[name], (0, extra_cols, 0, extra_rows), value=fill)
    mask = F.pad(batch["attention_mask"], (0, extra_cols, 0, extra_cols, 0, 0, 0, extra_rows), value=False)
    diagonal = torch.arange(MAX_LEN)
    mask[..., diagonal, diagonal] = True  # real tokens already see themselves; padding must see something
    out["attention_mask"] = mask
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs="*")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results-compile.json", help="the JSON report"
    )
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(*args.worker, args.steps, args.warmup)))
        return
    machine = cpu_name()
    rows = [
        run_worker(v, p, "--steps", str(args.steps), "--warmup", str(args.warmup), script=__file__)
        for p in ("bf16", "fp32")
        for v in VARIANTS
    ]
    print(f"\ntorch.compile of the pretraining step, BERT-mini, batch {BATCH}, lengths 32..{MAX_LEN}; {machine}")
    print(f"rows per batch: packed {rows[0]['rows']}, fixed {rows[2]['rows'][0]}\n")
    print("| precision | variant | s/step | vs eager | warm-up s (incl. compiling) |")
    print("| --- | --- | --- | --- | --- |")
    summary = {}
    for r in rows:
        eager_name = "fixed-eager" if r["variant"].startswith("fixed") else "eager"
        eager = next(e for e in rows if e["precision"] == r["precision"] and e["variant"] == eager_name)
        r["speedup"] = eager["s_per_step"] / r["s_per_step"]
        if r["variant"].startswith("fixed-compiled"):
            summary[r["precision"]] = max(summary.get(r["precision"], 0.0), r["speedup"])
        print(
            f"| {r['precision']} | {r['variant']} | {r['s_per_step']:.3f} | {r['speedup']:.2f} | {r['warmup_s']:.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    amx = "no-AMX" if "no AMX" in machine else "AMX"
    print(f"\ncompile_bf16={summary['bf16']:.2f} compile_fp32={summary['fp32']:.2f} cpu={amx}")


if __name__ == "__main__":
    main()
