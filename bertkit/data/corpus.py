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
`data.split_sentences`, split at 。！？； and English sentence ends); a Parquet file's rows are documents the
same way. Bad lines follow `data.on_error`: `skip` counts them and reports the first, `strict` stops with
file:line; a JSONL file whose first object has no `data.text_field` always stops, and so does a file with more
than `data.max_skipped_share` of its lines bad (a wrong encoding or format, not a few broken lines).

Text is UTF-8 unless a byte-order mark (UTF-8, UTF-16, UTF-32: certain, so it decides) or `data.encoding` says
otherwise. A file that does not decode is refused with the encoding its start reads as (charset-normalizer's
guess, named, never used). Lines end at \n, \r\n or \r (bertkit.textfile): files whose encoding keeps
b"\n" a line end (UTF-8, GBK, GB18030, Big5, Shift-JIS) are read as byte lines, the fast way; UTF-16/32 and
CR-only (old Mac) files through a text decoder.

Remote files are URLs that fsspec opens (`hf://` through huggingface_hub, `s3://` with s3fs, `gs://` with gcsfs,
`https://` with aiohttp): read as a stream like local files, globs and directories included. A `datasets` data
set (`hf:name[:config]:split`, on the Hub or a local dir) is streamed (`load_dataset(..., streaming=True)`, so
nothing is downloaded whole); each row is a document whose `data.text_field` holds its text, as in JSONL, and a
split may be cut to its first rows (`train[:100000]`).
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import glob
import gzip
import io
import json
import lzma
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bertkit.config.sections import DataConfig
from bertkit.errors import BertkitError
from bertkit.hub import data_set_ref
from bertkit.textfile import split_lines

# A corpus source: a local file, a URL (str with "://") or a data set (str "hf:name[:config]:split").
Source = Path | str
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
FIRST_ROWS = re.compile(r"(?P<split>[^\[]+)\[:(?P<rows>\d+)\]")

OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
TEXT_SUFFIXES = {".txt", ".text", ".jsonl"}

HEAD_BYTES = 1 << 16  # a file's start: its byte-order mark and line ends, and on error the encoding it reads as
JUDGED_FROM = 1000  # lines: from here on a file's share of bad lines is judged at each one (fail fast)
# Byte-order marks, UTF-32's first (UTF-32 LE's starts with UTF-16 LE's). The byte reader drops UTF-8's.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF8, "utf-8"),
)

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
        elif path.exists():
            raise BertkitError(
                f"{path}: not a regular file (a device, pipe or socket); give a corpus file in data.files"
            )
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


def _open(path: Source):
    """`path` to open for reading bytes (`with _open(path) as f`), decompressed by its suffix; local or a URL."""
    if isinstance(path, Path):
        return OPENERS.get(_suffixes(path)[1], open)(path, "rb")
    import fsspec

    return fsspec.open(path, "rb", compression="infer")


def _newline_is_a_byte(encoding: str) -> bool:
    """Whether each b"\\n" byte of text in `encoding` is a line end: so in ASCII-compatible encodings (UTF-8, GBK,
    GB18030, Big5, Shift-JIS: no byte of a multi-byte character is 0x0A), not in UTF-16/32."""
    return codecs.getincrementaldecoder(encoding)().decode(b"\n") == "\n"


def _encoding_hint(path: Source, head: bytes) -> str:
    """How to read a file whose lines do not decode, from the encoding its start reads as: charset-normalizer's
    guess, named in the error and never used to decode (a guess is not certain)."""
    from charset_normalizer import from_bytes

    best = from_bytes(head).best()
    guess = codecs.lookup(best.encoding).name if best else None  # utf-16-le, gb18030, cp932: iconv takes them too
    if b"\0" in head and not (guess or "").startswith(("utf-16", "utf-32")):
        return "it holds NUL bytes, so it is not text (binary data?); give text files, one sentence per line"
    if guess is None:
        return "no known text encoding fits it; convert it to UTF-8"
    convert = f"iconv -f {guess.upper()} -t UTF-8"
    if isinstance(path, Path) and not _suffixes(path)[1]:
        convert += f" {path} > {path.with_suffix('.utf8' + path.suffix)}"
    return f"it reads as {guess.upper()}: set data.encoding={guess}, or convert it: {convert}"


