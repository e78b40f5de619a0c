"""`bertkit predict`: a fine-tuned model on new text, one JSON line per input in input order.

    bertkit predict runs/demo-zh/finetune/topic --text "今天的比赛非常精彩"
    echo "今天的比赛非常精彩" | bertkit predict runs/demo-zh/finetune/topic -
    bertkit predict runs/demo-zh/finetune/topic new.jsonl --output predictions.jsonl

The model dir describes itself: the bertkit.yaml that `bertkit finetune` saved beside it gives the task family,
its columns and lengths (`key=value` overrides change them, e.g. finetune.task.text_column=review). Inputs:
`--text` (repeatable), `-` (standard input) and .txt files (a text a line) for the families that take raw text
(classification, multi-label, regression, and taggers: their words come from the model's tokenizer, and each
entity comes with its character offsets into the text); labelled-file formats (.jsonl, .json, .csv, .tsv,
.parquet, `hf:` data sets) for every family, read as `bertkit eval` reads them. Each line carries its input's
fields, the prediction, and the family's scores (every class's probability for classifiers).
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from bertkit.atomic import write_text
from bertkit.config import CONFIG_FILE, PredictRecipe, load_recipe
from bertkit.errors import BertkitError
from bertkit.modeling.model import check_fits, check_model_dir, model_architectures, quiet_transformers
from bertkit.tasks import get_task
from bertkit.tasks.common import Task
from bertkit.tasks.models import load_finetuned
from bertkit.tokenizer.train import load_tokenizer
from bertkit.training.runtime import make_accelerator

RAW_SUFFIXES = ("", ".txt")  # `-` and --text count as raw text too


@dataclass
class Setup:
    task: Task
    model: object
    tokenizer: object
    labels: list[str] | None
    accelerator: object


def load_predict_recipe(model_dir: Path, overrides: list[str]) -> PredictRecipe:
    """The model dir's own recipe (the bertkit.yaml its fine-tuning saved) with the overrides."""
    saved = check_model_dir(model_dir) / CONFIG_FILE
    if not saved.is_file():
        raise BertkitError(
            f"{model_dir}: no {CONFIG_FILE}, so the task it was fine-tuned for is unknown; give a model dir that "
            "`bertkit finetune` wrote"
        )
    if "finetune" not in (yaml.safe_load(saved.read_text(encoding="utf-8")) or {}):
        raise BertkitError(
            f"{model_dir}: not a fine-tuned model (its {CONFIG_FILE} names no task); give a dir that `bertkit "
            "finetune` or `bertkit export` wrote"
        )
    return load_recipe(saved, overrides, "predict")


def run_predict(
    cfg: PredictRecipe, model_dir: Path, inputs: list[str], texts: list[str], output: Path | None
) -> list[dict]:
    """Predict every input (the --text values, then each input in order); JSON lines to `output` or stdout."""
    if output is not None and Path(output).exists():
        raise BertkitError(f"{output}: exists; bertkit predict writes a new file, choose another name or remove it")
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the predictions' alone (e.g. precision=auto's choice)
        run = setup(cfg, model_dir)
    examples = read_inputs(run, cfg, inputs, texts)
    with run.accelerator.autocast():
        _, predictions = run.task.evaluate(
            run.model, run.tokenizer, examples, run.labels, cfg.finetune.task, cfg.predict.batch_size
        )
    return finish(cfg, predictions, output)


def setup(cfg: PredictRecipe, model_dir: Path) -> Setup:
    quiet_transformers()
    task = get_task(cfg.finetune.task.type)
    accelerator = make_accelerator(cfg.predict.precision, "predict.precision")
    model = _model(cfg, task, model_dir).to(accelerator.device)
    tokenizer = load_tokenizer(model_dir)
    check_fits(model, tokenizer, model_dir, cfg.finetune.task.max_seq_length, "finetune.task.max_seq_length")
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if task.has_labels else None
    return Setup(task, model.eval(), tokenizer, labels, accelerator)


def _model(cfg: PredictRecipe, task: Task, model_dir: Path):
    """The fine-tuned model of the dir as predict.backend runs it."""
    backend = cfg.predict.backend
    if backend == "auto":
        weights = any(model_dir.glob("*.safetensors")) or any(model_dir.glob("pytorch_model*.bin"))
        backend = "torch" if weights else "onnx"
    if backend == "torch":
        return load_finetuned(cfg, task, model_dir, model_architectures(model_dir))
    from transformers import AutoConfig

    from bertkit.modeling.onnx_model import OnnxModel

    name = "model.int8.onnx" if backend == "onnx-int8" else "model.onnx"
    return OnnxModel(model_dir / name, AutoConfig.from_pretrained(model_dir))


def read_inputs(run: Setup, cfg: PredictRecipe, inputs: list[str], texts: list[str]) -> list[dict]:
    """Unlabelled examples (a file's gold labels are not read), in input order."""
    examples = [_raw(run, text, "--text") for text in texts]
    for name in inputs:
        if name == "-" or Path(name).suffix.lower() in RAW_SUFFIXES:
            examples += [_raw(run, text, name) for text in _lines(name)]
        else:
            examples += run.task.read(Path(name), cfg.finetune.task, labelled=False)
    if not examples:
        raise BertkitError("nothing to predict; give --text, a file, or - for standard input")
    return examples


def _lines(name: str) -> list[str]:
    """The non-empty lines of a text file or of standard input (`-`)."""
    if name == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(name).read_bytes().decode("utf-8-sig")
        except FileNotFoundError:
            raise BertkitError(f"{name}: no such file") from None
        except UnicodeDecodeError:
            raise BertkitError(f"{name}: not UTF-8 text; convert the file to UTF-8") from None
    # One reader's idea of a line: \n (and \r\n), not the other separators str.splitlines knows (U+2028, …).
    return [line.strip() for line in text.split("\n") if line.strip()]


def _raw(run: Setup, text: str, where: str) -> dict:
    if run.task.raw_example is None:
        raise BertkitError(
            f"{where}: this model's task takes its inputs from a file with its columns (.jsonl, .csv, …), not raw text"
        )
    return run.task.raw_example(text, run.tokenizer)


def _json_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


def finish(cfg: PredictRecipe, predictions: list[dict], output: Path | None) -> list[dict]:
    """Top-k classes where asked; one JSON line each, written atomically to `output` or to stdout."""
    if cfg.predict.top_k:
        for p in predictions:
            if isinstance(p.get("probabilities"), dict):
                best = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])[: cfg.predict.top_k]
                p["top_k"] = [{"label": label, "probability": prob} for label, prob in best]
    # U+2028/U+2029 escaped: readers that split lines as str.splitlines does would cut a line at them.
    lines = "".join(_json_line(p) for p in predictions)
    if output is None:
        sys.stdout.write(lines)
    else:
        write_text(Path(output), lines)
        print(f"{len(predictions)} predictions: {output}", file=sys.stderr)
    return predictions
