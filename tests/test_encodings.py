"""Text encodings and line ends of the corpus, and the one line splitter (bertkit/textfile.py) of every reader.

A byte-order mark decides; data.encoding names the rest; a file that is mostly not decodable is refused with the
encoding its start reads as; CR-only files are lines; U+2028 and its kin are characters inside a line.
"""

from __future__ import annotations

import bz2
import gzip
import json
import tracemalloc

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DATA, RECIPE
from pydantic import ValidationError

from bertkit.commands.embed import read_texts
from bertkit.commands.tokenize import run_tokenize
from bertkit.config import load_recipe
from bertkit.config.sections import DataConfig
from bertkit.data.corpus import ReadReport, read_documents, resolve_files
from bertkit.errors import BertkitError
from bertkit.plots import read_metrics
from bertkit.tasks.common import read_rows
from bertkit.textfile import split_lines
from bertkit.tokenizer.words import _user_words

TEXT = "第一句。\n第二句。\n\nSecond document.\nIts second line.\n"
DOCS = [["第一句。", "第二句。"], ["Second document.", "Its second line."]]
# A Chinese corpus of 2000 lines, a blank line between documents of two sentences.
ZH = "".join(f"第{i}篇文章的第一句话。\n这是第二句话，说明了一些事情。\n\n" for i in range(700))


def _read(files, **cfg):
    report = ReadReport()
    return list(read_documents(files, DataConfig(**cfg), report)), report


def test_split_lines_ends_lines_where_files_do_and_nowhere_else():
    assert split_lines("a\nb\r\nc\rd") == ["a", "b", "c", "d"]
    assert split_lines("a\n\nb\n") == ["a", "", "b"] and split_lines("") == [] and split_lines("\n") == [""]
    inside = "一\u2028二\u2029三\x85四\x1c五\x1d六\x1e七\x0b八\x0c九"
    assert split_lines(f"{inside}\nx") == [inside, "x"]


@pytest.mark.parametrize(
    "encoding",
    ["utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom", "utf-32", "utf-32-be-bom"],
)
@pytest.mark.parametrize("compress", [None, gzip.compress, bz2.compress])
def test_a_byte_order_mark_decides_the_encoding(tmp_path, encoding, compress):
    codec, bom = encoding.removesuffix("-bom"), encoding.endswith("-bom")
    data = ("\ufeff" + TEXT if bom else TEXT).encode(codec)  # "utf-16" and "utf-32" write their mark themselves
    suffix = {None: "", gzip.compress: ".gz", bz2.compress: ".bz2"}[compress]
    path = tmp_path / f"c.txt{suffix}"
    path.write_bytes(compress(data) if compress else data)
    docs, report = _read([path], on_error="strict", encoding="gbk")  # the mark wins over data.encoding
    assert docs == DOCS and report.bytes_read == len(data)


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "big5", "shift_jis", "utf-16-le", "utf-16-be"])
def test_data_encoding_decodes_a_file_without_a_mark(tmp_path, encoding):
    text = "第一句。\r\n第二句。\r\n\r\nSecond document.\nIts second line.\n"  # CRLF, then LF: both are line ends
    if encoding == "shift_jis":
        text = text.replace("第一句", "最初の文").replace("第二句", "二番目の文")
    path = tmp_path / "c.txt"
    path.write_bytes(text.encode(encoding))
    docs, _ = _read([path], on_error="strict", encoding=encoding)
    assert docs == [[line.strip() for line in split_lines(text)[:2]], DOCS[1]]


