"""`bertkit eval`: metrics of a pretrained or fine-tuned model, as a table, report.json and predictions.

    report = run_eval(load_recipe("recipes/demo-zh.yaml", ["eval.model_dir=runs/demo-zh/pretrain"]))

A BertForPreTraining is scored on masked-LM and NSP/SOP prediction over held-out pretraining data (a
BertForMaskedLM, as the Hugging Face Trainer's run_mlm saves, on masked-LM only; an ELECTRA output on its
generator's masked LM and its discriminator's replaced-token detection); any other
model by the recipe's task family (bertkit/tasks/) on a labelled file — or, for a file without gold labels,
only its predictions are written. A labelled file other than the dev file puts its scores into the fine-tuned
model's card as its test scores (training/model_card.add_test_scores: only a card bertkit wrote and nobody edited).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator
from transformers import BertForPreTraining, PreTrainedTokenizerBase

from bertkit.atomic import atomic_dir, check_apart, check_output, write_text
from bertkit.config import EvalRecipe, save_config
from bertkit.config.sections import ModelConfig
from bertkit.errors import BertkitError
from bertkit.metrics import format_table
from bertkit.modeling.electra import GENERATOR_SUBDIR, electra_objective, is_electra
from bertkit.modeling.model import (
    PretrainingObjective,
    check_fits,
    check_model_dir,
    check_vocabulary,
    load_model,
    model_architectures,
    quiet_transformers,
)
from bertkit.tasks import get_task
from bertkit.tasks.common import check_gold
from bertkit.tasks.models import load_finetuned
from bertkit.tokenizer.train import load_tokenizer
from bertkit.training.model_card import README, add_test_scores, scalar_scores
from bertkit.training.runtime import make_accelerator, run_state

REPORT_FILE = "report.json"
PREDICTIONS_FILE = "predictions.jsonl"
CONFUSION_FILE = "confusion.png"


def eval_task(model, tokenizer, cfg: EvalRecipe, path: Path, out_dir: Path, precision: str) -> dict:
    """Metrics of a fine-tuned model on a file (predictions only when it has no gold labels)."""
    task_cfg = cfg.finetune.task
    task = get_task(task_cfg.type)
    examples = task.read(path, task_cfg)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if task.has_labels else None
    if labels:
        check_gold(examples, labels, path)
    start = time.perf_counter()
    metrics, predictions = task.evaluate(model, tokenizer, examples, labels, task_cfg, cfg.eval.batch_size)
    seconds = time.perf_counter() - start
    lines = [json.dumps(p, ensure_ascii=False) for p in predictions]
    write_text(out_dir / PREDICTIONS_FILE, "\n".join(lines) + "\n")
    speed = {
        "seconds": round(seconds, 3),
        "examples_per_s": round(len(examples) / max(seconds, 1e-9), 1),
        "precision": "fp32" if precision == "no" else precision,  # what ran (eval.precision=auto resolved)
    }
    rate = f"{speed['examples_per_s']:,.0f}/s, {speed['precision']}"
    print(f"predicted {len(examples)} examples in {seconds:.1f} s ({rate})")
    report = {"task": task_cfg.type, "examples": len(examples), **(metrics or {}), "speed": speed}
    if metrics and task.confusion_matrix and len(labels) <= 50:
        gold = [e["label"] for e in examples]
        from bertkit.plots import plot_confusion  # matplotlib: imported only to draw (~1 s)

        plot_confusion([p["prediction"] for p in predictions], gold, labels, out_dir / CONFUSION_FILE)
    return report


def _pretraining_report(cfg: EvalRecipe, model_dir: Path, tokenizer, accelerator, pair_head: bool) -> tuple[dict, str]:
    """MLM scores, and NSP/SOP scores when the model has that head (`pair_head`), on a split of a pretraining
    dataset; (report, data)."""
    # datasets (~1 s of start-up) only for a pretrained model's data
    from bertkit.data.dataset import TOKENIZER_SUBDIR, load_pretraining_data, pair_objective
    from bertkit.evaluation.pretraining import evaluate_pretraining, held_out_masking

    dataset_dir = cfg.eval.file or cfg.dataset_dir
    splits, meta = load_pretraining_data(dataset_dir)
    if cfg.eval.split not in splits:
        raise BertkitError(f"{dataset_dir}: no split '{cfg.eval.split}' (have {', '.join(splits)}); set eval.split")
    if is_electra(model_dir):
        electra = ModelConfig(objective="electra")
        objective = electra_objective(electra, tokenizer, cfg.allow_pickle_weights, restore=model_dir)
        model = objective.discriminator
    else:
        model = load_model(BertForPreTraining, model_dir, cfg.allow_pickle_weights)
        objective = PretrainingObjective(model)
    check_vocabulary(model, load_tokenizer(Path(dataset_dir) / TOKENIZER_SUBDIR), model_dir)  # the data's ids
    check_fits(model, tokenizer, model_dir, meta["max_seq_length"], "data.max_seq_length")
    objective = accelerator.prepare(objective)
    pair = pair_objective(meta) if pair_head else None
    split = splits[cfg.eval.split]
    masking = held_out_masking(cfg.masking, cfg.eval.masking_rate)
    report = evaluate_pretraining(
        accelerator, objective, split, tokenizer, masking, cfg.eval.batch_size, cfg.eval.seed, pair
    )
    return report, f"{dataset_dir} [{cfg.eval.split}]"


@dataclass
class Setup:
    """What set-up finds and the evaluation uses."""

    model_dir: Path
    out_dir: Path
    path: Path | None  # the file a fine-tuned model is evaluated on
    architectures: list[str]  # of model_dir's config.json
    tokenizer: PreTrainedTokenizerBase
    accelerator: Accelerator


def run_eval(cfg: EvalRecipe) -> dict:
    """Evaluate `eval.model_dir` (default: this recipe's fine-tuned model) and write the report."""
    run = setup(cfg)
    # Report, predictions and config are written into a temporary sibling that replaces out_dir as a whole; the
    # model runs in eval.precision (bf16 autocast, or auto).
    with atomic_dir(run.out_dir) as tmp, run.accelerator.autocast():
        report = evaluate(cfg, run, tmp)
        write_text(tmp / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        save_config(cfg, tmp, run_state(run.accelerator))
    finish(run, report)
    update_card(cfg, run, report)
    return report


def setup(cfg: EvalRecipe) -> Setup:
    """The model dir and the file, the output dir (checked), the tokenizer and the accelerator."""
    quiet_transformers()
    model_dir = check_model_dir(cfg.eval.model_dir or cfg.finetune_dir)
    out_dir = cfg.eval.output_dir or cfg.output_dir / "eval" / model_dir.resolve().name
    path = cfg.eval.file or cfg.finetune.task.test_file or cfg.finetune.task.validation_file
    check_apart({"eval.output_dir": out_dir}, {"eval.model_dir": model_dir, "eval file": path})
    check_output(out_dir, "eval.output_dir", cfg.overwrite)
    return Setup(
        model_dir=model_dir,
        out_dir=out_dir,
        path=path,
        architectures=model_architectures(model_dir),
        tokenizer=load_tokenizer(model_dir),
        accelerator=make_accelerator(cfg.eval.precision, "eval.precision"),
    )


def is_pretrained(run: Setup) -> bool:
    """A pretraining model (scored on MLM/NSP, or ELECTRA's objective), not a fine-tuned one."""
    return bool({"BertForPreTraining", "BertForMaskedLM"} & set(run.architectures)) or is_electra(run.model_dir)


def evaluate(cfg: EvalRecipe, run: Setup, out_dir: Path) -> dict:
    """The report: a pretrained model's scores on its data, or a fine-tuned one's on the file (its predictions
    written into `out_dir`)."""
    if is_pretrained(run):
        pair_head = "BertForPreTraining" in run.architectures
        report, data = _pretraining_report(cfg, run.model_dir, run.tokenizer, run.accelerator, pair_head)
    elif run.architectures == ["BertModel"]:
        raise BertkitError(
            f"{run.model_dir}: a BertModel, an encoder without a head, so there is nothing to score: fine-tune it "
            f"first (bertkit finetune finetune.model_dir={run.model_dir}); an ELECTRA pretrain dir is scored on its "
            f"objective only with its {GENERATOR_SUBDIR}/ beside it"
        )
    else:
        report, data = _task_report(cfg, run, out_dir)
    return {"model": str(run.model_dir), "data": data, **report}


def _task_report(cfg: EvalRecipe, run: Setup, out_dir: Path) -> tuple[dict, str]:
    """The fine-tuned model's metrics on the file by the recipe's task family, its predictions written into
    `out_dir`; (report, data)."""
    if run.path is None:
        raise BertkitError("no file to evaluate on; set eval.file (or finetune.task.test_file)")
    task = get_task(cfg.finetune.task.type)
    model = load_finetuned(cfg, task, run.model_dir, run.architectures).to(run.accelerator.device)
    check_fits(model, run.tokenizer, run.model_dir, cfg.finetune.task.max_seq_length, "finetune.task.max_seq_length")
    report = eval_task(model, run.tokenizer, cfg, Path(run.path), out_dir, run.accelerator.mixed_precision)
    return report, str(run.path)


def finish(run: Setup, report: dict) -> None:
    """The report as a table, and where it and the predictions are."""
    print(f"\n{run.model_dir} on {report['data']}\n")
    print(format_table(report))
    print(f"\nreport: {run.out_dir / REPORT_FILE}")
    if (run.out_dir / PREDICTIONS_FILE).exists():
        print(f"predictions: {run.out_dir / PREDICTIONS_FILE}")


def update_card(cfg: EvalRecipe, run: Setup, report: dict) -> None:
    """A fine-tuned model's card gets the scores of a labelled file other than its dev file (whose scores it has)
    as its test scores, when the card is bertkit's and unedited; else one line says why not."""
    dev = cfg.finetune.task.validation_file
    if is_pretrained(run) or run.path is None or not scalar_scores(report):
        return
    if dev is not None and Path(dev).resolve() == Path(run.path).resolve():
        return
    kept = add_test_scores(run.model_dir, str(run.path), report)
    card = run.model_dir / README
    if kept:
        print(f"{card}: {kept}; left as it is, without the test scores", file=sys.stderr)
    elif card.is_file():
        print(f"model card: {card} (with these test scores)")
