"""`bertkit predict`: a fine-tuned model dir on new text, its own bertkit.yaml as the recipe; JSON lines in input
order, equal to eval's predictions on the same file."""

import json
import shutil
from types import SimpleNamespace

import pytest
from conftest import DATA, RECIPE, run_cli
from typer.testing import CliRunner

from bertkit.cli import app

TEST = DATA / "zh" / "topic" / "test.jsonl"


def _predict(*args, stdin: str | None = None):
    return CliRunner().invoke(app, ["predict", *map(str, args)], input=stdin, catch_exceptions=False)


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def topic(tiny_run):
    return tiny_run[0] / "finetune" / "topic"


def test_stdin_text_and_files_in_input_order(topic, tmp_path):
    texts = tmp_path / "new.txt"
    texts.write_text("股市今天大涨\n\n电影票房创新高\u2028仍是一行\n", encoding="utf-8")
    result = _predict(topic, "-", texts, "--text", "今天的比赛非常精彩", "--top-k", "2", stdin="教育改革\n")
    assert result.exit_code == 0, result.output
    rows = _lines(result.stdout)
    # --text first, then the inputs in order; blank lines skipped; U+2028 inside a line does not split it.
    expected = ["今天的比赛非常精彩", "教育改革", "股市今天大涨", "电影票房创新高\u2028仍是一行"]
    assert [r["text"] for r in rows] == expected
    labels = set(json.loads((topic / "config.json").read_text())["id2label"].values())
    for r in rows:
        assert set(r["probabilities"]) == labels and sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert r["prediction"] == max(r["probabilities"], key=r["probabilities"].get) == r["top_k"][0]["label"]
        assert len(r["top_k"]) == 2 and r["top_k"][0]["probability"] >= r["top_k"][1]["probability"]


