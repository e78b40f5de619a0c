"""Reading a raw corpus as a stream of documents, each a list of sentences.

    files = resolve_files(["data/zh/*.txt", "dumps/"])        # globs, directories, .gz/.bz2/.xz, .jsonl
    files = resolve_files(["s3://bucket/corpus/*.txt.gz", "hf://datasets/owner/name/zh/"])  # fsspec URLs
    files = resolve_files(["hf:wikimedia/wikipedia:20231101.zh:train[:100000]"])            # a data set, streamed
    report = ReadReport()
    for document in read_documents(files, cfg.data, report):   # streams: memory does not grow with the corpus
        ...
    report.summary()   # "skipped 2 lines (not UTF-8: 2); first at a.txt:17"

Plain text is google-research/bert's format: one sentence per line, a blank line between documents. In JSONL
each line is one document whose `data.text_field` holds its text (sentences on separate lines or, with
`data.split_sentences`, split at 。！？； and English sentence ends). Bad lines follow `data.on_error`: `skip`
counts them and reports the first, `strict` stops with file:line; a JSONL file whose first object has no
`data.text_field` always stops. A UTF-8 BOM at the start of a file is dropped.

Remote files are URLs that fsspec opens (`hf://` through huggingface_hub, `s3://` with s3fs, `gs://` with gcsfs,
`https://` with aiohttp): read as a stream like local files, globs and directories included. A `datasets` data
set (`hf:name[:config]:split`, on the Hub or a local dir) is streamed (`load_dataset(..., streaming=True)`, so
nothing is downloaded whole); each row is a document whose `data.text_field` holds its text, as in JSONL, and a
split may be cut to its first rows (`train[:100000]`).
"""

from __future__ import annotations

import bz2
import codecs
import glob
import gzip
import json
import lzma
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bertkit.config.sections import DataConfig
from bertkit.errors import BertkitError
from bertkit.hub import data_set_ref

# A corpus source: a local file, a URL (str with "://") or a data set (str "hf:name[:config]:split").
Source = Path | str
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
FIRST_ROWS = re.compile(r"(?P<split>[^\[]+)\[:(?P<rows>\d+)\]")

OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
TEXT_SUFFIXES = {".txt", ".text", ".jsonl"}

# A sentence ends after Chinese 。！？； (and closing quotes/brackets that follow), or after English . ! ?
# (and closing quotes) followed by whitespace.
_SENTENCE_END = re.compile(
    r"(?<=[。！？；])(?![”’」』）)\]])|(?<=[。！？；][”’」』）)\]])"  # Chinese: right after the mark (and quote)
    r"|(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+"  # English: the space after the mark (and quote)
)


def _suffixes(path: Source) -> tuple[str, str]:
    """(format suffix, compression suffix) of e.g. corpus.jsonl.gz → ('.jsonl', '.gz')."""
    path = Path(path)
    compression = path.suffix.lower() if path.suffix.lower() in OPENERS else ""
    stem = path.with_suffix("") if compression else path
    return stem.suffix.lower(), compression


def resolve_files(patterns: list[str]) -> list[Source]:
    """Expand globs and directories (their .txt/.jsonl files, compressed or not), local or remote, into a sorted,
    de-duplicated list of files; a data set stays as it is."""
    if not patterns:
        raise BertkitError("data.files is empty; set it in the recipe or pass data.files=path/to/corpus.txt")
    files: list[Source] = []
    for pattern in patterns:
        path = Path(pattern)
        if URL.match(pattern):
            found = _remote_files(pattern)
        elif data_set_ref(pattern):
            found = [pattern]
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _suffixes(p)[0] in TEXT_SUFFIXES)
            if not found:
                raise BertkitError(
                    f"{path}: directory holds no .txt or .jsonl files (compressed or not); check data.files"
                )
        elif glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise BertkitError(f"{pattern}: pattern matches no files; check data.files")
        elif path.is_file():
            found = [path]
        else:
            raise BertkitError(f"{path}: no such file; check data.files in the recipe")
        files.extend(f for f in found if f not in files)
    return files


