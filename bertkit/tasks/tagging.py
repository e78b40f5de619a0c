"""Token classification: entities (NER) in BIO or BIOES tags, or plain tags (POS and the like).

Files: JSONL rows with a list of words in `task.tokens_column` and one tag per word in `task.tags_column`
(Chinese: one character per word; English: words). Each word's tag is learned on its first word piece, the other
pieces are ignored (-100). Inputs longer than `task.max_seq_length` are cut into windows that overlap by
`task.stride` tokens; a word is predicted from the first window that holds it.

The tag scheme (`task.tag_scheme`, by default detected from the train file: see detect_scheme) is stored in the
model's config.json as `tag_scheme`. BIO/BIOES tags are scored entity by entity (seqeval: conlleval-style and
strict), plain tags word by word (accuracy, per-tag and micro/macro F1; the dev metric `f1` is the micro F1).

With `task.crf=true` the head is BertCrfForTokenClassification: the same model plus a CRF over the words' tags
(bertkit/modeling/crf.py), trained on the sequence likelihood and decoded with Viterbi. It still loads in plain
transformers as a BertForTokenClassification (the CRF's three tensors are left out: per-word argmax).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import torch
from transformers import BertForTokenClassification
from transformers.modeling_outputs import TokenClassifierOutput

from bertkit.config.sections import TaskConfig
from bertkit.data.padding import IGNORE_INDEX
from bertkit.errors import BertkitError
from bertkit.metrics import entity_metrics, tag_metrics
from bertkit.modeling.crf import CRF, gather_words
from bertkit.tasks.common import (
    Task,
    collate_inputs,
    column,
    label_ids,
    label_kwargs,
    label_set,
    pad,
    predict_rows,
    read_rows,
)

# The tags besides O that each entity scheme allows: a prefix, a dash, and the entity type.
ENTITY_TAG = {"BIO": re.compile(r"[BI]-.+"), "BIOES": re.compile(r"[BIES]-.+")}
PREFIXES = {"BIO": "B-/I-", "BIOES": "B-/I-/E-/S-"}


class BertCrfForTokenClassification(BertForTokenClassification):
    def __init__(self, config):
        super().__init__(config)
        self.crf = CRF(config.num_labels)

    def _init_weights(self, module):
        # from_pretrained initialises what a checkpoint lacks through this hook (a BERT dir has no CRF).
        super()._init_weights(module)
        if isinstance(module, CRF):
            module.reset_parameters()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        out = super().forward(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs
        )
        loss = None if labels is None else self.crf.loss(out.logits, labels)
        return TokenClassifierOutput(loss=loss, logits=out.logits)


def _word_positions(logits: torch.Tensor, word_ids: list[list[int | None]]) -> torch.Tensor:
    """(B, T) bool: the positions that carry a word's tag (its first piece)."""
    return torch.tensor([[w is not None for w in row] + [False] * (logits.shape[1] - len(row)) for row in word_ids])


def best_tags(model, logits: torch.Tensor, word_ids: list[list[int | None]]) -> list[list[int]]:
    """Each row's tag ids at its words' positions (`word_ids` not None), in order: the CRF's Viterbi path when
    the model has one, else each word's argmax."""
    keep = _word_positions(logits, word_ids)
    crf = getattr(model, "crf", None)
    if crf is not None:
        return crf.decode(logits, keep.to(logits.device))
    best = logits.argmax(-1).cpu()
    return [best[i][keep[i]].tolist() for i in range(len(word_ids))]


def tag_probabilities(model, logits: torch.Tensor, word_ids: list[list[int | None]]) -> torch.Tensor:
    """(B, W, C) each word's probability of every tag, words in order (rows padded with zeros): the CRF's
    marginals P(tag at word | text) when the model has one (forward-backward, as the gradient of the log
    partition), else the softmax at the word's first piece."""
    keep = _word_positions(logits, word_ids).to(logits.device)
    emissions, mask = gather_words(logits.float(), keep)
    crf = getattr(model, "crf", None)
    if crf is None:
        return (emissions.softmax(-1) * mask[..., None]).cpu()
    with torch.enable_grad():  # only towards the emissions: the CRF's own parameters get no .grad
        emissions = emissions.detach().requires_grad_()
        (marginals,) = torch.autograd.grad(crf._log_partition(emissions, mask).sum(), emissions)
    return marginals.cpu()