def test_utf16_and_cr_only_copies_tokenize_to_the_utf8_vocabulary(tmp_path):
    """The silent wrong result of issue 26: a UTF-16 corpus made a junk vocabulary with exit 0."""
    text = (DATA / "zh" / "corpus-a.txt").read_text(encoding="utf-8")
    copies = {"utf8": text.encode(), "utf16": text.encode("utf-16"), "cr": text.replace("\n", "\r").encode()}
    vocabularies = {}
    for name, data in copies.items():
        (tmp_path / f"{name}.txt").write_bytes(data)
        overrides = [f"output_dir={tmp_path / name}", f"data.files={tmp_path / name}.txt", "tokenizer.vocab_size=300"]
        tokenizer_dir, _ = run_tokenize(load_recipe(RECIPE, [*overrides, "data.num_proc=1"], "tokenize"))
        vocabularies[name] = (tokenizer_dir / "vocab.txt").read_text(encoding="utf-8")
    assert vocabularies["utf16"] == vocabularies["utf8"] == vocabularies["cr"]


def test_an_unknown_encoding_is_a_config_error():
    with pytest.raises(ValidationError, match="not a text encoding Python knows"):
        DataConfig(encoding="gbkk")
    with pytest.raises(ValidationError, match="not a text encoding Python knows"):  # a codec, not bytes to text
        DataConfig(encoding="rot13")


@pytest.mark.parametrize(
    "encoding,named",
    [("gbk", "GB18030"), ("utf-16-le", "UTF-16-LE")],  # GBK is a subset of GB18030: the guess names the latter
)
def test_a_file_in_another_encoding_is_refused_naming_it(tmp_path, encoding, named):
    path = tmp_path / "corpus.txt"
    path.write_bytes(ZH.encode(encoding))
    with pytest.raises(BertkitError) as error:
        _read([path])
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "lines skipped (not UTF-8: " in message
    assert f"it reads as {named}: set data.encoding={named.lower()}" in message
    assert f"iconv -f {named} -t UTF-8 {path} > {tmp_path / 'corpus.utf8.txt'}" in message
    assert _read([path], encoding=named.lower())[0][0] == ["第0篇文章的第一句话。", "这是第二句话，说明了一些事情。"]


def test_a_bad_file_is_refused_after_its_first_thousand_lines(tmp_path):
    """Fail fast: a mostly GBK file of a million lines is judged at its 1000th, not after reading it all."""
    path = tmp_path / "big.txt"
    path.write_bytes(ZH.encode("gbk") * 500)
    lines = 0
    with pytest.raises(BertkitError, match=r"big.txt: \d+ of its first 1000 lines skipped \(not UTF-8: \d+\)"):
        for document in read_documents([path], DataConfig()):
            lines += len(document)
    assert lines < 1000


def test_the_share_of_bad_lines_allowed(tmp_path):
    good = "好的一句。\n" * 38
    path = tmp_path / "c.txt"
    path.write_bytes(good.encode() + b"\xff bad\n" * 2)  # 2 of 40: 5%, allowed
    assert len(_read([path])[0][0]) == 38
    path.write_bytes(good.encode() + b"\xff bad\n" * 3)  # 3 of 41: over 5%
    with pytest.raises(BertkitError, match=r"c.txt: 3 of its 41 lines skipped \(not UTF-8: 3\), over data.max_s"):
        _read([path])
    assert len(_read([path], max_skipped_share=0.1)[0][0]) == 38