class _Lines:
    """Decoded, stripped lines of one file with the bad-line policy applied."""

    def __init__(self, path: Source, cfg: DataConfig, report: ReadReport):
        self.path, self.cfg, self.report = path, cfg, report
        self.bad: dict[str, int] = {}  # this file's skipped lines by reason
        self.fixes: dict[str, str] = {}
        self.head, self.encoding = b"", cfg.encoding or "utf-8"

    def problem(self, line_no: int, reason: str, fix: str) -> None:
        where = f"{self.path}:{line_no}"
        if self.cfg.on_error == "strict":
            raise BertkitError(f"{where}: {reason}; {fix}, or set data.on_error=skip")
        self.report.skip(where, reason)
        self.bad[reason] = self.bad.get(reason, 0) + 1
        self.fixes[reason] = fix
        if line_no >= JUDGED_FROM:
            self.judge(line_no, at_end=False)

    def judge(self, lines: int, at_end: bool) -> None:
        """Refuse the file when more than data.max_skipped_share of its first `lines` lines were bad."""
        skipped = sum(self.bad.values())
        if skipped <= self.cfg.max_skipped_share * lines:
            return
        reason = max(self.bad, key=self.bad.__getitem__)
        fix = _encoding_hint(self.path, self.head) if reason == self.undecodable else self.fixes[reason]
        counts = ", ".join(f"{r}: {n}" for r, n in self.bad.items())
        raise BertkitError(
            f"{self.path}: {skipped} of {'its' if at_end else 'its first'} {lines} lines skipped ({counts}), over "
            f"data.max_skipped_share={self.cfg.max_skipped_share:g}; {fix}"
        )

    @property
    def undecodable(self) -> str:
        """The reason a line that does not decode is skipped for."""
        return "not UTF-8" if self.encoding == "utf-8" else f"not {self.encoding}"

    @property
    def decode_fix(self) -> str:
        return "convert the file to UTF-8" if self.encoding == "utf-8" else "check data.encoding"

    def too_long(self, line_no: int) -> None:
        limit = self.cfg.max_line_chars
        self.problem(
            line_no, f"line longer than {limit} characters", "split it into sentences or raise data.max_line_chars"
        )

    def __iter__(self) -> Iterator[tuple[int, str]]:
        with self.reading() as f:
            self.head = f.read(HEAD_BYTES)
        # A byte-order mark is certain: it decides over data.encoding.
        self.encoding = next((enc for bom, enc in BOMS if self.head.startswith(bom)), self.encoding)
        cr_only = b"\r" in self.head and b"\n" not in self.head  # old Mac files end lines with \r alone
        # The reader is returned, not delegated to (yield from): one generator a line, as fast as before.
        return self._byte_lines() if _newline_is_a_byte(self.encoding) and not cr_only else self._text_lines()

    @contextlib.contextmanager
    def reading(self):
        """The file opened for bytes; a failed read is one error naming it."""
        try:
            with _open(self.path) as f:
                yield f
        except (OSError, EOFError, lzma.LZMAError) as e:
            raise BertkitError(f"{self.path}: cannot read ({getattr(e, 'strerror', None) or e})") from None

    def _byte_lines(self) -> Iterator[tuple[int, str]]:
        """Lines split at b"\\n" and decoded one by one: a bad line is skipped alone, and the UTF-8 path stays fast."""
        limit, encoding = self.cfg.max_line_chars, self.encoding
        cap = 4 * limit + 2  # bytes: a character takes at most 4; reads never hold more than this
        line_no = 0
        with self.reading() as f:
            while raw := f.readline(cap):
                line_no += 1
                self.report.bytes_read += len(raw)
                if len(raw) == cap and not raw.endswith(b"\n"):
                    while rest := f.readline(cap):  # skip the rest of an over-long line
                        self.report.bytes_read += len(rest)
                        if rest.endswith(b"\n"):
                            break
                    self.too_long(line_no)
                    continue
                if line_no == 1:  # a UTF-8 BOM is no character of the first sentence (str.strip keeps it)
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                try:
                    line = raw.decode(encoding).strip()
                except UnicodeDecodeError:
                    self.problem(line_no, self.undecodable, self.decode_fix)
                    continue
                if len(line) > limit:
                    self.too_long(line_no)
                    continue
                yield line_no, line
        self.judge(line_no, at_end=True)

    def _text_lines(self) -> Iterator[tuple[int, str]]:
        """Lines of a UTF-16/32 or CR-only file through a text decoder (newline=None: lines end at \\n, \\r\\n and
        \\r); a byte that does not decode becomes U+FFFD and skips its line."""
        limit = self.cfg.max_line_chars
        line_no = read = 0
        with self.reading() as f:
            text = io.TextIOWrapper(f, self.encoding, errors="replace", newline=None)
            while line := text.readline(limit + 1):  # characters: reads never hold more
                line_no += 1
                too_long = len(line) > limit and not line.endswith("\n")
                while too_long and (rest := text.readline(limit + 1)) and not rest.endswith("\n"):
                    pass
                self.report.bytes_read += f.tell() - read  # the decoder reads ahead: bytes are known per block
                read = f.tell()
                if too_long:
                    self.too_long(line_no)
                elif "\ufffd" in line:
                    self.problem(line_no, self.undecodable, self.decode_fix)
                else:
                    yield line_no, line.removeprefix("\ufeff").strip()
        self.judge(line_no, at_end=True)


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
        if isinstance(record, list):  # a .json file's array renamed .jsonl: one line, or one per object
            lines.problem(line_no, "a JSON array, not an object", "give one object a line: jq -c '.[]' makes them")
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
    for part in split_lines(text):
        part = part.strip()
        if part:
            document.extend(split_sentences(part) if split else [part])
    return document