def _decode(model, logits: torch.Tensor, word_ids: list[list[int | None]], scored: bool) -> list[tuple]:
    """(tag ids, each tag's probability or None) of each row's words: best_tags, and with `scored` the
    probability that tag_probabilities gives the chosen tag."""
    best = best_tags(model, logits, word_ids)
    if not scored:
        return [(row, None) for row in best]
    probs = tag_probabilities(model, logits, word_ids)
    return [
        (row, probs[i, torch.arange(len(row)), torch.tensor(row, dtype=torch.long)].tolist())
        for i, row in enumerate(best)
    ]


def detect_scheme(tags: Iterable[str]) -> str:
    """The scheme of a tag set: "BIOES" when a tag has an E- or S- prefix, else "BIO" when one has a B- or I-
    prefix (or there is only O), else "plain": no tag but O has a prefix. check_scheme rejects a mix."""
    tags = set(tags) - {"O"}
    prefixed = [t for t in tags if ENTITY_TAG["BIOES"].fullmatch(t)]
    if tags and not prefixed:
        return "plain"
    return "BIOES" if any(t[0] in "ES" for t in prefixed) else "BIO"


def chosen_scheme(tags: Iterable[str], cfg: TaskConfig) -> str:
    """`task.tag_scheme`, or the scheme of `tags` when it is auto."""
    return detect_scheme(tags) if cfg.tag_scheme == "auto" else cfg.tag_scheme


def check_scheme(tag_rows: list[list[str]], cfg: TaskConfig, path: Path) -> None:
    """Every tag must be O or an entity tag of the file's scheme (a plain tag set takes any tag); the first that
    is not is an error naming its row."""
    scheme = chosen_scheme((t for row in tag_rows for t in row), cfg)
    if scheme == "plain":
        return
    for n, row in enumerate(tag_rows, 1):
        bad = next((t for t in row if t != "O" and not ENTITY_TAG[scheme].fullmatch(t)), None)
        if bad is None:
            continue
        if cfg.tag_scheme != "auto":
            raise BertkitError(
                f"{path}: row {n}: tag {bad!r} is not O or {PREFIXES[scheme]}<type> as finetune.task.tag_scheme="
                f"{scheme} requires; fix the tag or change finetune.task.tag_scheme"
            )
        example = next(t for tags in tag_rows for t in tags if ENTITY_TAG[scheme].fullmatch(t))
        raise BertkitError(
            f"{path}: row {n}: tag {bad!r} is not O or {PREFIXES['BIOES']}<type> like the file's other tags "
            f"(e.g. {example!r}); fix it, or set finetune.task.tag_scheme=plain to score every tag as a class"
        )


def read(path: Path, cfg: TaskConfig, labelled: bool | None = None) -> list[dict]:
    rows = read_rows(path)
    words = column(rows, cfg.tokens_column, path, "finetune.task.tokens_column")
    with_tags = labelled or (labelled is None and cfg.tags_column in rows[0])
    tags = column(rows, cfg.tags_column, path, "finetune.task.tags_column") if with_tags else None
    examples = []
    for i, w in enumerate(words):
        if not isinstance(w, list):
            raise BertkitError(f"{path}: row {i + 1}: '{cfg.tokens_column}' must be a list of words")
        if tags is not None and not isinstance(tags[i], list):
            raise BertkitError(f"{path}: row {i + 1}: '{cfg.tags_column}' must be a list of tags")
        if tags is not None and len(tags[i]) != len(w):
            raise BertkitError(f"{path}: row {i + 1}: {len(w)} words but {len(tags[i])} tags; give one tag per word")
        examples.append({"tokens": [str(x) for x in w], "label": None if tags is None else [str(t) for t in tags[i]]})
    if tags is not None:  # the scheme is decided (and every tag checked against it) when the file is read
        check_scheme([e["label"] for e in examples], cfg, path)
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
    label2id = label_ids(labels) if labels else None
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
                label2id[gold[w]] if w is not None and is_first else IGNORE_INDEX
                for w, is_first in zip(word_ids, first, strict=True)
            ]
        features.append(f)
    return features


def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    batch = collate_inputs(features, pad_id)
    if "labels" in features[0]:
        batch["labels"] = pad([f["labels"] for f in features], IGNORE_INDEX, batch["input_ids"].shape[1])
    return batch


