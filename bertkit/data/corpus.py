"""Reading a raw corpus as a stream of documents, each a list of sentences.

    files = resolve_files(["data/zh/*.txt", "dumps/"])        # globs, directories, .gz/.bz2/.xz, .jsonl
    report = ReadReport()
    for document in read_documents(files, cfg.data, report):   # streams: memory does not grow with the corpus
        ...
    report.summary()   # "skipped 2 lines (not UTF-8: 2); first at a.txt:17"

Plain text is google-research/bert's format: one sentence per line, a blank line between documents. In JSONL
each line is one document whose `data.text_field` holds its text (sentences on separate lines or, with
`data.split_sentences`, split at 。！？； and English sentence ends). Bad lines follow `data.on_error`: `skip`
counts them and reports the first, `strict` stops with file:line; a JSONL file whose first object has no
`data.text_field` always stops. A UTF-8 BOM at the start of a file is dropped.
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
from pathlib import Path

from bertkit.config import DataConfig
from bertkit.errors import BertkitError

OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
TEXT_SUFFIXES = {".txt", ".text", ".jsonl"}

# A sentence ends after Chinese 。！？； (and closing quotes/brackets that follow), or after English . ! ?
# (and closing quotes) followed by whitespace.
_SENTENCE_END = re.compile(
    r"(?<=[。！？；])(?![”’」』）)\]])|(?<=[。！？；][”’」』）)\]])"  # Chinese: right after the mark (and quote)
    r"|(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+"  # English: the space after the mark (and quote)
)


def _suffixes(path: Path) -> tuple[str, str]:
    """(format suffix, compression suffix) of e.g. corpus.jsonl.gz → ('.jsonl', '.gz')."""
    compression = path.suffix.lower() if path.suffix.lower() in OPENERS else ""
    stem = path.with_suffix("") if compression else path
    return stem.suffix.lower(), compression


def resolve_files(patterns: list[str]) -> list[Path]:
    """Expand globs and directories (their .txt/.jsonl files, compressed or not) into a sorted, de-duplicated
    list of files."""
    if not patterns:
        raise BertkitError("data.files is empty; set it in the recipe or pass data.files=path/to/corpus.txt")
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
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

    def __init__(self, path: Path, cfg: DataConfig, report: ReadReport):
        self.path, self.cfg, self.report = path, cfg, report

    def problem(self, line_no: int, reason: str, fix: str) -> None:
        where = f"{self.path}:{line_no}"
        if self.cfg.on_error == "strict":
            raise BertkitError(f"{where}: {reason}; {fix}, or set data.on_error=skip")
        self.report.skip(where, reason)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        _, compression = _suffixes(self.path)
        opener = OPENERS.get(compression, open)
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
        document = []
        for part in text.splitlines():
            part = part.strip()
            if part:
                document.extend(split_sentences(part) if split else [part])
        if document:
            yield document


def read_documents(files: list[Path], cfg: DataConfig, report: ReadReport | None = None) -> Iterator[list[str]]:
    """Stream documents (lists of non-empty sentences) from all files, in order."""
    report = report if report is not None else ReadReport()
    for path in files:
        lines = _Lines(path, cfg, report)
        if _suffixes(path)[0] == ".jsonl":
            documents = _jsonl_documents(lines, cfg.text_field, cfg.split_sentences)
        else:
            documents = _plain_documents(lines, cfg.split_sentences)
        for document in documents:
            report.documents += 1
            yield document
