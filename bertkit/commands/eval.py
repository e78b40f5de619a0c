"""`bertkit eval`: metrics of a pretrained or fine-tuned model, as a table, report.json and predictions.

    report = run_eval(load_recipe("recipes/demo-zh.yaml", ["eval.model_dir=runs/demo-zh/pretrain"]))

A BertForPreTraining is scored on masked-LM and NSP/SOP prediction over held-out pretraining data (a
BertForMaskedLM, as the Hugging Face Trainer's run_mlm saves, on masked-LM only); any other
model by the recipe's task family (bertkit/tasks/) on a labelled file — or, for a file without gold labels,
only its predictions are written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import BertForPreTraining

from bertkit.atomic import atomic_dir, check_apart, check_output, write_text
from bertkit.config import RunConfig, save_config
from bertkit.errors import BertkitError
from bertkit.metrics import format_table
from bertkit.modeling.bilstm import HEADS, is_bilstm, load_bilstm
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
from bertkit.tokenizer.train import load_tokenizer
from bertkit.training.runtime import make_accelerator, run_state

REPORT_FILE = "report.json"
PREDICTIONS_FILE = "predictions.jsonl"
CONFUSION_FILE = "confusion.png"


def eval_task(model, tokenizer, cfg: RunConfig, path: Path, out_dir: Path, precision: str) -> dict:
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


def _pretraining_report(cfg: RunConfig, model_dir: Path, tokenizer, accelerator, pair_head: bool) -> tuple[dict, str]:
    """MLM scores, and NSP/SOP scores when the model has that head (`pair_head`), on a split of a pretraining
    dataset; (report, data)."""
    # datasets (~1 s of start-up) only for a pretrained model's data
    from bertkit.data.dataset import TOKENIZER_SUBDIR, load_pretraining_data, pair_objective
    from bertkit.evaluation.pretraining import evaluate_pretraining

    dataset_dir = cfg.eval.file or cfg.dataset_dir
    splits, meta = load_pretraining_data(dataset_dir)
    if cfg.eval.split not in splits:
        raise BertkitError(f"{dataset_dir}: no split '{cfg.eval.split}' (have {', '.join(splits)}); set eval.split")
    model = load_model(BertForPreTraining, model_dir, cfg.allow_pickle_weights)
    check_vocabulary(model, load_tokenizer(Path(dataset_dir) / TOKENIZER_SUBDIR), model_dir)  # the data's ids
    check_fits(model, tokenizer, model_dir, meta["max_seq_length"], "data.max_seq_length")
    objective = accelerator.prepare(PretrainingObjective(model))
    pair = pair_objective(meta) if pair_head else None
    split = splits[cfg.eval.split]
    report = evaluate_pretraining(
        accelerator, objective, split, tokenizer, cfg.masking, cfg.eval.batch_size, cfg.eval.seed, pair
    )
    return report, f"{dataset_dir} [{cfg.eval.split}]"


def _load_task_model(cfg: RunConfig, model_dir: Path, architectures: list[str], task):
    """The fine-tuned model of the recipe's task family (a BERT head or the BiLSTM baseline)."""
    task_type = cfg.finetune.task.type
    if is_bilstm(architectures):
        if task.bilstm_head is None or HEADS[task.bilstm_head] not in architectures:
            raise BertkitError(
                f"{model_dir}: a {', '.join(architectures)}, not a BiLSTM for finetune.task.type={task_type}; set "
                "the recipe's task type"
            )
        return load_bilstm(model_dir)
    heads = [cls for cls in (task.crf_class, task.model_class) if cls is not None and cls.__name__ in architectures]
    if not heads:
        raise BertkitError(
            f"{model_dir}: a {', '.join(architectures) or 'model of unknown architecture'}, not a "
            f"{task.model_class.__name__} for finetune.task.type={task_type}; set the recipe's task type"
        )
    return load_model(heads[0], model_dir, cfg.allow_pickle_weights)


def run_eval(cfg: RunConfig) -> dict:
    """Evaluate `eval.model_dir` (default: this recipe's fine-tuned model) and write the report."""
    quiet_transformers()
    model_dir = check_model_dir(cfg.eval.model_dir or cfg.finetune_dir)
    out_dir = cfg.eval.output_dir or cfg.output_dir / "eval" / model_dir.resolve().name
    path = cfg.eval.file or cfg.finetune.task.test_file or cfg.finetune.task.validation_file
    check_apart({"eval.output_dir": out_dir}, {"eval.model_dir": model_dir, "eval file": path})
    check_output(out_dir, "eval.output_dir", cfg.overwrite)
    architectures = model_architectures(model_dir)
    tokenizer = load_tokenizer(model_dir)
    accelerator = make_accelerator(cfg.eval.precision, "eval.precision")
    # Report, predictions and config are written into a temporary sibling that replaces out_dir as a whole; the
    # model runs in eval.precision (bf16 autocast, or auto).
    with atomic_dir(out_dir) as tmp, accelerator.autocast():
        if {"BertForPreTraining", "BertForMaskedLM"} & set(architectures):
            pair_head = "BertForPreTraining" in architectures
            report, data = _pretraining_report(cfg, model_dir, tokenizer, accelerator, pair_head)
        else:
            if path is None:
                raise BertkitError("no file to evaluate on; set eval.file (or finetune.task.test_file)")
            task = get_task(cfg.finetune.task.type)
            model = _load_task_model(cfg, model_dir, architectures, task).to(accelerator.device)
            check_fits(model, tokenizer, model_dir, cfg.finetune.task.max_seq_length, "finetune.task.max_seq_length")
            report = eval_task(model, tokenizer, cfg, Path(path), tmp, accelerator.mixed_precision)
            data = str(path)
        report = {"model": str(model_dir), "data": data, **report}
        write_text(tmp / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        save_config(cfg, tmp, run_state(accelerator))
    print(f"\n{model_dir} on {data}\n")
    print(format_table(report))
    print(f"\nreport: {out_dir / REPORT_FILE}")
    if (out_dir / PREDICTIONS_FILE).exists():
        print(f"predictions: {out_dir / PREDICTIONS_FILE}")
    return report
