"""Pretraining corpora that are not local files: fsspec URLs (memory:// and file:// stand in for s3:// and hf://,
which take the same path through fsspec) and `datasets` data sets streamed by name (a local mirror dir)."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import fsspec
import pytest
from conftest import DATA, RECIPE, run_cli
from datasets import Dataset, load_from_disk

from bertkit.config.sections import DataConfig
from bertkit.data.corpus import ReadReport, read_documents, resolve_files, total_bytes
from bertkit.errors import BertkitError
from bertkit.tokenizer.train import save_tokenizer

TEXT = "第一句。\n第二句。\n\nSecond document.\nIts second line.\n"
DOCS = [["第一句。", "第二句。"], ["Second document.", "Its second line."]]


def _read(files, **cfg):
    report = ReadReport()
    return list(read_documents(files, DataConfig(**cfg), report)), report


@pytest.fixture
def memory():
    fs = fsspec.filesystem("memory")
    fs.mkdir("/corpus/sub")
    fs.pipe("/corpus/a.txt", TEXT.encode())
    fs.pipe("/corpus/sub/b.txt.gz", gzip.compress(TEXT.encode()))
    fs.pipe("/corpus/notes.md", b"not corpus text")
    yield fs
    fs.rm("/corpus", recursive=True)


def test_urls_read_like_local_files_globs_directories_and_compression_included(memory):
    assert resolve_files(["memory://corpus/a.txt"]) == ["memory:///corpus/a.txt"]
    files = resolve_files(["memory://corpus"])  # a directory: its .txt/.jsonl files, compressed or not
    assert files == ["memory:///corpus/a.txt", "memory:///corpus/sub/b.txt.gz"]
    assert resolve_files(["memory://corpus/**/*.gz"]) == ["memory:///corpus/sub/b.txt.gz"]
    docs, report = _read(files)
    assert docs == DOCS + DOCS and report.bytes_read == 2 * len(TEXT.encode())
    assert total_bytes(files) == len(TEXT.encode()) + len(gzip.compress(TEXT.encode()))


@pytest.mark.parametrize(
    "url, says",
    [
        ("memory://corpus/missing.txt", "memory://corpus/missing.txt: no such file; check data.files"),
        ("memory://corpus/*.jsonl", "pattern matches no files"),
        ("nosuchscheme://bucket/a.txt", "not a URL fsspec knows"),
    ],
)
def test_a_bad_url_is_one_line(memory, url, says):
    with pytest.raises(BertkitError, match=says.replace("*", r"\*")):
        resolve_files([url])


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_a_url_whose_filesystem_is_not_installed_names_the_package():
    with pytest.raises(BertkitError, match=r"s3://bucket/a.txt: cannot open .*s3fs.*pip install"):
        resolve_files(["s3://bucket/a.txt"])


def _data_set(root: Path, texts: list) -> Path:
    """A local data set dir as the Hub lays one out (data/train-*.parquet): `text` and an `id` column."""
    (root / "data").mkdir(parents=True)
    Dataset.from_dict({"id": list(range(len(texts))), "text": texts}).to_parquet(
        str(root / "data" / "train-00000-of-00001.parquet")
    )
    return root


def test_a_data_set_streams_one_document_per_row(tmp_path):
    repo = _data_set(tmp_path / "wiki", ["第一句。\n第二句。", None, "Second document.\n\nIts second line.", ""])
    source = f"hf:{repo}:train"
    assert resolve_files([source]) == [source] and total_bytes([source]) is None  # streamed: size unknown
    docs, report = _read([source], max_skipped_share=0.25)
    assert docs == DOCS and report.skipped == {"no text in field 'text'": 1}
    assert report.first_skipped == f"{source}:2 (no text in field 'text')"
    assert _read([f"hf:{repo}:train[:1]"])[0] == DOCS[:1]
    with pytest.raises(BertkitError, match=r"hf:.*:train: no text field 'content' \(fields: id, text\)"):
        _read([source], text_field="content")
    with pytest.raises(BertkitError, match="can only be cut to its first rows"):
        _read([f"hf:{repo}:train[2:]"])
    with pytest.raises(BertkitError, match=r"hf:.*:test: cannot stream it"):
        _read([f"hf:{repo}:test"])
    with pytest.raises(BertkitError, match=r":2: no text in field"):
        _read([source], on_error="strict")


def test_tokenize_gives_the_same_examples_from_a_file_its_url_and_a_data_set(tmp_path, tokenizer):
    """The same documents as a local JSONL file, a file:// URL of it and a streamed data set: identical examples."""
    documents = (DATA / "zh" / "corpus-a.txt").read_text(encoding="utf-8").strip().split("\n\n")[:40]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in documents), encoding="utf-8")
    repo = _data_set(tmp_path / "mirror", documents)
    save_tokenizer(tokenizer, tmp_path / "tok")
    outputs = []
    for n, source in enumerate([str(corpus), corpus.as_uri(), f"hf:{repo}:train"]):
        out = tmp_path / f"out{n}"
        result = run_cli(
            "tokenize",
            RECIPE,
            f"output_dir={out}",
            f"data.files={source}",
            f"tokenizer.from_dir={tmp_path / 'tok'}",
            "data.max_seq_length=64",
            "data.num_proc=1",
        )
        assert result.exit_code == 0, result.output
        splits = load_from_disk(str(out / "data"))
        outputs.append({name: split.to_dict() for name, split in splits.items()})
        assert json.loads((out / "data" / "statistics.json").read_text())["documents"] == len(documents)
    assert outputs[0]["train"]["input_ids"] and outputs[0] == outputs[1] == outputs[2]