def _filesystem(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:  # fsspec names the package: "Install s3fs to access S3"
        raise BertkitError(f"{url}: cannot open this kind of URL ({e}); pip install that package") from None
    except ValueError as e:
        raise BertkitError(f"{url}: not a URL fsspec knows ({e}); check data.files") from None


def _remote_files(url: str) -> list[str]:
    """The files a URL names, as URLs: itself, a glob's matches, or a directory's .txt/.jsonl files."""
    fs, path = _filesystem(url)
    try:
        if glob.has_magic(path):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            empty = "pattern matches no files"
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if _suffixes(p)[0] in TEXT_SUFFIXES)
            empty = "directory holds no .txt or .jsonl files (compressed or not)"
        else:
            found = [path] if fs.isfile(path) else []
            empty = "no such file"
    except OSError as e:
        raise BertkitError(f"{url}: cannot list it ({e}); check the URL and your credentials") from None
    if not found:
        raise BertkitError(f"{url}: {empty}; check data.files")
    return [fs.unstrip_protocol(p) for p in found]


def total_bytes(files: list[Source]) -> int | None:
    """The corpus' size in bytes, None when a data set (streamed, size unknown) is part of it."""
    if any(data_set_ref(f) for f in files if isinstance(f, str)):
        return None
    total = 0
    for f in files:
        if isinstance(f, Path):
            total += f.stat().st_size
        else:
            fs, path = _filesystem(f)
            total += fs.size(path) or 0
    return total


