"""Sentence and sentence-pair classification (one label, or several: multi-label), and regression (a score for
a pair, STS-B style).

Files: JSONL/JSON/CSV/TSV rows with `task.text_column`, optionally `task.text_pair_column`, and
`task.label_column` (a class name, or a number for regression). Model: BertForSequenceClassification with
id2label (classification) or one output and problem_type "regression".
"""

from __future__ import annotations

import contextlib
import math
from functools import partial
from pathlib import Path

import torch
from transformers import BertForSequenceClassification

from bertkit.config.sections import TaskConfig
from bertkit.errors import BertkitError
from bertkit.metrics import classification_metrics, multilabel_metrics, regression_metrics
from bertkit.tasks.common import (
    Task,
    collate_inputs,
    column,
    label_ids,
    label_kwargs,
    label_set,
    predict_all,
    predict_probabilities,
    read_rows,
    text_of,
)


def read(
    path: Path, cfg: TaskConfig, labelled: bool | None = None, regression: bool = False, multi_label: bool = False
) -> list[dict]:
    """Examples with their gold label; `labelled`: True requires the label column, None takes it if present."""
    rows = read_rows(path)
    texts = column(rows, cfg.text_column, path, "finetune.task.text_column")
    pairs = column(rows, cfg.text_pair_column, path, "finetune.task.text_pair_column") if cfg.text_pair_column else None
    with_labels = labelled or (labelled is None and cfg.label_column in rows[0])
    gold = column(rows, cfg.label_column, path, "finetune.task.label_column") if with_labels else None
    if gold is not None and not regression and not multi_label:
        _same_label_type(gold, path)
    read_label = _score if regression else _names if multi_label else _name
    examples = []
    for i, text in enumerate(texts):
        label = None if gold is None else read_label(gold[i], f"{path}: row {i + 1}", cfg.label_column)
        examples.append(
            {"text": text_of(text), "text_pair": None if pairs is None else text_of(pairs[i]), "label": label}
        )
    return examples


def _score(value, where: str, column: str) -> float:
    """A regression target: a finite number, or its text (CSV/TSV)."""
    score = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            score = float(value)
    if score is None or not math.isfinite(score):
        raise BertkitError(
            f"{where}: score {value!r} in column '{column}' is not a finite number; fix the row or point "
            "finetune.task.label_column at the scores"
        )
    return score


def _label_type(value) -> str:
    return "a bool" if isinstance(value, bool) else "a number" if isinstance(value, int | float) else "a string"


def _same_label_type(gold: list, path) -> None:
    """Classes are compared as text, so 1, "1" and true would silently merge or split classes: one type per file."""
    first = _label_type(gold[0])
    for n, value in enumerate(gold[1:], 2):
        if _label_type(value) != first:
            raise BertkitError(
                f"{path}: row {n}: label {value!r} is {_label_type(value)} where row 1's label {gold[0]!r} is "
                f"{first}; give every label the same type"
            )


def _name(value, where: str, column: str) -> str:
    """A class: a name or a number, as text."""
    if isinstance(value, list | dict):
        raise BertkitError(
            f"{where}: label {value!r} in column '{column}' is not one class; for several labels per text set "
            "finetune.task.type=multi-label-classification"
        )
    return str(value)


def _names(value, where: str, column: str) -> list[str]:
    """The classes of a multi-label example: a JSON list, or names separated by "|" (CSV/TSV)."""
    names = value if isinstance(value, list) else str(value).split("|")
    if any(not isinstance(name, str | int | float) or not str(name).strip() for name in names):
        raise BertkitError(
            f"{where}: labels {value!r} in column '{column}' are not all non-empty names; give a JSON list of "
            'names, or names separated by "|"'
        )
    return [str(name).strip() for name in names]


