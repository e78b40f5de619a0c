"""Token classification (NER, tagging) with BIO or BIOES tags.

Files: JSONL rows with a list of words in `task.tokens_column` and one tag per word in `task.tags_column`
(Chinese: one character per word; English: words). Each word's tag is learned on its first word piece, the other
pieces are ignored (-100). Inputs longer than `task.max_seq_length` are cut into windows that overlap by
`task.stride` tokens; a word is predicted from the first window that holds it. Scored entity by entity
(seqeval: conlleval-style and strict).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from transformers import BertForTokenClassification

from bertkit.config import TaskConfig
from bertkit.errors import BertkitError
from bertkit.metrics import entity_metrics
from bertkit.tasks.common import Task, collate_inputs, column, label_kwargs, label_set, pad, predict_batches, read_rows

IGNORE = -100


def read(path: Path, cfg: TaskConfig, labelled: bool | None = None) -> list[dict]:
    rows = read_rows(path)
    words = column(rows, cfg.tokens_column, path, "finetune.task.tokens_column")
    with_tags = labelled or (labelled is None and cfg.tags_column in rows[0])
    tags = column(rows, cfg.tags_column, path, "finetune.task.tags_column") if with_tags else None
    examples = []
    for i, w in enumerate(words):
        if not isinstance(w, list):
            raise BertkitError(f"{path}: row {i + 1}: '{cfg.tokens_column}' must be a list of words")
        if tags is not None and len(tags[i]) != len(w):
            raise BertkitError(f"{path}: row {i + 1}: {len(w)} words but {len(tags[i])} tags")
        examples.append({"tokens": [str(x) for x in w], "label": None if tags is None else [str(t) for t in tags[i]]})
    return examples


def labels(examples: list[dict]) -> list[str]:
    found = label_set(t for e in examples for t in e["label"])
    return ["O", *[t for t in found if t != "O"]] if "O" in found else found


def encode(tokenizer, examples: list[dict], labels: list[str] | None, cfg: TaskConfig, train: bool) -> list[dict]:
    enc = tokenizer(
        [e["tokens"] for e in examples],
        is_split_into_words=True,
        truncation=True,
        max_length=cfg.max_seq_length,
        stride=cfg.stride,
        return_overflowing_tokens=True,
    )
    label2id = {name: i for i, name in enumerate(labels)} if labels else None
    features = []
    for k in range(len(enc["input_ids"])):
        example = enc["overflow_to_sample_mapping"][k]
        word_ids = enc.word_ids(k)
        first = [w is not None and (j == 0 or word_ids[j - 1] != w) for j, w in enumerate(word_ids)]
        f = {
            "input_ids": enc["input_ids"][k],
            "token_type_ids": enc["token_type_ids"][k],
            "example": example,
            "word_ids": [w if is_first else None for w, is_first in zip(word_ids, first, strict=True)],
        }
        gold = examples[example]["label"]
        if label2id and gold is not None:
            f["labels"] = [
                label2id[gold[w]] if w is not None and is_first else IGNORE
                for w, is_first in zip(word_ids, first, strict=True)
            ]
        features.append(f)
    return features


def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    batch = collate_inputs(features, pad_id)
    if "labels" in features[0]:
        batch["labels"] = pad([f["labels"] for f in features], IGNORE, batch["input_ids"].shape[1])
    return batch


def scheme(tags) -> str:
    return "BIOES" if any(t[:2] in ("E-", "S-") for t in tags) else "BIO"


def evaluate(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int):
    features = encode(tokenizer, examples, labels, cfg, train=False)
    predicted: list[list[str | None]] = [[None] * len(e["tokens"]) for e in examples]
    for chunk, out in predict_batches(model, features, partial(collate, pad_id=tokenizer.pad_token_id), batch_size):
        best = out.logits.argmax(-1).cpu().tolist()
        for f, row in zip(chunk, best, strict=True):
            words = predicted[f["example"]]
            for w, tag_id in zip(f["word_ids"], row, strict=False):
                if w is not None and words[w] is None:  # the first window that holds the word
                    words[w] = labels[tag_id]
    # Words that no window kept (cut by max_seq_length with stride 0 cannot happen; empty pieces can) are "O".
    predicted = [[t or "O" for t in words] for words in predicted]
    predictions = [
        {"tokens": e["tokens"], "label": e["label"], "prediction": p} for e, p in zip(examples, predicted, strict=True)
    ]
    if any(e["label"] is None for e in examples):
        return None, predictions
    gold = [e["label"] for e in examples]
    return entity_metrics(gold, predicted, scheme(labels)), predictions


TASK = Task(
    model_class=BertForTokenClassification,
    default_metric="f1",
    has_labels=True,
    read=read,
    labels=labels,
    model_kwargs=label_kwargs,
    encode=encode,
    collate=collate,
    evaluate=evaluate,
)
