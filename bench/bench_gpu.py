"""GPU pretraining step, BERT-base, bf16: stock Hugging Face (SDPA, padded) against bertkit (padded, packed).

Run by bench/gpu.sh on a machine with a CUDA GPU; written before one was lent, so not yet measured. Sequence
lengths 128 and 512 (batch 64 and 16), real lengths uniform in [len/2, len], 15% masked, NSP labels.
  stock          BertForPreTraining(labels=…), SDPA (flash / memory-efficient kernels: no mask beyond padding),
                 fused AdamW, bf16 autocast;
  bertkit        PretrainingObjective (MLM head on masked positions only), fused AdamW, bf16 autocast, padded
                 rows (SDPA as stock);
  bertkit-mask   the same on rows packed end to end with a block-diagonal mask, which keeps SDPA off its
                 flash kernel;
  bertkit-varlen the same packed into one row, attention within each sequence through SDPA on nested
                 tensors (flash / memory-efficient kernels): what `train.packed_attention=auto` picks on a GPU.
MFU = model FLOPs (bench_train.py's count: useful work only) ÷ the bf16 peak of an 8192³ matmul timed here.
Ends with `gpu_tok_s_128=… gpu_mfu_128=… gpu_tok_s_512=… gpu_mfu_512=…` (bertkit-varlen: what pretrain runs).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import StubTokenizer, example, model_flops  # noqa: E402

VOCAB = 30522
SHAPES = {128: 64, 512: 16}  # sequence length → batch


def examples(length: int, batch: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [example(rng, rng.randint(length // 2, length), seed * batch + i, VOCAB) for i in range(batch)]


def peak() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (time.perf_counter() - start)


def run(variant: str, length: int, steps: int, warmup: int) -> dict:
    from transformers import BertConfig, BertForPreTraining

    from bertkit.config.sections import MaskingConfig, TrainConfig
    from bertkit.data.masking import PretrainingCollator
    from bertkit.data.packing import pack_batch
    from bertkit.modeling.dropout import use_fast_dropout
    from bertkit.modeling.model import PretrainingObjective
    from bertkit.training.optim import make_optimizer

    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, max_position_embeddings=512, attn_implementation="sdpa")
    model = BertForPreTraining(config).cuda().train()

    collate = PretrainingCollator(StubTokenizer(VOCAB), MaskingConfig())
    batches = [collate(examples(length, SHAPES[length], seed)) for seed in range(4)]
    if variant == "stock":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        step_model = model
    else:
        optimizer = make_optimizer(model, TrainConfig(lr=1e-4))
        step_model = PretrainingObjective(use_fast_dropout(model))  # bertkit's attention: SDPA or varlen
    if variant in ("bertkit-mask", "bertkit-varlen"):
        batches = [pack_batch(b, length, varlen=variant == "bertkit-varlen") for b in batches]
    flops = [model_flops(collate(examples(length, SHAPES[length], s)), 768, 12, VOCAB) for s in range(4)]
    tokens = [sum(len(e["input_ids"]) for e in examples(length, SHAPES[length], s)) for s in range(4)]
    elapsed = done_flops = done_tokens = 0.0
    for i in range(warmup + steps):
        batch = {k: v.cuda(non_blocking=True) if torch.is_tensor(v) else v for k, v in batches[i % 4].items()}
        batch.pop("num_tokens", None)
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = step_model(**batch)
        loss = out["loss"] if isinstance(out, dict) else out.loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= warmup:
            elapsed += time.perf_counter() - start
            done_flops += flops[i % 4]
            done_tokens += tokens[i % 4]
    return {"tokens_per_s": done_tokens / elapsed, "flop_s": done_flops / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU")
    bf16_peak = peak()
    print(f"{torch.cuda.get_device_name()}: bf16 matmul peak {bf16_peak / 1e12:.0f} TFLOP/s")
    print(f"{'seq':>5} {'variant':>15} {'tokens/s':>12} {'TFLOP/s':>9} {'MFU':>6}")
    summary = {}
    for length in SHAPES:
        for variant in ("stock", "bertkit", "bertkit-mask", "bertkit-varlen"):
            r = run(variant, length, args.steps, args.warmup)
            mfu = r["flop_s"] / bf16_peak
            print(f"{length:>5} {variant:>15} {r['tokens_per_s']:>12,.0f} {r['flop_s'] / 1e12:>9.1f} {mfu:>6.3f}")
            if variant == "bertkit-varlen":
                summary[length] = (r["tokens_per_s"], mfu)
    print(" ".join(f"gpu_tok_s_{n}={t:.0f} gpu_mfu_{n}={m:.3f}" for n, (t, m) in summary.items()))


if __name__ == "__main__":
    main()
