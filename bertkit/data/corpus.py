"""Reading a raw corpus in the google-research/bert format: one sentence per line, blank line between documents.

files = resolve_files(["data/zh/*.txt"])
for document in read_documents(files):   # a document is a list of sentences
    ...
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

from bertkit.errors import BertkitError

TEXT_SUFFIXES = {".txt", ".text"}


def resolve_files(patterns: list[str]) -> list[Path]:
    """Expand globs and directories (their *.txt files) into a sorted, de-duplicated list of files."""
    if not patterns:
        raise BertkitError("data.files is empty; set it in the recipe or pass data.files=path/to/corpus.txt")
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
            if not found:
                raise BertkitError(f"{path}: directory holds no .txt files; check data.files")
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


def read_documents(files: list[Path]) -> Iterator[list[str]]:
    """Yield documents (lists of non-empty, stripped sentences) from all files, in order."""
    for path in files:
        document: list[str] = []
        try:
            with open(path, "rb") as f:
                for line_no, raw in enumerate(f, 1):
                    try:
                        line = raw.decode("utf-8").strip()
                    except UnicodeDecodeError:
                        raise BertkitError(f"{path}:{line_no}: not UTF-8 text; convert the file to UTF-8") from None
                    if line:
                        document.append(line)
                    elif document:
                        yield document
                        document = []
        except OSError as e:
            raise BertkitError(f"{path}: cannot read ({e.strerror})") from None
        if document:
            yield document
