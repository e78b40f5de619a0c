"""What the task families share: the Task record, reading labelled files, padding, batched prediction.

rows = read_rows(Path("data/zh/topic/train.jsonl"))   # JSONL, JSON (a list), CSV or TSV with a header
rows = read_rows(Path("hf:clue/clue:tnews:validation"))  # a `datasets` data set: name, config, split
texts = column(rows, "text", path, "finetune.task.text_column")
probs = predict_rows(model, features, collate, 64, lambda out, batch: out.logits.softmax(-1))  # input order
"""

from __future__ import annotations

import contextvars
import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from bertkit.data.padding import pad, padded_length
from bertkit.errors import BertkitError
from bertkit.hub import data_set_ref
from bertkit.progress import progress
from bertkit.textfile import split_lines


@dataclass(frozen=True)
class Task:
    model_class: type
    default_metric: str  # the dev metric that picks the best checkpoint unless task.metric says otherwise
    read: Callable  # (path, task_cfg, labelled=None) -> examples, each with its gold answer or None
    encode: Callable  # (tokenizer, examples, labels, task_cfg, train) -> features
    collate: Callable  # (features, pad_id) -> batch of tensors
    evaluate: Callable  # (model, tokenizer, examples, labels, task_cfg, batch_size) -> (metrics | None, predictions)
    has_labels: bool = False  # a label set, stored as the model's id2label (classification, tagging)
    labels: Callable = lambda examples: None  # (examples) -> list[str] | None
    model_kwargs: Callable = lambda labels: {}  # (labels) -> from_pretrained kwargs (num_labels, id2label, …)
    # (train examples, task_cfg) -> settings learned from the training data and stored in the model's config.json
    # (e.g. whether a QA model may answer "no answer", a tagger's tag scheme); read back from model.config.
    model_settings: Callable = lambda examples, cfg: {}
    length: Callable = lambda feature: len(feature["input_ids"])  # (feature) -> tokens, for length-grouped batches
    # Feature keys that put predictions back in place (the example a window came from, its word ids or character
    # offsets): the model never reads them, so the training loader does not keep them.
    bookkeeping: tuple[str, ...] = ()
    # (task_cfg) -> {parameter name prefix: lr} for parameters trained at a rate of their own (a CRF's), or None
    own_lrs: Callable = lambda cfg: None
    bilstm_head: str | None = None  # the BiLSTM baseline's head for this family (bilstm.HEADS), None: no baseline
    confusion_matrix: bool = False  # `bertkit eval` draws one (single-label classes)
    # (text, tokenizer) -> an unlabelled example of one raw text (`bertkit predict --text`); None: it needs a file
    raw_example: Callable | None = None
    crf_class: type | None = None  # the head with a CRF (task.crf=true), tagging only
    # (task_cfg) -> the columns one input of a file (or of a `bertkit serve` request) has
    columns: Callable = lambda cfg: [cfg.text_column] + ([cfg.text_pair_column] if cfg.text_pair_column else [])

    def head(self, cfg) -> type:
        """The transformers head that finetune.task `cfg` trains."""
        return self.crf_class if cfg.crf else self.model_class

    def model_inputs(self, feature: dict) -> dict:
        """What of a training feature the model takes (inputs and targets)."""
        return {k: v for k, v in feature.items() if k not in self.bookkeeping}


def label_ids(labels: list[str]) -> dict[str, int]:
    """Label name → the id the model's head uses for it."""
    return {name: i for i, name in enumerate(labels)}


