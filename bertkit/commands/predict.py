"""`bertkit predict`: a fine-tuned model on new text, one JSON line per input in input order.

    bertkit predict runs/demo-zh/finetune/topic --text "今天的比赛非常精彩"
    echo "今天的比赛非常精彩" | bertkit predict runs/demo-zh/finetune/topic -
    bertkit predict runs/demo-zh/finetune/topic new.jsonl --output predictions.jsonl [--skip-bad]

The model dir describes itself: the bertkit.yaml that `bertkit finetune` saved beside it gives the task family,
its columns and lengths (`key=value` overrides change them, e.g. finetune.task.text_column=review). Inputs:
`--text` (repeatable), `-` (standard input) and .txt files (a text a line) for the families that take raw text
(classification, multi-label, regression, and taggers: their words come from the model's tokenizer, and each
entity comes with its character offsets into the text); labelled-file formats (.jsonl, .json, .csv, .tsv,
.parquet, `hf:` data sets) for every family, read as `bertkit eval` reads them. Each line carries its input's
fields, the prediction, and the family's scores (every class's probability for classifiers).

A large input streams in bounded memory: raw text, .jsonl, .csv and .tsv a line at a time, .parquet a record
batch at a time, predicted and written CHUNK examples at a time, with a progress bar (examples/s, ETA) on stderr.
Standard input is copied to a temporary file first (it is read twice). What cannot stream is read whole: a .json
array, .arrow files, `hf:` data sets, and question answering's SQuAD files.

Nothing is half-written: a cheap first pass reads every input (UTF-8, JSON, CSV quoting, the family's columns)
before the model loads, so a bad line is one error naming file:line before any prediction is printed; with
--skip-bad each bad line is reported on stderr and left out. --output goes to a temporary sibling, renamed into
place at the end; on any error neither it nor the file is left.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from bertkit.atomic import atomic_file, claim
from bertkit.config import PredictRecipe
from bertkit.errors import BertkitError
from bertkit.hub import data_set_ref
from bertkit.progress import progress
from bertkit.tasks import get_task
from bertkit.tasks.common import BATCH_PROGRESS, ReadRows
from bertkit.tasks.predictor import Predictor

RAW_SUFFIXES = ("", ".txt")  # `-` and --text count as raw text too
STREAMED = {".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
RAW_KINDS = ("texts", "text")  # --text values; a text a line (a .txt file, standard input)
# Examples predicted and written at a time (rounded up to a multiple of predict.batch_size): memory stays flat,
# and batches are still grouped by length within a chunk, which is what makes them fast.
CHUNK = 1024
PROGRESS_FROM = 500  # a bar for the whole input beyond this many examples; below, the chunk's own bar
SHOWN_BAD = 20  # --skip-bad reports this many bad lines one by one, then their count
SPOOL_IN_MEMORY = 16 << 20  # standard input beyond this many bytes is copied to a temporary file

Record = tuple[int, object, str | None]  # (line or row number, a text or a row, why it is bad or None)


@dataclass
class Source:
    """One input as given, how it is read, and the records the first pass found bad (skipped with --skip-bad)."""

    name: str
    kind: str  # one of RAW_KINDS, one of STREAMED's values, or "whole" (read at once by the family's reader)
    texts: list[str] = field(default_factory=list)  # --text values
    spool: IO[bytes] | None = None  # standard input's copy, read by both passes
    bad: set[int] = field(default_factory=set)

    @property
    def unit(self) -> str:
        return "row" if self.kind == "parquet" else "line"

    def where(self, n: int) -> str:
        return f"{self.name}: row {n}" if self.kind == "parquet" else f"{self.name}:{n}"

    def open(self):
        if self.spool is not None:
            self.spool.seek(0)
            return contextlib.nullcontext(self.spool)
        if not Path(self.name).is_file():
            raise BertkitError(f"{self.name}: no such file")
        return open(self.name, "rb")  # bytes: lines end at "\n" alone, never at U+2028 or a lone "\r"


def run_predict(
    cfg: PredictRecipe,
    model_dir: Path,
    inputs: list[str],
    texts: list[str],
    output: Path | None,
    skip_bad: bool = False,
) -> int:
    """Predict every input (the --text values, then each input in order); JSON lines to `output` or stdout.
    Returns the number of predictions written."""
    if output is not None:
        claim(output, "--output")  # two predicts into one file: the second refuses at once
        if Path(output).exists():
            raise BertkitError(f"{output}: exists; bertkit predict writes a new file, choose another name or remove it")
    if not inputs and not texts:
        raise BertkitError("nothing to predict; give --text, a file, or - for standard input")
    sources = _sources(cfg, inputs, texts)
    try:
        total = check_inputs(cfg, sources, skip_bad)
        predictor = Predictor(cfg, model_dir)
        with _sink(output) as out:
            written = write_predictions(predictor, _examples(predictor, sources), total, out)
    finally:
        for source in sources:
            if source.spool is not None:
                source.spool.close()
    if output is not None:
        print(f"{written} predictions: {output}", file=sys.stderr)
    return written


def _sources(cfg: PredictRecipe, inputs: list[str], texts: list[str]) -> list[Source]:
    """--text first, then each input in order; standard input is spooled so that both passes can read it."""
    sources = [Source("--text", "texts", texts=list(texts))] if texts else []
    rows_stream = cfg.finetune.task.type != "question-answering"  # SQuAD files nest their questions: read whole
    for name in inputs:
        suffix = Path(name).suffix.lower()
        if name == "-":
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
            shutil.copyfileobj(sys.stdin.buffer, spool)
            sources.append(Source("<stdin>", "text", spool=spool))
        elif data_set_ref(name) is not None:
            sources.append(Source(name, "whole"))
        elif suffix in RAW_SUFFIXES:
            sources.append(Source(name, "text"))
        elif suffix in STREAMED and rows_stream:
            sources.append(Source(name, STREAMED[suffix]))
        else:
            sources.append(Source(name, "whole"))
    return sources


# ---- reading: (number, record, why it is bad) one at a time ----


def _records(source: Source) -> Iterator[Record]:
    """The source's texts or rows, lazily, each with its line (row) number, or why it cannot be read."""
    if source.kind == "texts":
        yield from ((n, text, None) for n, text in enumerate(source.texts, 1))
    elif source.kind == "parquet":
        yield from _parquet_records(source.name)
    else:
        with source.open() as f:
            lines = _decoded(f)
            if source.kind == "text":
                yield from ((n, line and line.strip(), why) for n, line, why in lines if why or line.strip())
            elif source.kind == "jsonl":
                yield from _jsonl_records(lines)
            else:
                yield from _delimited_records(lines, source)


