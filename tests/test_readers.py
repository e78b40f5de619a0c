"""Reading task files and corpora: CSV/TSV quoting, JSONL line ends, byte order marks, and labels that must be
rejected when the file is read (file:row and the column's key)."""

import gzip
import json

import pytest

from bertkit.config.sections import DataConfig, TaskConfig
from bertkit.data.corpus import read_documents
from bertkit.errors import BertkitError
from bertkit.tasks import choice, classification
from bertkit.tasks.common import read_rows

BOM = "\ufeff"
HARD = 'a\tb, c\nd "q"'  # a tab, a comma, a line break and quotes inside one field


def test_csv_and_tsv_quoted_fields_hold_tabs_commas_and_newlines(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"a\tb, c\nd ""q""",x\n\nplain,y\n', encoding="utf-8")
    (tmp_path / "a.tsv").write_text('text\tlabel\r\n"a\tb, c\nd ""q"""\tx\r\nplain\ty\r\n', encoding="utf-8")
    for name in ("a.csv", "a.tsv"):
        assert read_rows(tmp_path / name) == [{"text": HARD, "label": "x"}, {"text": "plain", "label": "y"}]


def test_jsonl_splits_lines_at_newline_only_and_drops_crlf(tmp_path):
    path = tmp_path / "a.jsonl"
    rows = [{"text": "一\u2028二\u0085三\x1c四\u2029", "label": "x"}, {"text": "b", "label": "y"}]
    path.write_bytes("\r\n\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode() + b"\r\n")
    assert read_rows(path) == rows


@pytest.mark.parametrize(
    "name,content",
    [
        ("a.jsonl", '{"text": "文本", "label": "x"}\n{"text": "b", "label": "y"}\n'),
        ("a.csv", "text,label\n文本,x\nb,y\n"),
        ("a.tsv", "text\tlabel\n文本\tx\nb\ty\n"),
        ("a.json", '[{"text": "文本", "label": "x"}, {"text": "b", "label": "y"}]'),
    ],
)
def test_a_bom_is_dropped_from_task_files(tmp_path, name, content):
    (tmp_path / name).write_text(BOM + content, encoding="utf-8")
    examples = classification.read(tmp_path / name, TaskConfig())
    assert examples[0] == {"text": "文本", "text_pair": None, "label": "x"}


@pytest.mark.parametrize(
    "name,content",
    [
        ("c.txt", "第一句。\n第二句。\n"),
        ("c.txt.gz", "第一句。\n第二句。\n"),
        ("c.jsonl", '{"text": "第一句。\\n第二句。"}\n'),
    ],
)
def test_a_bom_is_dropped_from_corpus_files(tmp_path, name, content):
    data = (BOM + content).encode("utf-8")
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert list(read_documents([tmp_path / name], DataConfig(on_error="strict"))) == [["第一句。", "第二句。"]]


def test_a_wrong_text_field_is_an_error_naming_the_key_and_the_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"content": "一。", "id": 1}\n{"content": "二。", "id": 2}\n', encoding="utf-8")
    # Even with on_error=skip: skipping every line would only end in "corpus holds no text".
    with pytest.raises(BertkitError, match=r"c.jsonl:1: no text field 'text' \(fields: content, id\); set data.text_"):
        list(read_documents([path], DataConfig(on_error="skip")))
    # A later line without it is a bad line, skipped and counted.
    path.write_text('{"text": "一。"}\n{"body": "二。"}\n{"text": "三。"}\n', encoding="utf-8")
    assert list(read_documents([path], DataConfig(max_skipped_share=0.5))) == [["一。"], ["三。"]]


@pytest.mark.parametrize(
    "content,expected",
    [
        ("text,label\na,x\nb,y,z\n", r"a.csv:3: 3 fields but the header has 2; quote fields that hold a comma"),
        ("text,label\na\n", r"a.csv:2: 1 fields but the header has 2"),
        ('text,label\n"a,\nb\n', r"a.csv:2: malformed CSV row \(unexpected end of data\)"),
        ('text,label\n"a"b,x\n', r"a.csv:2: malformed CSV row \(',' expected after '\"'\)"),
        ("text,text\na,b\n", r"a.csv:1: column 'text' appears twice in the header"),
    ],
)
def test_malformed_csv_rows_are_errors_with_file_and_line(tmp_path, content, expected):
    (tmp_path / "a.csv").write_text(content, encoding="utf-8")
    with pytest.raises(BertkitError, match=expected):
        read_rows(tmp_path / "a.csv")


@pytest.mark.parametrize("score", ["NaN", "inf", "-Infinity", "abc", True, None, [1.0]])
def test_regression_targets_must_be_finite_numbers(tmp_path, score):
    path = tmp_path / "sts.jsonl"
    rows = [{"text": "a", "score": 1.5}, {"text": "b", "score": "2"}, {"text": "c", "score": score}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = TaskConfig(type="regression", label_column="score")
    found = r"sts.jsonl: row 3(: score .* in column 'score' is not a finite number| has no value in column 'score')"
    with pytest.raises(BertkitError, match=found):
        classification.read(path, cfg, regression=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]), encoding="utf-8")
    assert [e["label"] for e in classification.read(path, cfg, regression=True)] == [1.5, 2.0]


def test_labels_that_are_not_one_class_or_a_list_of_names(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "a", "label": ["x", "y"]}\n', encoding="utf-8")
    with pytest.raises(BertkitError, match=r"a.jsonl: row 1: label \['x', 'y'\] .* is not one class; .*multi-label"):
        classification.read(path, TaskConfig())
    (tmp_path / "m.csv").write_text("text,label\na,x| y\nb,x||y\n", encoding="utf-8")
    with pytest.raises(BertkitError, match=r"m.csv: row 2: labels 'x\|\|y' in column 'label' are not all non-empty"):
        classification.read(tmp_path / "m.csv", TaskConfig(), multi_label=True)


@pytest.mark.parametrize("label", ["abc", True, 1.5, 4, -1, "x1"])
def test_a_choice_label_must_be_an_index_into_the_choices_or_one_of_them(tmp_path, label):
    path = tmp_path / "c.jsonl"
    rows = [{"text": "t", "choices": ["a", "b", "c", "d"], "label": "3"}, {"text": "t", "choices": list("abcd")}]
    rows[1]["label"] = label
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    says = r"c.jsonl: row 2: label .* in column 'label' is neither an index into its 4 choices \(0 to 3\) nor one"
    with pytest.raises(BertkitError, match=says):
        choice.read(path, TaskConfig(type="multiple-choice"))
    path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    assert choice.read(path, TaskConfig(type="multiple-choice"))[0]["label"] == 3