def label_kwargs(labels: list[str]) -> dict:
    """from_pretrained kwargs of a head over a label set, stored as the model's id2label/label2id."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": label_ids(labels)}


class ReadRows:
    """Rows already read from the file `name` (`bertkit predict` streams a large file a chunk at a time): a task's
    read takes it in place of a path, and its errors name the file."""

    def __init__(self, name: str, rows: list[dict]):
        self.name, self.rows = name, rows

    def __str__(self) -> str:
        return self.name


def read_rows(path: Path | ReadRows) -> list[dict]:
    """Rows of a JSONL/JSON/CSV/TSV/Parquet/Arrow file, or of a data set (`hf:name[:config]:split`), as dicts.
    CSV and TSV need a header line and follow the csv module's quoting (a quoted field may hold the delimiter, a
    line break, and quotes doubled); a UTF-8 BOM is dropped."""
    if isinstance(path, ReadRows):
        return path.rows
    path = Path(path)
    if data_set_ref(path) or path.suffix.lower() in TABLE_SUFFIXES:
        return table_rows(path)
    if not path.is_file():
        raise BertkitError(f"{path}: no such file; check the task's *_file settings")
    suffix = path.suffix.lower()
    try:
        text = path.read_bytes().decode("utf-8-sig")  # bytes: no newline translation, the readers see "\r" as is
    except UnicodeDecodeError:
        raise BertkitError(f"{path}: not UTF-8 text; convert the file to UTF-8") from None
    if suffix == ".jsonl":
        rows = _jsonl_rows(text, path)
    elif suffix == ".json":
        rows = read_json(path, text)
        if not (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)):
            raise BertkitError(
                f"{path}: a .json task file must hold a list of objects; use that, or one object per line in a "
                ".jsonl file"
            )
    elif suffix in (".csv", ".tsv"):
        rows = _delimited_rows(text, path, "\t" if suffix == ".tsv" else ",")
    else:
        raise BertkitError(f"{path}: unknown file type '{suffix}'; use .jsonl, .json, .csv or .tsv")
    if not rows:
        raise BertkitError(
            f"{path}: file holds no rows; give a file with a header line (CSV/TSV) and at least one example"
        )
    return rows


TABLE_SUFFIXES = (".parquet", ".arrow")


def table_rows(path: Path) -> list[dict]:
    """Rows of a Parquet/Arrow file or a `datasets` data set, with class ids as their names (ClassLabel columns,
    and lists of them: CLUE's labels, CoNLL-2003's tags) so that they read as a JSONL file's would; a hidden
    label (-1, as in CLUE's test splits) is no label."""
    import datasets
    from datasets import ClassLabel

    datasets.disable_progress_bars()
    ref = data_set_ref(path)
    if ref is None and not path.is_file():
        raise BertkitError(f"{path}: no such file; check the task's *_file settings")
    try:
        table = _table_file(path) if ref is None else ref.load()
    # Not found, or offline and not cached (both OSError); an unknown config or split (ValueError); a bad file.
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        how = "check the name, config and split (HF_HUB_OFFLINE=1 reads only the cache)" if ref else "check the file"
        raise BertkitError(f"{path}: cannot read it ({type(e).__name__}: {first}); {how}") from e
    rows = table.to_list()
    for name, feature in table.features.items():
        inner = getattr(feature, "feature", None)
        if isinstance(feature, ClassLabel):
            for row in rows:
                row[name] = feature.names[row[name]] if row[name] is not None and row[name] >= 0 else None
        elif isinstance(inner, ClassLabel):
            for row in rows:
                row[name] = [inner.names[i] for i in row[name]] if row[name] is not None else None
    if not rows:
        raise BertkitError(f"{path}: holds no rows; give a split with examples")
    return rows


def _table_file(path: Path):
    """A Parquet or Arrow file as a Dataset."""
    from datasets import Dataset

    if path.suffix.lower() != ".parquet":
        return Dataset.from_file(str(path))
    import pyarrow.parquet as pq

    # Its footer first: for a file that is no Parquet, datasets logs a stray "Failed to read schema…" line on
    # stderr before it raises; pyarrow raises the same ArrowInvalid (a ValueError) and logs nothing.
    pq.read_schema(str(path))
    return Dataset.from_parquet(str(path))


def _jsonl_rows(text: str, path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BertkitError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise BertkitError(f"{path}:{n}: each line must be a JSON object")
        rows.append(row)
    return rows


def _delimited_rows(text: str, path: Path, delimiter: str) -> list[dict]:
    kind, name = ("TSV", "tab") if delimiter == "\t" else ("CSV", "comma")
    # newline="": the csv module finds the line ends itself, so a quoted field may span lines. strict: a stray
    # quote is an error, not a field that silently runs on to the end of the file.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header, rows, start = None, [], 1  # start: the file line where the next row begins
    try:
        for fields in reader:
            if not fields:  # a blank line
                pass
            elif header is None:
                header = fields
                if len(set(header)) < len(header):
                    twice = next(c for c in header if header.count(c) > 1)
                    raise BertkitError(f"{path}:{start}: column '{twice}' appears twice in the header; rename one")
            elif len(fields) != len(header):
                raise BertkitError(
                    f"{path}:{start}: {len(fields)} fields but the header has {len(header)}; "
                    f"quote fields that hold a {name}, or fix the row"
                )
            else:
                rows.append(dict(zip(header, fields, strict=True)))
            start = reader.line_num + 1
    except csv.Error as e:
        raise BertkitError(
            f"{path}:{start}: malformed {kind} row ({e}); put a field that holds quotes or line breaks in quotes "
            'and double the quotes inside it ("")'
        ) from None
    return rows


def read_json(path: Path, text: str | None = None):
    try:
        return json.loads(text if text is not None else Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise BertkitError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise BertkitError(f"{path}: not UTF-8 text; convert the file to UTF-8") from None


def column(rows: list[dict], name: str, path: Path, setting: str) -> list:
    """Every row's value of `name`; one clear error for a missing column or an empty value."""
    if name not in rows[0]:
        raise BertkitError(f"{path}: no column '{name}' (columns: {', '.join(map(str, rows[0]))}); set {setting}")
    values = []
    for n, row in enumerate(rows, 1):
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise BertkitError(f"{path}: row {n} has no value in column '{name}'; fill it in or remove the row")
        values.append(value)
    return values


def text_of(value) -> str:
    """A text column's value as one text: a list of texts (C3's dialogue turns, CSL's keywords) joined by line
    breaks, which the tokenizer reads as spaces."""
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def label_set(labels) -> list[str]:
    """Sorted label names; integers in numeric order."""

    def key(label: str):
        number = label.lstrip("-").isdigit()
        return (not number, int(label) if number else 0, label)

    return sorted(set(labels), key=key)


def check_gold(examples: list[dict], labels: list[str], path: Path) -> None:
    """Gold labels (a class, or one tag per word) must be known to the model."""
    found = [
        t
        for e in examples
        if e["label"] is not None
        for t in (e["label"] if isinstance(e["label"], list) else [e["label"]])
    ]
    check_labels(found, label_ids(labels), path)


def check_labels(found, label2id: dict[str, int], path: Path) -> None:
    unknown = sorted({label for label in found if label not in label2id})
    if unknown:
        raise BertkitError(
            f"{path}: label(s) {', '.join(map(repr, unknown[:5]))} not seen in training "
            f"(known: {', '.join(label2id)}); fix the file or add examples to the train file"
        )


def collate_inputs(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids, token_type_ids and attention_mask of single sequences, padded to the batch's longest."""
    rows = [f["input_ids"] for f in features]
    length = padded_length(rows)
    return {
        "input_ids": pad(rows, pad_id, length),
        "token_type_ids": pad([f["token_type_ids"] for f in features], 0, length),
        "attention_mask": pad([[1] * len(r) for r in rows], 0, length),
    }


# Tokens per prediction batch on a CPU (rows × padded length): its matrix multiplies run fastest with about a
# thousand rows and slow down beyond (cache): BERT-small on 2 cores (AMD EPYC) predicted 200 reviews in 3.9 /
# 3.3 / 4.2 / 5.0 s with 256 / 1024 / 2048 / 8192-token batches, 5.0 s one by one. A GPU wants big batches.
CPU_BATCH_TOKENS = 1024


def _length(feature: dict) -> int:
    """Tokens of a feature; a multiple-choice feature: its longest candidate."""
    ids = feature["input_ids"]
    return max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)


def length_batches(features: list[dict], batch_size: int, batch_tokens: int | None = None) -> list[list[int]]:
    """Feature positions in batches of similar length, longest first (the first batch shows whether the longest
    fits in memory): at most `batch_size` features and, beyond one, `batch_tokens` padded tokens each (None: no
    token limit)."""
    batch_tokens = batch_tokens or float("inf")
    order = sorted(range(len(features)), key=lambda i: -_length(features[i]))
    batches: list[list[int]] = []
    for i in order:
        # Longest first: the batch's padded length is its first feature's.
        if (
            batches
            and len(batches[-1]) < batch_size
            and (len(batches[-1]) + 1) * _length(features[batches[-1][0]]) <= batch_tokens
        ):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# False: no bar per predict_batches call (`bertkit predict` shows one bar for a whole file, called a chunk at a time).
BATCH_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("batch_progress", default=True)


@torch.no_grad()
def predict_batches(
    model, features: list[dict], collate: Callable, batch_size: int
) -> Iterator[tuple[list[int], list, dict]]:
    """(positions in `features`, features of the batch, model outputs), without the training targets, in batches
    of similar length (length_batches): callers put results back at their positions."""
    model.eval()
    batch_tokens = CPU_BATCH_TOKENS if model.device.type == "cpu" else None
    batches = length_batches(features, batch_size, batch_tokens)
    for positions in progress(batches, desc="predict", leave=False, disable=not BATCH_PROGRESS.get()):
        chunk = [features[i] for i in positions]
        batch = collate(chunk)
        inputs = {
            k: v.to(model.device) for k, v in batch.items() if k in ("input_ids", "token_type_ids", "attention_mask")
        }
        yield positions, chunk, model(**inputs)


def predict_rows(model, features: list[dict], collate: Callable, batch_size: int, head: Callable) -> list:
    """`head(outputs, features of the batch)` — one result per feature of the batch — for every feature, in the
    order of `features` (predict_batches runs them longest first)."""
    rows: list = [None] * len(features)
    for positions, chunk, out in predict_batches(model, features, collate, batch_size):
        for position, row in zip(positions, head(out, chunk), strict=True):
            rows[position] = row
    return rows


def predict_probabilities(model, tokenizer, features: list[dict], collate: Callable, batch_size: int) -> torch.Tensor:
    """Softmax over the logits of every feature, (N, C): a classifier's."""
    collate = partial(collate, pad_id=tokenizer.pad_token_id)
    return predict_all(model, features, collate, batch_size, lambda out: out.logits.softmax(-1))


def predict_all(model, features: list[dict], collate: Callable, batch_size: int, head: Callable) -> torch.Tensor:
    """`head(outputs)` of every feature, in the order of `features`, on the CPU (e.g. class probabilities, (N, C))."""
    return torch.stack(predict_rows(model, features, collate, batch_size, lambda out, _: head(out).float().cpu()))