def _decoded(f: Iterable[bytes]) -> Iterator[Record]:
    """Each line's text with its line end; a line that is not UTF-8 is (n, None, why)."""
    for n, raw in enumerate(f, 1):
        try:
            yield n, raw.decode("utf-8-sig" if n == 1 else "utf-8"), None
        except UnicodeDecodeError as e:
            bad = f"byte {raw[e.start]:#04x}, byte {e.start + 1} of the line"
            yield n, None, f"not UTF-8 ({bad}); convert the file to UTF-8"


def _jsonl_records(lines: Iterable[Record]) -> Iterator[Record]:
    for n, line, why in lines:
        if why:
            yield n, None, why
        elif line.strip():
            try:
                row = json.loads(line.removesuffix("\n").removesuffix("\r"))  # "\n" would be a stray control char
            except json.JSONDecodeError as e:
                yield n, None, f"not valid JSON ({e.msg})"
                continue
            yield (n, row, None) if isinstance(row, dict) else (n, None, "each line must be a JSON object")


QUOTING = "quote a field that holds quotes or line breaks, doubling its quotes"


def _delimited_records(lines: Iterable[Record], source: Source) -> Iterator[Record]:
    """CSV/TSV rows as dicts by the header, numbered by the line where each row begins (a quoted field may span
    lines); a malformed row or one with the wrong number of fields is bad, as is a line that is not UTF-8."""
    kind, name = ("TSV", "tab") if source.kind == "tsv" else ("CSV", "comma")
    header = None
    for n, fields, why in _csv_rows(lines, "\t" if source.kind == "tsv" else ","):
        if why and header is None and fields is not None:
            raise BertkitError(f"{source.where(n)}: malformed {kind} header ({why}); fix it")
        if why:
            yield n, None, why if fields is None else f"malformed {kind} row ({why}); {QUOTING}"
        elif header is None:
            header = _header(fields, source.where(n))
        elif len(fields) != len(header):
            yield n, None, f"{len(fields)} fields but the header has {len(header)}; quote fields that hold a {name}"
        else:
            yield n, dict(zip(header, fields, strict=True)), None


