"""Multiple choice (SWAG, C3 style): a context, a question and 2 or more candidate answers; the label is the
right one.

Files: rows with `task.text_column` (the context: text, or a list of texts such as C3's dialogue turns),
optionally `task.question_column`, a list of candidates in `task.choices_column` and the answer in
`task.label_column`: its index, or its text (C3's `answer`). Questions may have different numbers of candidates
(C3 has 2 to 4): a batch pads them with empty candidates that take no probability and no loss. Each candidate is
scored as the pair (context, question + candidate) by BertForMultipleChoice; accuracy.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import transformers
from transformers.modeling_outputs import MultipleChoiceModelOutput

from bertkit.config.sections import TaskConfig
from bertkit.errors import BertkitError
from bertkit.metrics import classification_metrics
from bertkit.tasks.common import Task, column, pad, padded_length, predict_rows, read_rows, text_of


class BertForMultipleChoice(transformers.BertForMultipleChoice):
    """transformers' head, for batches of questions with different numbers of candidates: padding candidates
    (attention mask all 0) are not run through BERT at all and get the lowest logit, so no probability and no
    loss. Same name and weights as transformers' class, which the saved config.json names: plain transformers
    loads the model as it is."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        b, c, t = input_ids.shape
        present = torch.ones(b * c, dtype=torch.bool, device=input_ids.device)
        if attention_mask is not None:
            present = attention_mask.reshape(b * c, t).bool().any(-1)

        def candidates(x):
            return None if x is None else x.reshape(b * c, t)[present]

        out = self.bert(
            candidates(input_ids),
            attention_mask=candidates(attention_mask),
            token_type_ids=candidates(token_type_ids),
            **kwargs,
        )
        scores = self.classifier(self.dropout(out.pooler_output)).squeeze(-1)
        logits = scores.new_full((b * c,), torch.finfo(scores.dtype).min)
        logits[present] = scores
        logits = logits.view(b, c)
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits.float(), labels)
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


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
        if not isinstance(options, list) or len(options) < 2:
            raise BertkitError(
                f"{path}: row {i + 1}: '{cfg.choices_column}' must be a list of 2 or more candidates; fix the row"
            )
        options = [str(o) for o in options]
        label = None if gold is None else _label(gold[i], options, f"{path}: row {i + 1}: label", cfg.label_column)
        if labelled and label is None:
            raise BertkitError(f"{path}: row {i + 1}: no label in column '{cfg.label_column}'; give every row one")
        examples.append({"context": text_of(context), "question": str(question), "choices": options, "label": label})
    return examples


def _label(value, options: list[str], where: str, label_column: str) -> int | None:
    """The answer's index: a whole number in range (or its text, CSV/TSV), or the index of the candidate whose
    text it is; None for no answer (None or "")."""
    if value is None or value == "":
        return None
    index = _index(value)
    by_text = options.index(value) if isinstance(value, str) and value in options else None
    if index is not None and not 0 <= index < len(options):
        index = None
    if index is not None and by_text is not None and index != by_text:
        raise BertkitError(
            f"{where} {value!r} is both the index of candidate {index} and the text of candidate {by_text}; give "
            "the index as a JSON number, which is always an index"
        )
    if index is None and by_text is None:
        raise BertkitError(
            f"{where} {value!r} in column '{label_column}' is neither an index into its {len(options)} choices "
            f"(0 to {len(options) - 1}) nor one of them; fix the row"
        )
    return index if index is not None else by_text


def _index(value) -> int | None:
    """A whole number (or its text, CSV/TSV), else None: int() would take True and truncate 1.7."""
    if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def encode(tokenizer, examples: list[dict], labels, cfg: TaskConfig, train: bool) -> list[dict]:
    firsts = [e["context"] for e in examples for _ in e["choices"]]
    seconds = [f"{e['question']} {c}".strip() for e in examples for c in e["choices"]]
    enc = tokenizer(firsts, seconds, truncation="longest_first", max_length=cfg.max_seq_length)
    features, start = [], 0
    for e in examples:
        rows = range(start, start + len(e["choices"]))
        start = rows.stop
        f = {
            "input_ids": [enc["input_ids"][r] for r in rows],
            "token_type_ids": [enc["token_type_ids"][r] for r in rows],
        }
        if e["label"] is not None:
            f["labels"] = e["label"]
        features.append(f)
    return features


def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """(B, C, T) inputs: every candidate of every example padded to the longest, and every example to the most
    candidates with empty ones (attention mask all 0)."""
    n = max(len(f["input_ids"]) for f in features)
    rows = [r for f in features for r in f["input_ids"] + [[]] * (n - len(f["input_ids"]))]
    types = [r for f in features for r in f["token_type_ids"] + [[]] * (n - len(f["input_ids"]))]
    length = padded_length(rows)
    shape = (len(features), n, length)
    batch = {
        "input_ids": pad(rows, pad_id, length).view(shape),
        "token_type_ids": pad(types, 0, length).view(shape),
        "attention_mask": pad([[1] * len(r) for r in rows], 0, length).view(shape),
    }
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch


def evaluate(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int):
    features = encode(tokenizer, examples, None, cfg, train=False)
    collate_batch = partial(collate, pad_id=tokenizer.pad_token_id)
    # One row per question, as long as its own batch's most candidates: padding candidates have probability 0.
    probs = predict_rows(
        model, features, collate_batch, batch_size, lambda out, _: out.logits.float().softmax(-1).cpu()
    )
    pred = [int(p.argmax()) for p in probs]
    predictions = [
        {
            **e,
            "prediction": p,
            "probability": round(float(probs[i][p]), 6),
            "probabilities": [round(float(q), 6) for q in probs[i][: len(e["choices"])]],  # each candidate's
        }
        for i, (e, p) in enumerate(zip(examples, pred, strict=True))
    ]
    if any(e["label"] is None for e in examples):
        return None, predictions
    names = [str(i) for i in range(max(len(e["choices"]) for e in examples))]
    metrics = classification_metrics([e["label"] for e in examples], pred, names)
    return {"accuracy": metrics["accuracy"]}, predictions


TASK = Task(
    columns=lambda cfg: [cfg.text_column, cfg.question_column, cfg.choices_column],
    model_class=BertForMultipleChoice,
    default_metric="accuracy",
    read=read,
    encode=encode,
    collate=collate,
    evaluate=evaluate,
    length=lambda feature: max(map(len, feature["input_ids"])),  # one row per choice: the longest
)