def _row_documents(lines: _Lines, texts: Iterator[object]) -> Iterator[list[str]]:
    """Documents of a table's rows (a data set's, a Parquet file's), one a row, from its text (a row without a
    string, or with an over-long line, is a bad line at `source:row`)."""
    cfg, n = lines.cfg, 0
    for n, text in enumerate(texts, 1):
        if not isinstance(text, str):
            lines.problem(n, f"no text in field '{cfg.text_field}'", "give the row a string in that field")
            continue
        lines.report.bytes_read += len(text.encode("utf-8"))
        if any(len(line) > cfg.max_line_chars for line in split_lines(text)):
            lines.problem(
                n,
                f"a line longer than {cfg.max_line_chars} characters",
                "set data.split_sentences=true and raise data.max_line_chars",
            )
            continue
        if document := _text_document(text, cfg.split_sentences):
            yield document
    lines.judge(n, at_end=True)


def _no_field(source: Source, field: str, fields: list[str]) -> BertkitError:
    return BertkitError(
        f"{source}: no text field '{field}' (fields: {', '.join(fields) or 'none'}); "
        "set data.text_field to the column that holds the text"
    )


def _data_set_texts(source: str, field: str) -> Iterator[object]:
    """The texts of a data set split's rows, streamed."""
    ref = data_set_ref(source)
    first = FIRST_ROWS.fullmatch(ref.split)
    if "[" in ref.split and not first:
        raise BertkitError(f"{source}: a streamed corpus can only be cut to its first rows, e.g. train[:100000]")
    try:
        rows = ref.load(split=first["split"] if first else None, streaming=True)
        if first:
            rows = rows.take(int(first["rows"]))
        for n, row in enumerate(rows, 1):
            if n == 1 and field not in row:
                raise _no_field(source, field, list(row))
            yield row.get(field)
    # Not found, or offline and not cached (OSError); an unknown config or split (ValueError).
    except (OSError, ValueError, KeyError) as e:
        first_line = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise BertkitError(
            f"{source}: cannot stream it ({type(e).__name__}: {first_line}); check the name, config and split "
            "(HF_HUB_OFFLINE=1 reads only the cache)"
        ) from e


def _parquet_texts(source: Source, field: str) -> Iterator[object]:
    """The texts of a Parquet file's rows, a batch of rows in memory at a time."""
    import pyarrow.parquet as pq

    with _open(source) as f:
        try:
            table = pq.ParquetFile(f)
        except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
            raise BertkitError(f"{source}: not a Parquet file ({e}); check data.files") from None
        if field not in table.schema_arrow.names:
            raise _no_field(source, field, table.schema_arrow.names)
        for batch in table.iter_batches(batch_size=1000, columns=[field]):
            yield from batch.column(0).to_pylist()


def read_documents(files: list[Source], cfg: DataConfig, report: ReadReport | None = None) -> Iterator[list[str]]:
    """Stream documents (lists of non-empty sentences) from all files, in order."""
    report = report if report is not None else ReadReport()
    for path in files:
        lines = _Lines(path, cfg, report)
        kind = _suffixes(path)[0]
        if isinstance(path, str) and data_set_ref(path):
            documents = _row_documents(lines, _data_set_texts(path, cfg.text_field))
        elif kind == ".parquet":
            documents = _row_documents(lines, _parquet_texts(path, cfg.text_field))
        elif kind == ".jsonl":
            documents = _jsonl_documents(lines, cfg.text_field, cfg.split_sentences)
        elif kind == ".json":  # one JSON value: nothing to stream, and no line of it is a document
            raise BertkitError(
                f"{path}: a .json file is no corpus format; give JSONL, one object a line with its text in "
                f"data.text_field (jq -c '.[]' {path} > {Path(path).with_suffix('.jsonl')}), or plain text"
            )
        else:
            documents = _plain_documents(lines, cfg.split_sentences)
        for document in documents:
            report.documents += 1
            yield document