def encode(tokenizer, examples: list[dict], labels: list[str] | None, cfg: TaskConfig, train: bool) -> list[dict]:
    pairs = [e["text_pair"] for e in examples] if examples[0]["text_pair"] is not None else None
    texts = [e["text"] for e in examples]
    if pairs is None and cfg.truncation != "head":
        ids = [_cut(x, cfg) for x in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
        enc = {"input_ids": [[tokenizer.cls_token_id, *x, tokenizer.sep_token_id] for x in ids]}
        enc["token_type_ids"] = [[0] * len(x) for x in enc["input_ids"]]
    else:
        enc = tokenizer(texts, pairs, truncation=True, max_length=cfg.max_seq_length)
    label2id = label_ids(labels) if labels else None
    features = []
    for i, e in enumerate(examples):
        f = {"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i]}
        if e["label"] is not None:
            if isinstance(e["label"], list):  # multi-label: a 0/1 vector
                f["labels"] = [float(name in e["label"]) for name in labels]
            else:
                f["labels"] = label2id[e["label"]] if label2id else e["label"]
        features.append(f)
    return features


def _cut(ids: list[int], cfg: TaskConfig) -> list[int]:
    """A text's tokens cut to max_seq_length with [CLS] and [SEP]: its end (tail), or its first quarter and its end
    (head+tail)."""
    room = cfg.max_seq_length - 2
    if len(ids) <= room:
        return ids
    head = room // 4 if cfg.truncation == "head+tail" else 0
    return ids[:head] + ids[len(ids) - (room - head) :]


def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    batch = collate_inputs(features, pad_id)
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch


def evaluate_classification(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int):
    features = encode(tokenizer, examples, labels, cfg, train=False)
    probs = predict_probabilities(model, tokenizer, features, collate, batch_size)
    pred = probs.argmax(-1).tolist()
    predictions = [
        {
            **e,
            "prediction": labels[p],
            "probability": round(float(probs[i, p]), 6),
            "probabilities": {name: round(float(q), 6) for name, q in zip(labels, probs[i].tolist(), strict=True)},
        }
        for i, (e, p) in enumerate(zip(examples, pred, strict=True))
    ]
    if any(e["label"] is None for e in examples):
        return None, predictions
    gold = [labels.index(e["label"]) for e in examples]
    return classification_metrics(gold, pred, labels), predictions


def evaluate_regression(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int):
    features = encode(tokenizer, examples, None, cfg, train=False)
    scores = predict_all(
        model, features, partial(collate, pad_id=tokenizer.pad_token_id), batch_size, lambda out: out.logits[:, 0]
    )
    predictions = [{**e, "prediction": round(float(s), 6)} for e, s in zip(examples, scores, strict=True)]
    if any(e["label"] is None for e in examples):
        return None, predictions
    return regression_metrics([e["label"] for e in examples], scores.tolist()), predictions


def evaluate_multi_label(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int):
    features = encode(tokenizer, examples, labels, cfg, train=False)
    probs = predict_all(
        model, features, partial(collate, pad_id=tokenizer.pad_token_id), batch_size, lambda out: out.logits.sigmoid()
    )
    chosen = (probs > 0.5).int()  # each label on its own, at the sigmoid's midpoint
    predictions = [
        {
            **e,
            "prediction": [labels[j] for j in row.nonzero().flatten().tolist()],
            "probabilities": {name: round(float(q), 6) for name, q in zip(labels, p.tolist(), strict=True)},
        }
        for e, row, p in zip(examples, chosen, probs, strict=True)
    ]
    if any(e["label"] is None for e in examples):
        return None, predictions
    gold = [[int(name in e["label"]) for name in labels] for e in examples]
    return multilabel_metrics(gold, chosen.tolist(), labels), predictions


def raw_example(text: str, tokenizer=None) -> dict:
    """One raw text, unlabelled (the tokenizer encodes it later, with the others)."""
    return {"text": text, "text_pair": None, "label": None}


def _class_kwargs(labels: list[str]) -> dict:
    if len(labels) < 2:
        raise BertkitError(f"only one label ({labels[0]!r}) in the train file; classification needs at least two")
    return label_kwargs(labels)


CLASSIFICATION = Task(
    model_class=BertForSequenceClassification,
    default_metric="accuracy",
    has_labels=True,
    read=read,
    labels=lambda examples: label_set(e["label"] for e in examples),
    model_kwargs=_class_kwargs,
    encode=encode,
    collate=collate,
    evaluate=evaluate_classification,
    raw_example=raw_example,
    bilstm_head="sequence",
    confusion_matrix=True,
)

REGRESSION = Task(
    model_class=BertForSequenceClassification,
    default_metric="pearson",
    read=partial(read, regression=True),
    model_kwargs=lambda labels: {"num_labels": 1, "problem_type": "regression"},
    encode=encode,
    collate=collate,
    evaluate=evaluate_regression,
    raw_example=raw_example,
)

MULTI_LABEL = Task(
    model_class=BertForSequenceClassification,
    default_metric="micro_f1",
    has_labels=True,
    read=partial(read, multi_label=True),
    labels=lambda examples: label_set(name for e in examples for name in e["label"]),
    model_kwargs=lambda labels: {**_class_kwargs(labels), "problem_type": "multi_label_classification"},
    encode=encode,
    collate=collate,
    evaluate=evaluate_multi_label,
    raw_example=raw_example,
)