def _csv_rows(lines: Iterable[Record], delimiter: str) -> Iterator[Record]:
    """(line where the row begins, its fields, None) per non-blank row; (n, [], the csv error) for a malformed
    row; (n, None, why) for a line that is not UTF-8, which the csv reader never sees."""
    state: dict = {"start": None, "skipped": []}

    def text_lines() -> Iterator[str]:
        for n, line, why in lines:
            if why:
                state["skipped"].append((n, None, why))
                continue
            state["start"] = state["start"] or n
            yield line

    # strict: a stray quote is an error, not a field that silently runs on to the end of the file.
    reader = csv.reader(text_lines(), delimiter=delimiter, strict=True)
    while True:
        state["start"] = None
        try:
            fields, why = next(reader, None), None
        except csv.Error as e:
            fields, why = [], str(e)
        yield from state["skipped"]
        state["skipped"].clear()
        if fields is None:
            return
        if fields or why:  # not a blank line
            yield state["start"], fields, why


def _header(fields: list[str], where: str) -> list[str]:
    if len(set(fields)) < len(fields):
        twice = next(c for c in fields if fields.count(c) > 1)
        raise BertkitError(f"{where}: column '{twice}' appears twice in the header; rename one")
    return fields


def _parquet_records(name: str) -> Iterator[Record]:
    """A Parquet file's rows, a record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not Path(name).is_file():
        raise BertkitError(f"{name}: no such file")
    n = 0
    try:
        for batch in pq.ParquetFile(name).iter_batches(batch_size=CHUNK):
            for row in batch.to_pylist():
                n += 1
                yield n, row, None
    except (pa.ArrowException, OSError) as e:
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise BertkitError(f"{name}: cannot read it ({type(e).__name__}: {first}); check the file") from None


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


# ---- the first pass: every record checked, nothing predicted ----


class BadLines:
    """Where the first pass met a bad record: an error, or with --skip-bad a line on stderr (the first SHOWN_BAD)
    and a count."""

    def __init__(self, skip: bool):
        self.skip, self.count = skip, 0

    def add(self, source: Source, n: int, why: str) -> None:
        if not self.skip:
            fix = "or" if ";" in why else f"fix the {source.unit} or"
            raise BertkitError(f"{source.where(n)}: {why}; {fix} pass --skip-bad to skip bad {source.unit}s")
        source.bad.add(n)
        self.count += 1
        if self.count <= SHOWN_BAD:
            print(f"skipped {source.where(n)}: {why}", file=sys.stderr)

    def summary(self) -> None:
        if self.count > SHOWN_BAD:
            print(f"skipped {self.count} bad lines in all (the first {SHOWN_BAD} above)", file=sys.stderr)


def check_inputs(cfg: PredictRecipe, sources: list[Source], skip_bad: bool) -> int:
    """Read every input once without predicting: the number of examples to predict. A bad record is an error
    here, before anything is written (or, with `skip_bad`, reported and marked to be skipped)."""
    task, task_cfg = get_task(cfg.finetune.task.type), cfg.finetune.task
    bad, total = BadLines(skip_bad), 0
    for source in sources:
        if source.kind == "whole":
            total += len(task.read(Path(source.name), task_cfg, labelled=False))
            continue
        if source.kind in RAW_KINDS and task.raw_example is None:
            raise BertkitError(
                f"{source.name}: this model's task takes its inputs from a file with its columns (.jsonl, .csv, "
                "…), not raw text"
            )
        good, first_bad = 0, None
        for records in _chunks(_records(source), CHUNK):
            found = _bad_records(task, task_cfg, source, records)
            for n, why in found:
                first_bad = first_bad or (n, why)
                bad.add(source, n, why)
            good += len(records) - len(found)
        if first_bad and not good:  # a missing column, the wrong file: nothing to keep
            raise BertkitError(
                f"{source.name}: every {source.unit} is bad, e.g. {source.where(first_bad[0])}: {first_bad[1]}"
            )
        total += good
    bad.summary()
    if not total:
        raise BertkitError("nothing to predict; give --text, a file, or - for standard input")
    return total


def _bad_records(task, task_cfg, source: Source, records: list[Record]) -> list[tuple[int, str]]:
    """(number, why) of the chunk's bad records, in order: unreadable ones, and rows the family's reader refuses
    (a missing column, an empty text, words that are not a list)."""
    found = [(n, why) for n, _, why in records if why]
    rows = [(n, row) for n, row, why in records if not why]
    if source.kind in RAW_KINDS or not rows:
        return found
    try:
        task.read(ReadRows(source.name, [row for _, row in rows]), task_cfg, labelled=False)
    except BertkitError as chunk_error:
        refused = [(n, _refusal(task, task_cfg, source.name, row)) for n, row in rows]
        refused = [(n, why) for n, why in refused if why]
        if not refused:  # only the rows together are wrong: nothing to point at
            raise chunk_error from None
        found = sorted(found + refused)
    return found


def _refusal(task, task_cfg, name: str, row: dict) -> str | None:
    """Why the family's reader refuses this one row (its message, without the file and row it names), or None."""
    try:
        task.read(ReadRows(name, [row]), task_cfg, labelled=False)
    except BertkitError as e:
        message = str(e).removeprefix(f"{name}: ")
        return message.removeprefix("row 1: ").removeprefix("row 1 has ")
    return None


