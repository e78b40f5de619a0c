"""Multiple choice (SWAG, C3 style): a context, a question and N candidate answers; the label is the right one's
index.

Files: JSONL rows with `task.text_column` (the context), optionally `task.question_column`, a list of
candidates in `task.choices_column` and the answer's index in `task.label_column`. Each candidate is scored as
the pair (context, question + candidate) by BertForMultipleChoice; accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertForMultipleChoice

from bertkit.config import TaskConfig
from bertkit.errors import BertkitError
from bertkit.metrics import classification_metrics
from bertkit.tasks.common import Task, column, pad, padded_length, predict_probabilities, read_rows


def read(path: Path, cfg: TaskConfig, labelled: bool | None = None) -> list[dict]:
    rows = read_rows(path)
    contexts = column(rows, cfg.text_column, path, "finetune.task.text_column")
    questions = (
        column(rows, cfg.question_column, path, "finetune.task.question_column")
        if (cfg.question_column in rows[0])
        else [""] * len(rows)
    )
    choices = column(rows, cfg.choices_column, path, "finetune.task.choices_column")
    with_labels = labelled or (labelled is None and cfg.label_column in rows[0])
    gold = column(rows, cfg.label_column, path, "finetune.task.label_column") if with_labels else None
    examples = []
    for i, (context, question, options) in enumerate(zip(contexts, questions, choices, strict=True)):
        if not isinstance(options, list) or len(options) != len(choices[0]):
            raise BertkitError(
                f"{path}: row {i + 1}: '{cfg.choices_column}' must be a list of "
                f"{len(choices[0])} candidates, like the first row's"
            )
        label = None if gold is None else _index(gold[i])
        if gold is not None and not (label is not None and 0 <= label < len(options)):
            raise BertkitError(
                f"{path}: row {i + 1}: label {gold[i]!r} in column '{cfg.label_column}' is not an index into its "
                f"{len(options)} choices (0 to {len(options) - 1}); fix the row"
            )
        examples.append(
            {"context": str(context), "question": str(question), "choices": [str(o) for o in options], "label": label}
        )
    return examples


def _index(value) -> int | None:
    """A whole number (or its text, CSV/TSV), else None: int() would take True and truncate 1.7."""
    if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def encode(tokenizer, examples: list[dict], labels, cfg: TaskConfig, train: bool) -> list[dict]:
    n = len(examples[0]["choices"])
    firsts = [e["context"] for e in examples for _ in range(n)]
    seconds = [f"{e['question']} {c}".strip() for e in examples for c in e["choices"]]
    enc = tokenizer(firsts, seconds, truncation="longest_first", max_length=cfg.max_seq_length)
    features = []
    for i, e in enumerate(examples):
        rows = range(i * n, (i + 1) * n)
        f = {
            "input_ids": [enc["input_ids"][r] for r in rows],
            "token_type_ids": [enc["token_type_ids"][r] for r in rows],
        }
        if e["label"] is not None:
            f["labels"] = e["label"]
        features.append(f)
    return features


def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """(B, C, T) inputs: every candidate of every example padded to the longest."""
    rows = [r for f in features for r in f["input_ids"]]
    length = padded_length(rows)
    shape = (len(features), len(features[0]["input_ids"]), length)
    batch = {
        "input_ids": pad(rows, pad_id, length).view(shape),
        "token_type_ids": pad([r for f in features for r in f["token_type_ids"]], 0, length).view(shape),
        "attention_mask": pad([[1] * len(r) for r in rows], 0, length).view(shape),
    }
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch


def evaluate(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int):
    features = encode(tokenizer, examples, None, cfg, train=False)
    probs = predict_probabilities(model, tokenizer, features, collate, batch_size)
    pred = probs.argmax(-1).tolist()
    predictions = [
        {**e, "prediction": p, "probability": round(float(probs[i, p]), 6)}
        for i, (e, p) in enumerate(zip(examples, pred, strict=True))
    ]
    if any(e["label"] is None for e in examples):
        return None, predictions
    names = [str(i) for i in range(len(examples[0]["choices"]))]
    metrics = classification_metrics([e["label"] for e in examples], pred, names)
    return {"accuracy": metrics["accuracy"]}, predictions


TASK = Task(
    model_class=BertForMultipleChoice,
    default_metric="accuracy",
    read=read,
    encode=encode,
    collate=collate,
    evaluate=evaluate,
    fields=("question_column", "choices_column"),
    length=lambda feature: max(map(len, feature["input_ids"])),  # one row per choice: the longest
)
