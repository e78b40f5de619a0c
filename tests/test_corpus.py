"""Corpus reading: formats, compression, sentence splitting, and the bad-input policy."""

import bz2
import gzip
import json
import lzma

import pytest

from bertkit.config.sections import DataConfig
from bertkit.data.corpus import ReadReport, read_documents, resolve_files, split_sentences
from bertkit.errors import BertkitError

TEXT = "第一句。\n第二句。\n\nSecond document.\nIts second line.\n"


def _read(files, **cfg):
    report = ReadReport()
    return list(read_documents(files, DataConfig(**cfg), report)), report


@pytest.mark.parametrize("suffix,opener", [("", open), (".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)])
def test_plain_text_any_compression(tmp_path, suffix, opener):
    path = tmp_path / f"c.txt{suffix}"
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(TEXT)
    docs, report = _read(resolve_files([str(tmp_path)]))
    assert docs == [["第一句。", "第二句。"], ["Second document.", "Its second line."]]
    assert report.documents == 2 and report.bytes_read == len(TEXT.encode())


def test_jsonl_documents_with_a_text_field(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"content": "北京是首都。上海是城市！\n新段落"}, {"content": "One. Two three? Four"}, {"content": ""}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    docs, _ = _read([path], text_field="content", split_sentences=True)
    assert docs == [["北京是首都。", "上海是城市！", "新段落"], ["One.", "Two three?", "Four"]]
    with pytest.raises(BertkitError, match=r"c.jsonl:1: no text field 'text'"):
        _read([path], on_error="strict")


def test_sentence_splitting():
    assert split_sentences("他说：“走吧。”我们就走了。真的吗？是；好") == [
        "他说：“走吧。”",
        "我们就走了。",
        "真的吗？",
        "是；",
        "好",
    ]
    assert split_sentences('It works. "Yes!" she said. Pi is 3.14 today.') == [
        "It works.",
        '"Yes!"',
        "she said.",
        "Pi is 3.14 today.",
    ]


def test_non_utf8_lines_skipped_with_count_or_strict_error(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("好的。\n".encode() + b"\xff\xfe broken\n" + "还好。\n\n下一篇。\n".encode())
    docs, report = _read([path], max_skipped_share=0.2)  # 1 of 5 lines: over the default 5% (test_encodings.py)
    assert docs == [["好的。", "还好。"], ["下一篇。"]]
    assert report.skipped == {"not UTF-8": 1} and report.first_skipped == f"{path}:2 (not UTF-8)"
    assert "skipped 1 lines (not UTF-8: 1); first at" in report.summary()
    with pytest.raises(BertkitError, match=r"bad.txt:2: not UTF-8; convert the file to UTF-8, or set data.on_error"):
        _read([path], on_error="strict")


def test_a_10mb_single_line_is_skipped_without_reading_it_whole(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes("短句。\n".encode() + "长".encode() * (10 * 1024 * 1024 // 3) + "\n最后一句。\n".encode())
    docs, report = _read([path], max_skipped_share=0.5)
    assert docs == [["短句。", "最后一句。"]]
    assert report.skipped == {"line longer than 20000 characters": 1}
    with pytest.raises(BertkitError, match=r"long.txt:2: line longer than 20000 characters"):
        _read([path], on_error="strict")


def test_empty_file_and_empty_directory(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    assert _read([tmp_path / "empty.txt"])[0] == []
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.md").write_text("x")
    with pytest.raises(BertkitError, match="directory holds no .txt or .jsonl files"):
        resolve_files([str(tmp_path / "sub")])
    with pytest.raises(BertkitError, match="pattern matches no files"):
        resolve_files([str(tmp_path / "*.csv")])
