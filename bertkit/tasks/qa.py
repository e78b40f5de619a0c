"""Extractive question answering: SQuAD v1.1/v2.0 and CMRC2018-style JSON.

Files: SQuAD JSON ({"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text",
"answer_start"}], "is_impossible"}]}]}]}). A context longer than `task.max_seq_length` is cut into windows
that overlap by `task.stride` tokens. Answers are decoded n-best over every window (`task.n_best` start and
end candidates, at most `task.max_answer_length` tokens), mapped back to the original text through character
offsets; for SQuAD v2 data "no answer" wins when the [CLS] score beats the best span. Scored with the official
SQuAD EM/F1, or CMRC2018's character-level EM/F1 for Chinese.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from transformers import BertForQuestionAnswering

from bertkit.config import TaskConfig
from bertkit.errors import BertkitError
from bertkit.metrics import cmrc_metrics, squad_metrics
from bertkit.tasks.common import Task, collate_inputs, predict_batches, read_json


def read(path: Path, cfg: TaskConfig, labelled: bool | None = None) -> list[dict]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BertkitError(f"{path}: not SQuAD-format JSON (a top-level 'data' list of articles)")
    examples = []
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise BertkitError(f"{path}: a paragraph without a 'context' string")
            for qa in paragraph.get("qas", []):
                has_gold = "answers" in qa or "is_impossible" in qa
                if labelled and not has_gold:
                    raise BertkitError(f"{path}: question {qa.get('id')} has no 'answers'; a training file needs them")
                answers = [(a["text"], a["answer_start"]) for a in qa.get("answers", [])]
                for text, start in answers:
                    if context[start : start + len(text)] != text:
                        raise BertkitError(
                            f"{path}: question {qa.get('id')}: answer {text!r} is not at offset {start} of its context"
                        )
                examples.append(
                    {
                        "id": str(qa["id"]),
                        "question": qa["question"],
                        "context": context,
                        "label": answers if has_gold else None,
                    }
                )
    if not examples:
        raise BertkitError(f"{path}: holds no questions")
    return examples


def encode(tokenizer, examples: list[dict], labels, cfg: TaskConfig, train: bool) -> list[dict]:
    enc = tokenizer(
        [e["question"] for e in examples],
        [e["context"] for e in examples],
        truncation="only_second",
        max_length=cfg.max_seq_length,
        stride=cfg.stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    features = []
    for k in range(len(enc["input_ids"])):
        example = enc["overflow_to_sample_mapping"][k]
        sequence = enc.sequence_ids(k)
        # Offsets of context tokens only: the others can never be part of an answer.
        offsets = [o if s == 1 else None for o, s in zip(enc["offset_mapping"][k], sequence, strict=True)]
        f = {
            "input_ids": enc["input_ids"][k],
            "token_type_ids": enc["token_type_ids"][k],
            "example": example,
            "offsets": offsets,
        }
        gold = examples[example]["label"]
        if train and gold is not None:
            f["start_positions"], f["end_positions"] = _answer_tokens(offsets, gold)
        features.append(f)
    return features


def _answer_tokens(offsets: list, gold: list) -> tuple[int, int]:
    """Token span of the first gold answer in this window, or (0, 0) ([CLS]: no answer here)."""
    if not gold:
        return 0, 0
    text, start_char = gold[0]
    end_char = start_char + len(text)
    inside = [i for i, o in enumerate(offsets) if o is not None]
    if not inside or offsets[inside[0]][0] > start_char or offsets[inside[-1]][1] < end_char:
        return 0, 0
    start = next(i for i in inside if offsets[i][1] > start_char)
    end = max(i for i in inside if offsets[i][0] < end_char)
    return start, end


def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    batch = collate_inputs(features, pad_id)
    if "start_positions" in features[0]:
        batch["start_positions"] = torch.tensor([f["start_positions"] for f in features])
        batch["end_positions"] = torch.tensor([f["end_positions"] for f in features])
    return batch


def best_answer(
    windows: list[tuple[list, list, list]], context: str, n_best: int, max_answer_length: int, allow_no_answer: bool
) -> tuple[str, float]:
    """The best span over an example's windows: (answer text, score); "" when no answer wins (SQuAD v2).

    Args:
        windows: (start logits, end logits, offsets) per window; offsets are None outside the context.
    """
    best_text, best_score = "", float("-inf")
    null_score = float("inf")
    for start_logits, end_logits, offsets in windows:
        null_score = min(null_score, start_logits[0] + end_logits[0])  # as transformers' run_qa: the lowest
        starts = sorted(range(len(offsets)), key=lambda i: -start_logits[i])[:n_best]
        ends = sorted(range(len(offsets)), key=lambda i: -end_logits[i])[:n_best]
        for s in starts:
            for e in ends:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = start_logits[s] + end_logits[e]
                if score > best_score:
                    best_score, best_text = score, context[offsets[s][0] : offsets[e][1]]
    if allow_no_answer and null_score > best_score:
        return "", null_score
    return best_text, best_score


def is_chinese(text: str) -> bool:
    return sum("\u4e00" <= c <= "\u9fff" for c in text) > len(text) / 4


def evaluate(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int):
    features = encode(tokenizer, examples, None, cfg, train=False)
    windows: list[list] = [[] for _ in examples]
    for chunk, out in predict_batches(model, features, partial(collate, pad_id=tokenizer.pad_token_id), batch_size):
        starts, ends = out.start_logits.float().cpu().tolist(), out.end_logits.float().cpu().tolist()
        for f, s, e in zip(chunk, starts, ends, strict=True):
            n = len(f["offsets"])
            windows[f["example"]].append((s[:n], e[:n], f["offsets"]))
    version_2 = any(e["label"] == [] for e in examples)
    predictions = []
    for example, example_windows in zip(examples, windows, strict=True):
        text, score = best_answer(example_windows, example["context"], cfg.n_best, cfg.max_answer_length, version_2)
        predictions.append(
            {
                "id": example["id"],
                "question": example["question"],
                "prediction": text,
                "score": round(score, 4),
                "answers": None if example["label"] is None else [t for t, _ in example["label"]],
            }
        )
    if any(e["label"] is None for e in examples):
        return None, predictions
    predicted = {p["id"]: p["prediction"] for p in predictions}
    references = {p["id"]: p["answers"] for p in predictions}
    score = cmrc_metrics if is_chinese(examples[0]["context"]) else squad_metrics
    return score(predicted, references), predictions


TASK = Task(
    model_class=BertForQuestionAnswering,
    default_metric="f1",
    read=read,
    encode=encode,
    collate=collate,
    evaluate=evaluate,
)
