"""Extractive question answering: SQuAD v1.1/v2.0 and CMRC2018-style JSON.

    examples = read(Path("data/en/qa/train.json"), task_cfg, labelled=True)   # one error for any malformed question
    best_answer([(start_logits, end_logits, offsets)], context, 20, 30, allow_no_answer=True)   # ("1998", 10.0, 17)

Files: SQuAD JSON ({"version", "data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers":
[{"text", "answer_start"}], "is_impossible"}]}]}]}). A context longer than `task.max_seq_length` is cut into
windows that overlap by `task.stride` tokens; a question is cut to its first max_seq_length − stride − 4 tokens
(BERT: 3 special ones), so that every window holds more context than the overlap. Answers are decoded n-best over
every window (`task.n_best` start and end candidates, at most `task.max_answer_length` tokens), mapped back to the
original text through character offsets.

"No answer" ("") is a property of the model: allowed when it was trained on SQuAD v2.0 data (stored as
`allow_no_answer` in its config.json; `task.allow_no_answer` overrides), it wins when the [CLS] score beats the
best span by more than `task.null_score_diff_threshold`. A file is scored by the official SQuAD v2.0 rules when
it says "version": "v2.0" or has unanswerable questions, else by v1.1's; Chinese by CMRC2018's character-level
EM/F1 (where an unanswerable question is right only with "").
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from transformers import BertForQuestionAnswering

from bertkit.config.sections import TaskConfig
from bertkit.errors import BertkitError
from bertkit.hub import data_set_ref
from bertkit.metrics import cmrc_metrics, squad_metrics
from bertkit.tasks.common import (
    TABLE_SUFFIXES,
    Task,
    collate_inputs,
    predict_rows,
    read_json,
    table_rows,
)


def squad_from_rows(rows: list[dict]) -> dict:
    """SQuAD JSON from the flat rows of the Hub's SQuAD-style data sets (squad, squad_v2, cmrc2018: id, context,
    question, answers {text: [...], answer_start: [...]}): one paragraph per row. Version 2.0 (unanswerable
    questions allowed) when a row has no answer."""
    qas = []
    for row in rows:
        qa = {"id": row.get("id"), "question": row.get("question")}
        if row.get("answers") is not None:  # a split without gold (a test set) has no answers column
            answers = row["answers"]
            pairs = zip(answers.get("text", []), answers.get("answer_start", []), strict=False)
            qa["answers"] = [{"text": t, "answer_start": s} for t, s in pairs]
            if not qa["answers"]:
                qa["is_impossible"] = True
        qas.append({"context": row.get("context"), "qas": [qa]})
    version = "v2.0" if any(p["qas"][0].get("is_impossible") for p in qas) else "1.1"
    return {"version": version, "data": [{"title": "", "paragraphs": qas}]}


def read(path: Path, cfg: TaskConfig, labelled: bool | None = None) -> list[dict]:
    """Questions of a SQuAD/CMRC JSON file as {"id", "question", "context", "label", "version"}: the label is the
    gold answers as (text, start) pairs, [] when unanswerable, None when the question has no gold. A mistake that
    would stop a run later is one error here, naming the file and the question."""
    tabular = data_set_ref(path) or Path(path).suffix.lower() in TABLE_SUFFIXES
    data = squad_from_rows(table_rows(Path(path))) if tabular else read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BertkitError(
            f"{path}: not SQuAD-format JSON (a top-level 'data' list of articles); convert it to the SQuAD layout"
        )
    version = str(data.get("version", ""))
    examples, seen = [], set()
    for a, article in enumerate(_objects(data["data"], path, "'data'"), 1):
        for p, paragraph in enumerate(_objects(article.get("paragraphs", []), path, f"article {a}: 'paragraphs'"), 1):
            where = f"article {a}, paragraph {p}"
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise BertkitError(f"{path}: {where}: no 'context' string; add the paragraph's text")
            for qa in _objects(paragraph.get("qas", []), path, f"{where}: 'qas'"):
                qid = qa.get("id")
                if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
                    raise BertkitError(f"{path}: {where}: a question without an 'id'; give each question a unique id")
                qid = str(qid)
                if qid in seen:  # predictions and golds are keyed by id: a second one would replace the first
                    raise BertkitError(f"{path}: question id {qid} appears twice; make the ids unique")
                seen.add(qid)
                question = qa.get("question")
                if not isinstance(question, str) or not question.strip():
                    raise BertkitError(f"{path}: question {qid}: no 'question' text; add it")
                label = _gold(qa, context, path, qid)
                if labelled and label is None:
                    raise BertkitError(f"{path}: question {qid} has no 'answers'; a training or dev file needs them")
                examples.append(
                    {"id": qid, "question": question, "context": context, "label": label, "version": version}
                )
    if not examples:
        raise BertkitError(f"{path}: holds no questions; check that its paragraphs have 'qas'")
    return examples


def _objects(value, path: Path, what: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BertkitError(f"{path}: {what} must be a list of objects, as in SQuAD's format")
    return value


def _gold(qa: dict, context: str, path: Path, qid: str) -> list[tuple[str, int]] | None:
    """The question's gold answers as (text, start), [] when unanswerable, None when it has no gold."""
    impossible = qa.get("is_impossible")
    if impossible is not None and not isinstance(impossible, bool):
        raise BertkitError(f"{path}: question {qid}: 'is_impossible' must be true or false, not {impossible!r}")
    if "answers" not in qa:
        if impossible is False:
            raise BertkitError(f"{path}: question {qid}: 'is_impossible' is false but it has no 'answers'; add them")
        return [] if impossible else None
    answers = qa["answers"]
    if not isinstance(answers, list):
        raise BertkitError(
            f'{path}: question {qid}: \'answers\' must be a list of {{"text", "answer_start"}} objects '
            f"([] when unanswerable), not {type(answers).__name__}"
        )
    if impossible is not None and impossible != (not answers):
        raise BertkitError(
            f"{path}: question {qid}: 'is_impossible' is {str(impossible).lower()} but it has "
            f"{len(answers) or 'no'} answer(s); make the two agree"
        )
    gold = []
    for n, answer in enumerate(answers, 1):
        if not isinstance(answer, dict):
            raise BertkitError(f'{path}: question {qid}: answer {n} must be a {{"text", "answer_start"}} object')
        text, start = answer.get("text"), answer.get("answer_start")
        if not isinstance(text, str) or not text.strip():
            raise BertkitError(f"{path}: question {qid}: answer {n} needs a non-empty 'text' string, not {text!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:  # bool: true would mean offset 1
            raise BertkitError(
                f"{path}: question {qid}: answer {n}: 'answer_start' must be the answer's character offset in its "
                f"context (an integer ≥ 0), not {start!r}"
            )
        if context[start : start + len(text)] != text:
            raise BertkitError(f"{path}: question {qid}: answer {text!r} is not at offset {start} of its context")
        gold.append((text, start))
    return gold


def is_version_2(examples: list[dict]) -> bool:
    """SQuAD v2.0 data: the file says "version": "v2.0" (or any 2.x), or a question is unanswerable."""
    return any(e["label"] == [] or e["version"].lstrip("v").startswith("2") for e in examples)


def model_settings(examples: list[dict], cfg: TaskConfig) -> dict:
    """Stored in the model's config.json: whether it may answer "no answer"; as the recipe says, else as its
    training data taught it (SQuAD v2.0)."""
    allow = cfg.allow_no_answer if cfg.allow_no_answer is not None else is_version_2(examples)
    return {"allow_no_answer": allow}


def encode(tokenizer, examples: list[dict], labels, cfg: TaskConfig, train: bool) -> list[dict]:
    enc = tokenizer(
        _fit_questions(tokenizer, examples, cfg),
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


def _fit_questions(tokenizer, examples: list[dict], cfg: TaskConfig) -> list[str]:
    """The questions, each cut to its first max_seq_length − stride − 1 − (special tokens) tokens: the tokenizers
    library panics unless every window holds more context tokens than the stride."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = cfg.max_seq_length - cfg.stride - 1 - specials
    enc = tokenizer([e["question"] for e in examples], add_special_tokens=False, return_offsets_mapping=True)
    if room < 1:
        longest = max(map(len, enc["input_ids"]))
        stride = cfg.max_seq_length - specials - longest - 1
        raise BertkitError(
            f"finetune.task.stride={cfg.stride} leaves no room for the context in finetune.task.max_seq_length="
            f"{cfg.max_seq_length}: a window holds {specials} special tokens, the question (up to {longest} tokens "
            "here) and more context tokens than the stride; "
            + (f"set stride ≤ {stride} or " if stride >= 0 else "set ")
            + f"max_seq_length ≥ {cfg.stride + specials + longest + 1}"
        )
    # Cut at a token's end offset: the text kept tokenizes to the same first `room` tokens.
    return [
        e["question"][: offsets[room - 1][1]] if len(offsets) > room else e["question"]
        for e, offsets in zip(examples, enc["offset_mapping"], strict=True)
    ]


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
    windows: list[tuple[list, list, list]],
    context: str,
    n_best: int,
    max_answer_length: int,
    allow_no_answer: bool,
    null_score_diff_threshold: float = 0.0,
) -> tuple[str, float, int | None]:
    """The best span over an example's windows: (answer text, score, its first character in `context`), or
    ("", null score, None) for "no answer".

    As transformers' run_qa: the null score is the lowest [CLS] start + end logit over the windows, and "no
    answer", when allowed, wins if the null score minus the best span's score exceeds `null_score_diff_threshold`.
    It is also the answer, allowed or not, when no n-best candidate is a valid span.

    Args:
        windows: (start logits, end logits, offsets) per window; offsets are None outside the context.
    """
    best_text, best_score, best_start = "", float("-inf"), None
    null_score = float("inf")
    for start_logits, end_logits, offsets in windows:
        null_score = min(null_score, start_logits[0] + end_logits[0])
        starts = sorted(range(len(offsets)), key=lambda i: -start_logits[i])[:n_best]
        ends = sorted(range(len(offsets)), key=lambda i: -end_logits[i])[:n_best]
        for s in starts:
            for e in ends:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = start_logits[s] + end_logits[e]
                if score > best_score:
                    best_score, best_text = score, context[offsets[s][0] : offsets[e][1]]
                    best_start = offsets[s][0]
    if best_score == float("-inf") or (allow_no_answer and null_score - best_score > null_score_diff_threshold):
        return "", null_score, None
    return best_text, best_score, best_start


def is_chinese(text: str) -> bool:
    return sum("\u4e00" <= c <= "\u9fff" for c in text) > len(text) / 4


def evaluate(model, tokenizer, examples, labels, cfg: TaskConfig, batch_size: int):
    """Predictions and, for a file with gold answers, its scores, "scoring" naming the rules used.

    "No answer" is allowed as `task.allow_no_answer` says, else as the model learned (config.json
    `allow_no_answer`). A model saved before that setting existed keeps the old behaviour: allowed only on a
    SQuAD v2.0 file. The file decides the rules: SQuAD v2.0 when it says "version": "v2.0" or has unanswerable
    questions, else v1.1; CMRC2018 for Chinese.
    """
    features = encode(tokenizer, examples, None, cfg, train=False)
    logits = predict_rows(
        model,
        features,
        partial(collate, pad_id=tokenizer.pad_token_id),
        batch_size,
        lambda out, _: torch.stack([out.start_logits, out.end_logits], 1).float().cpu().tolist(),  # (B, 2, T)
    )
    windows: list[list] = [[] for _ in examples]
    for f, (s, e) in zip(features, logits, strict=True):  # windows in document order
        n = len(f["offsets"])
        windows[f["example"]].append((s[:n], e[:n], f["offsets"]))
    version_2 = is_version_2(examples)
    allow = cfg.allow_no_answer
    if allow is None:
        allow = getattr(model.config, "allow_no_answer", version_2)
    predictions = []
    for example, example_windows in zip(examples, windows, strict=True):
        text, score, start = best_answer(
            example_windows,
            example["context"],
            cfg.n_best,
            cfg.max_answer_length,
            allow,
            cfg.null_score_diff_threshold,
        )
        predictions.append(
            {
                "id": example["id"],
                "question": example["question"],
                "prediction": text,
                # context[start:end] is the answer; None for "no answer"
                "start": start,
                "end": None if start is None else start + len(text),
                "score": round(score, 4),
                "answers": None if example["label"] is None else [t for t, _ in example["label"]],
            }
        )
    if any(e["label"] is None for e in examples):
        return None, predictions
    predicted = {p["id"]: p["prediction"] for p in predictions}
    references = {p["id"]: p["answers"] for p in predictions}
    if is_chinese(examples[0]["context"]):
        return {"scoring": "CMRC2018", **cmrc_metrics(predicted, references)}, predictions
    scoring = "SQuAD v2.0" if version_2 else "SQuAD v1.1"
    return {"scoring": scoring, **squad_metrics(predicted, references, version_2)}, predictions


TASK = Task(
    columns=lambda cfg: ["question", "context"],
    model_class=BertForQuestionAnswering,
    default_metric="f1",
    read=read,
    encode=encode,
    collate=collate,
    evaluate=evaluate,
    model_settings=model_settings,
    bookkeeping=("example", "offsets"),
)