def test_predictions_equal_evals_on_the_same_file(tiny_run, topic, tmp_path):
    out, overrides = tiny_run
    result = run_cli("eval", RECIPE, *overrides, f"eval.file={TEST}", f"eval.output_dir={tmp_path / 'eval'}")
    assert result.exit_code == 0, result.output
    evaluated = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    result = _predict(topic, TEST, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0 and result.stdout == ""  # the lines went to the file
    predicted = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(predicted) == len(evaluated) == 100
    for p, e in zip(predicted, evaluated, strict=True):
        assert (p["text"], p["prediction"]) == (e["text"], e["prediction"])
        assert p["probabilities"] == pytest.approx(e["probabilities"], abs=1e-6)


def test_bad_calls_are_one_line(topic, tmp_path):
    existing = tmp_path / "mine.jsonl"
    existing.write_text("not bertkit's\n")
    cases = [
        ((topic, "--text", "x", "--output", existing), f"{existing}: exists; bertkit predict writes a new file"),
        ((topic,), "nothing to predict; give --text, a file, or - for standard input"),
        ((topic, "--text", "x", "train.lr=1"), "command line: train.lr is read by pretrain, not predict"),
        (
            (topic, "--text", "x", "--top-k", "0"),
            "command line: predict.top_k: Input should be greater than or equal to 1",
        ),
        ((topic, tmp_path / "missing.txt"), f"{tmp_path / 'missing.txt'}: no such file"),
    ]
    plain = tmp_path / "plain"
    shutil.copytree(topic, plain, ignore=shutil.ignore_patterns("bertkit.yaml"))
    cases.append(((plain, "--text", "x"), f"{plain}: no bertkit.yaml, so the task it was fine-tuned for is unknown"))
    pretrained = topic.parents[1] / "pretrain"
    not_finetuned = f"{pretrained}: not a fine-tuned model (its bertkit.yaml names no task)"
    cases.append(((pretrained, "--text", "x"), not_finetuned))
    for args, message in cases:
        result = _predict(*args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.stderr
    assert existing.read_text() == "not bertkit's\n"  # never replaced


def test_a_family_without_raw_text_asks_for_a_file():
    from bertkit.errors import BertkitError
    from bertkit.tasks import TASKS
    from bertkit.tasks.predictor import Predictor

    raw = ["classification", "multi-label-classification", "regression", "token-classification"]
    assert [name for name, task in TASKS.items() if task.raw_example] == raw
    predictor = SimpleNamespace(takes_raw_text=False, columns=["question", "context"])
    with pytest.raises(BertkitError, match="--text: this model's task takes inputs with the fields question, context"):
        Predictor.raw(predictor, "张三在北京", "--text")


@pytest.mark.parametrize(
    "text",
    [
        "Héllo, Mr. O'Neil lives in New-York!  ok",
        "张三在北京工作。",
        "BERT模型在2019年很好 , 对吧？",
        "\t Café\u3000naïve ",
    ],
)
def test_a_taggers_raw_text_words_slice_the_text(tiny_run, text):
    """A tagger's words of a raw text are the model's tokenizer's (a CJK character, a word, a punctuation mark),
    each with the character span it came from, casing and accents as typed."""
    from bertkit.tasks.tagging import raw_example
    from bertkit.tokenizer.train import load_tokenizer

    example = raw_example(text, load_tokenizer(tiny_run[0] / "pretrain"))
    assert example["tokens"] == [text[s:e] for s, e in example["spans"]]
    assert "".join(example["tokens"]) == "".join(text.split()).replace("\u3000", "")  # nothing lost but spaces
    assert example["spans"] == sorted(example["spans"]) and example["label"] is None


# ---- streaming: a chunk at a time, bad lines, nothing half-written ----


def _texts(n: int) -> list[str]:
    """n texts, the topic test file's 100 over and over."""
    texts = [json.loads(line)["text"] for line in TEST.read_text(encoding="utf-8").splitlines()]
    return [texts[i % len(texts)] for i in range(n)]


@pytest.mark.slow  # 2 × 5,000 examples: seconds on an idle machine
def test_a_large_file_predicted_a_chunk_at_a_time_equals_it_predicted_whole(topic, tmp_path, monkeypatch):
    import bertkit.commands.predict as predict

    texts = _texts(5000)
    (tmp_path / "big.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    (tmp_path / "big.jsonl").write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8"
    )
    runs = {}
    # The raw texts in one chunk; the same texts as JSON lines in chunks of 704 (700 rounded up to a multiple of
    # predict.batch_size=64): 8 chunks, each predicted and written before the next is read.
    for name, chunk in (("big.txt", 10**6), ("big.jsonl", 700)):
        monkeypatch.setattr(predict, "CHUNK", chunk)
        result = _predict(topic, tmp_path / name)
        assert result.exit_code == 0, result.output
        assert "5000/5000" in result.stderr and "examples/s" in result.stderr  # one bar, for the whole file
        runs[name] = _lines(result.stdout)
        assert [r["text"] for r in runs[name]] == texts
    for r, w in zip(runs["big.jsonl"], runs["big.txt"], strict=True):
        assert r["prediction"] == w["prediction"]
        assert r["probabilities"] == pytest.approx(w["probabilities"], abs=1e-5)


class _Counted:
    """An iterable that counts how many items were taken from it."""

    def __init__(self, items):
        self.items, self.taken = items, 0

    def __iter__(self):
        for item in self.items:
            self.taken += 1
            yield item


def test_the_reader_and_the_writer_are_lazy(monkeypatch):
    """The examples are taken a chunk at a time, each chunk predicted and written before the next is read; a file
    is read a line at a time."""
    import io

    import bertkit.commands.predict as predict

    monkeypatch.setattr(predict, "CHUNK", 100)
    examples = _Counted([{"text": str(i)} for i in range(1000)])
    taken_at_predict = []

    def fake_predict(chunk):
        taken_at_predict.append(examples.taken)
        return [{**e, "prediction": "x"} for e in chunk]

    predictor = SimpleNamespace(cfg=SimpleNamespace(predict=SimpleNamespace(batch_size=32)), predict=fake_predict)
    out = io.StringIO()
    assert predict.write_predictions(predictor, examples, 1000, out) == 1000
    # Chunks of 128 (100 rounded up to a multiple of 32): at most one chunk read ahead of what was predicted.
    assert taken_at_predict == [min(128 * k, 1000) for k in range(1, 9)]
    assert out.getvalue().count("\n") == 1000
    data = "".join(f"line {i}\n" for i in range(100_000)).encode()
    spool = io.BytesIO(data)
    records = predict._records(predict.Source("<stdin>", "text", spool=spool))
    assert next(records) == (1, "line 0", None)
    assert spool.tell() < len(data) // 10  # not read whole


def test_a_bad_line_at_the_end_is_one_error_before_anything_is_written(topic, tmp_path):
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in _texts(1200)]
    lines[1198] = '{"text": "unterminated'
    bad = tmp_path / "new.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out" / "p.jsonl"
    for args in ((), ("--output", output)):
        result = _predict(topic, bad, *args)
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            f"error: {bad}:1199: not valid JSON (Unterminated string starting at); fix the line or pass --skip-bad "
            "to skip bad lines"
        ]
    assert not output.exists() and not list(output.parent.glob("*"))  # no temporary file left either
    raw = tmp_path / "latin1.txt"
    raw.write_bytes("好的\n也好\n".encode() + "café\n".encode("latin-1"))
    result = _predict(topic, raw)
    assert result.exit_code == 2 and result.stdout == ""
    message = f"error: {raw}:3: not UTF-8 (byte 0xe9, byte 4 of the line); convert the file to UTF-8; or pass"
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1