def settings(examples: list[dict], cfg: TaskConfig) -> dict:
    """The tag scheme of the train file and whether a CRF decodes, stored in the model's config.json."""
    return {"tag_scheme": chosen_scheme((t for e in examples for t in e["label"]), cfg), "crf": cfg.crf}


def _predict_tags(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int) -> tuple[list, list]:
    """(each example's tag per word, each word's probability of its tag or None): a word from the first window
    that holds it. Probabilities only for raw texts, whose entities carry a score."""
    features = encode(tokenizer, examples, labels, cfg, train=False)
    scored = any("spans" in e for e in examples)
    predicted: list[list[str | None]] = [[None] * len(e["tokens"]) for e in examples]
    scores: list[list[float | None]] = [[None] * len(e["tokens"]) for e in examples]
    rows = predict_rows(
        model,
        features,
        partial(collate, pad_id=tokenizer.pad_token_id),
        batch_size,
        lambda out, chunk: _decode(model, out.logits, [f["word_ids"] for f in chunk], scored),
    )
    for f, (row, probs) in zip(features, rows, strict=True):  # windows in document order
        words, word_scores = predicted[f["example"]], scores[f["example"]]
        for k, (w, tag_id) in enumerate(zip((w for w in f["word_ids"] if w is not None), row, strict=True)):
            if words[w] is None:  # the first window that holds the word
                words[w] = labels[tag_id]
                word_scores[w] = probs[k] if probs is not None else None
    # Words that no window kept (cut by max_seq_length with stride 0 cannot happen; empty pieces can) are "O".
    return [[t or "O" for t in words] for words in predicted], scores


def evaluate(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int):
    predicted, scores = _predict_tags(model, tokenizer, examples, labels, cfg, batch_size)
    # A model saved before the scheme was stored: the scheme of its label set.
    scheme = getattr(model.config, "tag_scheme", None) or chosen_scheme(labels, cfg)
    predictions = [_prediction(e, p, s, scheme) for e, p, s in zip(examples, predicted, scores, strict=True)]
    if any(e["label"] is None for e in examples):
        return None, predictions
    gold = [e["label"] for e in examples]
    if scheme == "plain":
        return tag_metrics(gold, predicted, labels), predictions
    return entity_metrics(gold, predicted, scheme), predictions


def raw_example(text: str, tokenizer) -> dict:
    """One raw text as the words the model's tokenizer makes of it (a Chinese character, an English word or a
    punctuation mark each), with each word's character span in `text`: nobody has to split it first."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans: dict[int, list[int]] = {}
    for word, (start, end) in zip(enc.word_ids(), enc["offset_mapping"], strict=True):
        if word is not None:
            spans.setdefault(word, [start, end])[1] = end
    ordered = [tuple(spans[w]) for w in sorted(spans)]
    return {"tokens": [text[s:e] for s, e in ordered], "label": None, "text": text, "spans": ordered}


def _prediction(example: dict, tags: list[str], scores: list[float | None], scheme: str) -> dict:
    """A prediction row; for a raw text, its entities with character offsets into it (text[start:end]) and a
    score: the mean over the entity's words of each word's probability of its tag (tag_probabilities)."""
    row = {"tokens": example["tokens"], "label": example["label"], "prediction": tags}
    if "spans" not in example:
        return row
    from seqeval.metrics.sequence_labeling import get_entities  # BIO and BIOES chunks: (type, first, last word)

    spans, text = example["spans"], example["text"]
    entities = []
    for kind, first, last in get_entities(tags) if scheme != "plain" else []:
        start, end = spans[first][0], spans[last][1]
        score = sum(scores[first : last + 1]) / (last + 1 - first)
        entities.append({"type": kind, "text": text[start:end], "start": start, "end": end, "score": round(score, 6)})
    return {"text": text, **row, "entities": entities}


TASK = Task(
    columns=lambda cfg: [cfg.tokens_column],
    model_class=BertForTokenClassification,
    crf_class=BertCrfForTokenClassification,
    default_metric="f1",  # entity F1, or for plain tags the micro F1 over words
    has_labels=True,
    read=read,
    labels=labels,
    model_kwargs=label_kwargs,
    model_settings=settings,
    encode=encode,
    collate=collate,
    evaluate=evaluate,
    bookkeeping=("example", "word_ids"),
    raw_example=raw_example,
    own_lrs=lambda cfg: {"crf.": cfg.crf_lr} if cfg.crf else None,
    bilstm_head="token",
)
