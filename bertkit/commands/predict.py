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

import json
import sys
from pathlib import Path

from bertkit.atomic import write_text
from bertkit.config import PredictRecipe
from bertkit.errors import BertkitError
from bertkit.tasks.predictor import Predictor

RAW_SUFFIXES = ("", ".txt")  # `-` and --text count as raw text too


def run_predict(
    cfg: PredictRecipe, model_dir: Path, inputs: list[str], texts: list[str], output: Path | None
) -> list[dict]:
    """Predict every input (the --text values, then each input in order); JSON lines to `output` or stdout."""
    if output is not None and Path(output).exists():
        raise BertkitError(f"{output}: exists; bertkit predict writes a new file, choose another name or remove it")
    predictor = Predictor(cfg, model_dir)
    examples = read_inputs(predictor, cfg, inputs, texts)
    return finish(predictor.predict(examples), output)


def read_inputs(predictor: Predictor, cfg: PredictRecipe, inputs: list[str], texts: list[str]) -> list[dict]:
    """Unlabelled examples (a file's gold labels are not read), in input order."""
    examples = [predictor.raw(text, "--text") for text in texts]
    for name in inputs:
        if name == "-" or Path(name).suffix.lower() in RAW_SUFFIXES:
            examples += [predictor.raw(text, name) for text in _lines(name)]
        else:
            examples += predictor.task.read(Path(name), cfg.finetune.task, labelled=False)
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


def _json_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


def finish(predictions: list[dict], output: Path | None) -> list[dict]:
    """One JSON line each, written atomically to `output` or to stdout."""
    # U+2028/U+2029 escaped: readers that split lines as str.splitlines does would cut a line at them.
    lines = "".join(_json_line(p) for p in predictions)
    if output is None:
        sys.stdout.write(lines)
    else:
        write_text(Path(output), lines)
        print(f"{len(predictions)} predictions: {output}", file=sys.stderr)
    return predictions