def test_binary_data_is_named(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(BertkitError, match="it holds NUL bytes, so it is not text"):
        _read([path])


@pytest.mark.parametrize("encoding", [None, "utf-16"])
def test_cr_only_line_ends_are_lines(tmp_path, encoding):
    path = tmp_path / "mac.txt"
    path.write_bytes(TEXT.replace("\n", "\r").encode(encoding or "utf-8"))
    assert _read([path], on_error="strict", encoding=encoding)[0] == DOCS


def test_over_long_lines_are_skipped_without_holding_them(tmp_path):
    """The text decoder's reads are capped at max_line_chars as the byte reader's are: a 20 MB UTF-16 line is
    skipped with a few MB at most in memory."""
    path = tmp_path / "long.txt"
    with open(path, "w", encoding="utf-16") as f:
        f.write("短句。\n" + "长" * 10_000_000 + "\n最后一句。\n" + "好。\n" * 40)
    tracemalloc.start()
    docs, report = _read([path])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert docs[0][:2] == ["短句。", "最后一句。"] and report.skipped == {"line longer than 20000 characters": 1}
    assert peak < 5e6
    with pytest.raises(BertkitError, match=r"long.txt:2: line longer than 20000 characters"):
        _read([path], on_error="strict")


def test_an_undecodable_line_of_a_text_decoded_file_is_a_bad_line(tmp_path):
    path = tmp_path / "c.txt"
    good = "好的一句。\n" * 30
    path.write_bytes(good.encode("utf-16-le") + b"\x00\xd8" + "断\n".encode("utf-16-le"))  # a lone surrogate
    docs, report = _read([path], encoding="utf-16-le")
    assert len(docs[0]) == 30 and report.first_skipped == f"{path}:31 (not utf-16-le)"
    with pytest.raises(BertkitError, match=r"c.txt:31: not utf-16-le; check data.encoding"):
        _read([path], encoding="utf-16-le", on_error="strict")


def test_a_remote_utf16_file_streams_as_a_local_one():
    fs = fsspec.filesystem("memory")
    fs.pipe("/enc/a.txt.gz", gzip.compress(TEXT.encode("utf-16")))
    try:
        assert _read(resolve_files(["memory://enc/a.txt.gz"]), on_error="strict")[0] == DOCS
    finally:
        fs.rm("/enc", recursive=True)


def test_a_parquet_file_is_read_one_row_a_document(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["第一句。\n第二句。", "Second document.\nIts second line."]}), path)
    assert _read([path], on_error="strict")[0] == DOCS
    with pytest.raises(BertkitError, match=r"c.parquet: no text field 'content' \(fields: id, text\); set data.text_"):
        _read([path], text_field="content")
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(BertkitError, match=r"c.parquet: not a Parquet file \("):
        _read([path])


def test_formats_that_are_no_corpus_are_named(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"text": "第一句。"}]), encoding="utf-8")
    with pytest.raises(BertkitError, match=r"c.json: a .json file is no corpus format; give JSONL.*jq -c"):
        _read([path])
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps([{"text": "第一句。"}, {"text": "第二句。"}]) + "\n", encoding="utf-8")
    with pytest.raises(BertkitError, match=r"c.jsonl: 1 of its 1 lines skipped \(a JSON array, not an object: 1\)"):
        _read([path])
    with pytest.raises(BertkitError, match="/dev/zero: not a regular file"):
        resolve_files(["/dev/zero"])


# U+2028 (and its kin) inside a line stays inside it, in every reader of text files.
INSIDE = "一\u2028二\x85三"


def test_corpus_lines_keep_u2028(tmp_path):
    (tmp_path / "c.txt").write_text(f"{INSIDE}\n句。\n", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": f"{INSIDE}\n句。"}) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": [f"{INSIDE}\n句。"]}), tmp_path / "c.parquet")
    for name in ("c.txt", "c.jsonl", "c.parquet"):
        assert _read([tmp_path / name], on_error="strict")[0] == [[INSIDE, "句。"]], name


def test_word_lists_embed_files_task_files_and_metrics_keep_u2028(tmp_path):
    words = tmp_path / "user.dict"
    words.write_text(f"词{INSIDE} 3\n另一 5\n", encoding="utf-8")  # U+2028 is a space to str.split
    with pytest.raises(BertkitError, match=r"user.dict:1: expected 'word \[frequency\] \[tag\]'"):
        _user_words(words)
    texts = tmp_path / "texts.txt"
    texts.write_text(f"{INSIDE}\r\n后\r", encoding="utf-8")
    assert read_texts(texts, "text") == [INSIDE, "后"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": INSIDE}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_rows(rows) == [{"text": INSIDE}]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "note": INSIDE}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_metrics(metrics) == [{"step": 1, "note": INSIDE}]