def test_skip_bad_reports_each_bad_line_and_predicts_the_rest(topic, tmp_path):
    jsonl = tmp_path / "new.jsonl"
    jsonl.write_bytes(
        b'{"text": "\xe8\x82\xa1\xe5\xb8\x82"}\n{oops\n\n["a list"]\n{"title": "no text"}\n{"text": ""}\n'
        b'{"text": "\xff"}\n{"text": "\xe6\x95\x99\xe8\x82\xb2"}\n'
    )
    table = tmp_path / "new.csv"
    table.write_text('text,label\n"a, b",x\n"bad"quote,y\none,two,three\n\n"two\nlines",z\n', encoding="utf-8")
    result = _predict(topic, jsonl, table, "--skip-bad")
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in _lines(result.stdout)] == ["股市", "教育", "a, b", "two\nlines"]
    assert [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("predict")] == [
        f"skipped {jsonl}:2: not valid JSON (Expecting property name enclosed in double quotes)",
        f"skipped {jsonl}:4: each line must be a JSON object",
        f"skipped {jsonl}:5: no column 'text' (columns: title); set finetune.task.text_column",
        f"skipped {jsonl}:6: no value in column 'text'; fill it in or remove the row",
        f"skipped {jsonl}:7: not UTF-8 (byte 0xff, byte 11 of the line); convert the file to UTF-8",
        f"skipped {table}:3: malformed CSV row (',' expected after '\"'); quote a field that holds quotes or line "
        "breaks, doubling its quotes",
        f"skipped {table}:4: 3 fields but the header has 2; quote fields that hold a comma",
    ]
    result = _predict(topic, jsonl)  # without --skip-bad: the first bad line, and nothing written
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {jsonl}:2: not valid JSON")


def test_an_error_while_predicting_leaves_no_output_file(topic, tmp_path, monkeypatch):
    import bertkit.commands.predict as predict
    from bertkit.errors import BertkitError
    from bertkit.tasks.predictor import Predictor

    monkeypatch.setattr(predict, "CHUNK", 64)
    calls = []
    real = Predictor.predict

    def failing(self, examples):
        calls.append(len(examples))
        if len(calls) == 3:
            raise BertkitError("the disk went away")
        return real(self, examples)

    monkeypatch.setattr(Predictor, "predict", failing)
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in _texts(300)), encoding="utf-8")
    output = tmp_path / "out" / "p.jsonl"
    result = _predict(topic, tmp_path / "in.txt", "--output", output)
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1] == "error: the disk went away"
    assert calls == [64, 64, 64] and not output.parent.exists()  # two chunks written, then removed; so is its dir


def test_a_parquet_file_streams_by_record_batches_and_names_a_bad_row(topic, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    import bertkit.commands.predict as predict

    monkeypatch.setattr(predict, "CHUNK", 2)  # record batches of 2 rows: the bad row is in the second
    texts = ["股市今天大涨", "电影票房创新高", None, "教育改革"]
    path = tmp_path / "new.parquet"
    pq.write_table(pa.table({"text": texts, "id": [1, 2, 3, 4]}), path, row_group_size=2)
    result = _predict(topic, path)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"error: {path}: row 3: no value in column 'text'; fill it in or remove the row; or pass --skip-bad to skip "
        "bad rows"
    )
    result = _predict(topic, path, "--skip-bad")
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in _lines(result.stdout)] == ["股市今天大涨", "电影票房创新高", "教育改革"]
    assert f"skipped {path}: row 3: no value in column 'text'" in result.stderr


def test_a_data_set_is_read_whole_not_as_raw_text(topic, tmp_path):
    """`hf:` names a data set (a local dir of JSON lines here); its name has no suffix, yet it is no text file."""
    (tmp_path / "set").mkdir()
    rows = [{"text": t, "label": "体育"} for t in ("股市今天大涨", "电影票房创新高", "教育改革")]
    (tmp_path / "set" / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    result = _predict(topic, f"hf:{tmp_path / 'set'}:test")
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in _lines(result.stdout)] == [r["text"] for r in rows]