# ---- the second pass: examples, predicted and written a chunk at a time ----


def _examples(predictor, sources: list[Source]) -> Iterator[dict]:
    """Unlabelled examples of every source in order (a file's gold labels are not read), without the bad ones."""
    task_cfg = predictor.cfg.finetune.task
    for source in sources:
        if source.kind == "whole":
            yield from predictor.task.read(Path(source.name), task_cfg, labelled=False)
        elif source.kind in RAW_KINDS:
            for n, text, why in _records(source):
                if not why and n not in source.bad:
                    yield predictor.raw(text, source.name)
        else:
            for records in _chunks(_records(source), CHUNK):
                rows = [row for n, row, why in records if not why and n not in source.bad]
                if rows:
                    yield from predictor.task.read(ReadRows(source.name, rows), task_cfg, labelled=False)


def write_predictions(predictor, examples: Iterable[dict], total: int, out: TextIO) -> int:
    """Predict `examples` a chunk at a time and write each chunk's JSON lines: memory holds one chunk. A bar
    counts examples (examples/s, ETA) when there are more than PROGRESS_FROM."""
    batch_size = predictor.cfg.predict.batch_size
    size = -(-CHUNK // batch_size) * batch_size
    bar = progress(total=total, desc="predict", unit="examples") if total > PROGRESS_FROM else None
    quiet = BATCH_PROGRESS.set(bar is None)  # one bar: the whole input's, not each chunk's
    written = 0
    try:
        for chunk in _chunks(examples, size):
            predictions = predictor.predict(chunk)
            out.write("".join(map(_json_line, predictions)))
            out.flush()  # a reader of the pipe sees each chunk as it is done
            written += len(predictions)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        BATCH_PROGRESS.reset(quiet)
        if bar is not None:
            bar.close()
    return written


def _json_line(row: dict) -> str:
    # U+2028/U+2029 escaped: readers that split lines as str.splitlines does would cut a line at them.
    return json.dumps(row, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


@contextlib.contextmanager
def _sink(output: Path | None) -> Iterator[TextIO]:
    """Standard output, or a temporary sibling of `output` renamed to it on success and removed on any error."""
    if output is None:
        try:
            yield sys.stdout
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python exits
            raise SystemExit(141) from None  # 128 + SIGPIPE, the shell's code for it
        return
    output = Path(output)

    def still_new() -> None:  # a file that appeared while predicting is still never replaced
        if output.exists():
            raise BertkitError(f"{output}: exists; bertkit predict writes a new file, choose another name")

    with atomic_file(output, "w", check=still_new) as f:
        yield f