def split_sentences(text: str) -> list[str]:
    """Split a line at Chinese 。！？； and English . ! ? followed by a space; empty pieces dropped."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


@dataclass
class ReadReport:
    """What reading saw: bytes, documents, and the lines it skipped (with the first one's place)."""

    bytes_read: int = 0
    documents: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    first_skipped: str | None = None

    def skip(self, where: str, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.first_skipped = self.first_skipped or f"{where} ({reason})"

    def summary(self) -> str | None:
        if not self.skipped:
            return None
        counts = ", ".join(f"{reason}: {n}" for reason, n in self.skipped.items())
        return f"skipped {sum(self.skipped.values())} lines ({counts}); first at {self.first_skipped}"


class _Lines:
    """Decoded, stripped lines of one file with the bad-line policy applied."""

    def __init__(self, path: Source, cfg: DataConfig, report: ReadReport):
        self.path, self.cfg, self.report = path, cfg, report

    def problem(self, line_no: int, reason: str, fix: str) -> None:
        where = f"{self.path}:{line_no}"
        if self.cfg.on_error == "strict":
            raise BertkitError(f"{where}: {reason}; {fix}, or set data.on_error=skip")
        self.report.skip(where, reason)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        _, compression = _suffixes(self.path)
        if isinstance(self.path, Path):
            opener = OPENERS.get(compression, open)
        else:
            import fsspec

            opener = partial(fsspec.open, compression="infer")
        limit = self.cfg.max_line_chars
        cap = 4 * limit + 2  # bytes: a UTF-8 character takes at most 4; reads never hold more than this
        try:
            with opener(self.path, "rb") as f:
                line_no = 0
                while raw := f.readline(cap):
                    line_no += 1
                    self.report.bytes_read += len(raw)
                    too_long = len(raw) == cap and not raw.endswith(b"\n")
                    while too_long and (rest := f.readline(cap)):  # skip the rest of an over-long line
                        self.report.bytes_read += len(rest)
                        if rest.endswith(b"\n"):
                            break
                    if line_no == 1:  # a UTF-8 BOM is no character of the first sentence (str.strip keeps it)
                        raw = raw.removeprefix(codecs.BOM_UTF8)
                    try:
                        line = raw.decode("utf-8").strip()
                    except UnicodeDecodeError:
                        if not too_long:
                            self.problem(line_no, "not UTF-8", "convert the file to UTF-8")
                            continue
                        line = raw.decode("utf-8", "replace")
                    if too_long or len(line) > limit:
                        self.problem(
                            line_no,
                            f"line longer than {limit} characters",
                            "split it into sentences or raise data.max_line_chars",
                        )
                        continue
                    yield line_no, line
        except (OSError, EOFError, lzma.LZMAError) as e:
            raise BertkitError(f"{self.path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _plain_documents(lines: _Lines, split: bool) -> Iterator[list[str]]:
    document: list[str] = []
    for _, line in lines:
        if line:
            document.extend(split_sentences(line) if split else [line])
        elif document:
            yield document
            document = []
    if document:
        yield document


def _jsonl_documents(lines: _Lines, text_field: str, split: bool) -> Iterator[list[str]]:
    field_seen = False
    for line_no, line in lines:
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            lines.problem(line_no, f"not valid JSON ({e.msg})", "fix the line")
            continue
        if not isinstance(record, dict):
            lines.problem(line_no, "not a JSON object", "make each line an object with a data.text_field field")
            continue
        if text_field not in record and not field_seen:
            # The file's first object lacks the field: the setting is wrong, not the line (skipping every line
            # would end in an empty corpus), whatever data.on_error says.
            raise BertkitError(
                f"{lines.path}:{line_no}: no text field '{text_field}' (fields: {', '.join(record) or 'none'}); "
                "set data.text_field to the field that holds the text"
            )
        field_seen = True
        text = record.get(text_field)
        if not isinstance(text, str):
            lines.problem(line_no, f"no text in field '{text_field}'", "give the line a string in that field")
            continue
        if document := _text_document(text, split):
            yield document


def _text_document(text: str, split: bool) -> list[str]:
    """The sentences of one document's text: its non-empty lines, split into sentences when asked."""
    document = []
    for part in text.splitlines():
        part = part.strip()
        if part:
            document.extend(split_sentences(part) if split else [part])
    return document


def _data_set_documents(lines: _Lines) -> Iterator[list[str]]:
    """Documents of a data set split, streamed: one per row, from its `text_field` (bad rows are bad lines, at
    `source:row`)."""
    source, cfg = lines.path, lines.cfg
    ref = data_set_ref(source)
    first = FIRST_ROWS.fullmatch(ref.split)
    if "[" in ref.split and not first:
        raise BertkitError(f"{source}: a streamed corpus can only be cut to its first rows, e.g. train[:100000]")
    try:
        rows = ref.load(split=first["split"] if first else None, streaming=True)
        if first:
            rows = rows.take(int(first["rows"]))
        for n, row in enumerate(rows, 1):
            if n == 1 and cfg.text_field not in row:
                raise BertkitError(
                    f"{source}: no text field '{cfg.text_field}' (fields: {', '.join(row) or 'none'}); "
                    "set data.text_field to the column that holds the text"
                )
            text = row.get(cfg.text_field)
            if not isinstance(text, str):
                lines.problem(n, f"no text in field '{cfg.text_field}'", "give the row a string in that field")
                continue
            lines.report.bytes_read += len(text.encode("utf-8"))
            if any(len(line) > cfg.max_line_chars for line in text.splitlines()):
                lines.problem(
                    n,
                    f"a line longer than {cfg.max_line_chars} characters",
                    "set data.split_sentences=true and raise data.max_line_chars",
                )
                continue
            if document := _text_document(text, cfg.split_sentences):
                yield document
    # Not found, or offline and not cached (OSError); an unknown config or split (ValueError).
    except (OSError, ValueError, KeyError) as e:
        first_line = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise BertkitError(
            f"{source}: cannot stream it ({type(e).__name__}: {first_line}); check the name, config and split "
            "(HF_HUB_OFFLINE=1 reads only the cache)"
        ) from e


def read_documents(files: list[Source], cfg: DataConfig, report: ReadReport | None = None) -> Iterator[list[str]]:
    """Stream documents (lists of non-empty sentences) from all files, in order."""
    report = report if report is not None else ReadReport()
    for path in files:
        lines = _Lines(path, cfg, report)
        if isinstance(path, str) and data_set_ref(path):
            documents = _data_set_documents(lines)
        elif _suffixes(path)[0] == ".jsonl":
            documents = _jsonl_documents(lines, cfg.text_field, cfg.split_sentences)
        else:
            documents = _plain_documents(lines, cfg.split_sentences)
        for document in documents:
            report.documents += 1
            yield document
