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
    result = _predict(topic, "-", texts, "--text", "今天的比赛非常精彩", "predict.top_k=2", stdin="教育改革\n")
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
