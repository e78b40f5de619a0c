"""Fine-tuning task data: reading labelled files and turning them into model inputs.

    rows = read_rows(Path("data/zh/topic/train.jsonl"))          # JSONL, JSON, CSV or TSV with a header
    task = TASKS["classification"]
    examples = task.read(rows, cfg.finetune.task, path)           # [{"text":…, "text_pair":…, "label":…}]
    features = task.encode(tokenizer, examples, label2id, 128)    # input ids + label ids
    batch = task.collate(features)

TASKS maps `task.type` to its pieces; one entry per task family.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertForSequenceClassification, PreTrainedTokenizerBase

from bertkit.config import TaskConfig
from bertkit.data.masking import pad, padded_length
from bertkit.errors import BertkitError


def read_rows(path: Path) -> list[dict]:
    """Rows of a JSONL/JSON/CSV/TSV file as dicts (CSV and TSV need a header line)."""
    path = Path(path)
    if not path.is_file():
        raise BertkitError(f"{path}: no such file; check the task's *_file settings")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BertkitError(f"{path}: not UTF-8 text; convert the file to UTF-8") from None
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BertkitError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise BertkitError(f"{path}:{n}: each line must be a JSON object")
            rows.append(row)
    elif suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise BertkitError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)):
            raise BertkitError(f"{path}: a .json task file must hold a list of objects")
    elif suffix in (".csv", ".tsv"):
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ","))
    else:
        raise BertkitError(f"{path}: unknown file type '{suffix}'; use .jsonl, .json, .csv or .tsv")
    if not rows:
        raise BertkitError(f"{path}: file holds no rows")
    return rows


def _column(rows: list[dict], name: str, path: Path, setting: str) -> list:
    if name not in rows[0]:
        raise BertkitError(f"{path}: no column '{name}' (columns: {', '.join(map(str, rows[0]))}); set {setting}")
    values = []
    for n, row in enumerate(rows, 1):
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise BertkitError(f"{path}: row {n} has no value in column '{name}'")
        values.append(value)
    return values


def read_classification(rows: list[dict], task: TaskConfig, path: Path, labelled: bool = True) -> list[dict]:
    texts = _column(rows, task.text_column, path, "finetune.task.text_column")
    pairs = (
        _column(rows, task.text_pair_column, path, "finetune.task.text_pair_column")
        if task.text_pair_column
        else [None] * len(rows)
    )
    labels = _column(rows, task.label_column, path, "finetune.task.label_column") if labelled else [None] * len(rows)
    return [
        {"text": str(t), "text_pair": None if p is None else str(p), "label": None if y is None else str(y)}
        for t, p, y in zip(texts, pairs, labels, strict=True)
    ]


def label_set(examples: list[dict]) -> list[str]:
    """Sorted labels; integers in numeric order."""

    def key(label: str):
        number = label.lstrip("-").isdigit()
        return (not number, int(label) if number else 0, label)

    return sorted({e["label"] for e in examples}, key=key)


def encode_classification(
    tokenizer: PreTrainedTokenizerBase, examples: list[dict], label2id: dict[str, int] | None, max_length: int
) -> list[dict]:
    texts = [e["text"] for e in examples]
    pairs = [e["text_pair"] for e in examples] if examples and examples[0]["text_pair"] is not None else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    features = []
    for i, e in enumerate(examples):
        f = {"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i]}
        if label2id is not None and e["label"] is not None:
            f["labels"] = label2id[e["label"]]
        features.append(f)
    return features


def collate_classification(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    length = padded_length([f["input_ids"] for f in features])
    batch = {
        "input_ids": pad([f["input_ids"] for f in features], pad_id, length),
        "token_type_ids": pad([f["token_type_ids"] for f in features], 0, length),
        "attention_mask": pad([[1] * len(f["input_ids"]) for f in features], 0, length),
    }
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch


@dataclass(frozen=True)
class Task:
    model_class: type
    read: Callable[..., list[dict]]
    encode: Callable[..., list[dict]]
    collate: Callable[..., dict[str, torch.Tensor]]  # (features, pad_id)


TASKS: dict[str, Task] = {
    "classification": Task(
        BertForSequenceClassification, read_classification, encode_classification, collate_classification
    ),
}


def check_labels(examples: list[dict], label2id: dict[str, int], path: Path) -> None:
    unknown = sorted({e["label"] for e in examples if e["label"] not in label2id})
    if unknown:
        raise BertkitError(
            f"{path}: label(s) {', '.join(map(repr, unknown[:5]))} not seen in training "
            f"(known: {', '.join(label2id)}); fix the file or add examples to the train file"
        )
