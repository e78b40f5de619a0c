"""Hostile and mistaken inputs through the CLI: each is one line on stderr, exit code 2, and no traceback.

A new case is one row of CASES: (id, command, overrides, files, expected substring of the error line).
`files` maps a name to the text (or bytes) written into the case's own temporary dir before the run. In
overrides and file texts, {tmp} is that dir, {run} the shared tiny run (tokenize → pretrain → finetune of the
demo recipe, see conftest.tiny_run), {earlier} a copy of its tokenize output (a rerun into it with
overwrite=true must leave it as it was) and {data} the repo's sample data. Every command gets BASE[command]
first, then the case's overrides (a later key=value wins), and output_dir={tmp}/out. A file named recipe.yaml
replaces the demo recipe. Nothing is lost: {run} and {earlier} hash the same after every case as before.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DATA, RECIPE, run_cli

# Enough to make each command run on the tiny run's outputs when nothing is wrong.
BASE = {
    "tokenize": ["tokenizer.vocab_size=300", "data.num_proc=1", "data.dupe_factor=1", "data.max_seq_length=64"],
    "pretrain": [
        "data.dataset_dir={run}/data",
        "train.max_steps=1",
        "model.hidden_size=64",
        "model.num_hidden_layers=1",
    ],
    "finetune": ["finetune.model_dir={run}/pretrain", "finetune.train.max_steps=1", "finetune.task.max_seq_length=32"],
    "eval": ["eval.model_dir={run}/finetune/topic", "finetune.task.max_seq_length=32"],
    "embed": ["embed.model_dir={run}/pretrain", "embed.file={data}/zh/topic/dev.jsonl"],
    "probe": [
        "embed.model_dir={run}/pretrain",
        "probe.train_file={data}/zh/topic/train.jsonl",
        "probe.test_file={data}/zh/topic/dev.jsonl",
    ],
    "export": ["export.model_dir={run}/finetune/topic"],
}


def _parquet(**columns) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table(columns), out)
    return out.getvalue()


ZH_DOCUMENTS = "第一篇文章的第一句话。\n这是第二句话，说明了一些事情。\n\n" * 50  # 150 lines, 100 of them text
RERUN = ["output_dir={earlier}", "overwrite=true"]  # a corpus case reruns into an earlier tokenize output

CASES = [
    # (id, command, overrides, files, expected in the error line)
    ("unknown-key", "pretrain", ["train.lrr=1e-3"], {}, "did you mean 'train.lr'"),
    # recipe values and model fit
    ("recipe-lr-inf", "pretrain", ["train.lr=.inf"], {}, "command line: train.lr: Input should be a finite number"),
    ("recipe-clip-negative", "pretrain", ["train.clip_grad_norm=-1"], {}, "train.clip_grad_norm: Input should be"),
    ("recipe-dropout-2", "pretrain", ["model.hidden_dropout_prob=2.0"], {}, "model.hidden_dropout_prob: Input"),
    ("recipe-hidden-size-0", "pretrain", ["model.hidden_size=0"], {}, "model.hidden_size: Input should be greater"),
    (
        "recipe-mask-shares-over-1",
        "pretrain",
        ["masking.mask_prob=0.9", "masking.random_prob=0.2"],
        {},
        "command line: masking.mask_prob + masking.random_prob = 0.9 + 0.2 is over 1",
    ),
    ("recipe-task-name-parent", "finetune", ["finetune.task.name=../x"], {}, "finetune.task.name: must be a plain"),
    ("recipe-task-name-dot", "finetune", ["finetune.task.name=."], {}, "finetune.task.name: must be a plain"),
    ("recipe-task-name-dotdot", "finetune", ["finetune.task.name=.."], {}, "finetune.task.name: must be a plain"),
    ("fit-embed-layer-99", "embed", ["embed.layers=[99]"], {}, "embed.layers=[99]: the model has 1 layer; give"),
    ("fit-embed-layers-empty", "embed", ["embed.layers=[]"], {}, "embed.layers: List should have at least 1 item"),
    (
        "fit-eval-positions",
        "eval",
        ["finetune.task.max_seq_length=1000"],
        {},
        "finetune.task.max_seq_length=1000 exceeds the model's 64 positions",
    ),
    (
        "fit-embed-positions",
        "embed",
        ["embed.max_seq_length=1000"],
        {},
        "embed.max_seq_length=1000 exceeds the model's 64 positions",
    ),
    ("fit-probe-positions", "probe", ["embed.max_seq_length=65"], {}, "embed.max_seq_length=65 exceeds the model's 64"),
    (
        "fit-export-positions",
        "export",
        ["export.quantize=true", "finetune.task.max_seq_length=1000"],
        {},
        "finetune.task.max_seq_length=1000 exceeds the model's 64 positions",
    ),
    (
        "fit-probe-unseen-label",
        "probe",
        ["probe.test_file={tmp}/test.jsonl"],
        {"test.jsonl": '{"text": "火星探测器着陆", "label": "天文"}\n'},
        "test.jsonl: label(s) '天文' not seen in training",
    ),
    (
        "fit-probe-one-class",
        "probe",
        ["probe.train_file={tmp}/train.jsonl"],
        {"train.jsonl": '{"text": "湖人获胜", "label": "体育"}\n{"text": "国足出线", "label": "体育"}\n'},
        "train.jsonl: only label(s) '体育' in 'label'; a probe needs two classes at least",
    ),
    # readers and tagging
    (
        "read-regression-nan",
        "finetune",
        ["finetune.task.type=regression", "finetune.task.train_file={tmp}/sts.jsonl"],
        {"sts.jsonl": '{"text": "一", "label": 1.5}\n{"text": "二", "label": NaN}\n'},
        "sts.jsonl: row 2: score nan in column 'label' is not a finite number",
    ),
    (
        "read-regression-text",
        "finetune",
        ["finetune.task.type=regression", "finetune.task.train_file={tmp}/sts.csv"],
        {"sts.csv": "text,label\n一,1.5\n二,abc\n"},
        "sts.csv: row 2: score 'abc' in column 'label' is not a finite number",
    ),
    (
        "read-csv-too-many-fields",
        "finetune",
        ["finetune.task.train_file={tmp}/train.csv"],
        {"train.csv": "text,label\n湖人获胜,体育\n国足,出线,体育\n"},
        "train.csv:3: 3 fields but the header has 2; quote fields that hold a comma",
    ),
    (
        "read-csv-unclosed-quote",
        "finetune",
        ["finetune.task.train_file={tmp}/train.csv"],
        {"train.csv": 'text,label\n"湖人获胜,体育\n国足出线,体育\n'},
        "train.csv:2: malformed CSV row (unexpected end of data)",
    ),
    (
        "read-choice-label-text",
        "finetune",
        ["finetune.task.type=multiple-choice", "finetune.task.train_file={tmp}/c.jsonl"],
        {"c.jsonl": '{"text": "天", "choices": ["晴", "雨"], "label": "阴"}\n'},
        "c.jsonl: row 1: label '阴' in column 'label' is neither an index into its 2 choices (0 to 1) nor one of them",
    ),
    (
        "tag-bio-bad-tag",
        "finetune",
        ["finetune.task.type=token-classification", "finetune.task.stride=8", "finetune.task.train_file={tmp}/t.jsonl"],
        {
            "t.jsonl": '{"tokens": ["张", "三"], "tags": ["B-PER", "I-PER"]}\n'
            '{"tokens": ["李", "四"], "tags": ["X-PER", "O"]}\n'
        },
        "t.jsonl: row 2: tag 'X-PER' is not O or B-/I-/E-/S-<type> like the file's other tags",
    ),
    (
        "tag-forced-bio-e-tag",
        "finetune",
        [
            "finetune.task.type=token-classification",
            "finetune.task.stride=8",
            "finetune.task.tag_scheme=BIO",
            "finetune.task.train_file={tmp}/t.jsonl",
        ],
        {"t.jsonl": '{"tokens": ["张", "三"], "tags": ["B-PER", "E-PER"]}\n'},
        "t.jsonl: row 1: tag 'E-PER' is not O or B-/I-<type> as finetune.task.tag_scheme=BIO requires",
    ),
    (
        "tag-dev-unseen",
        "finetune",
        [
            "finetune.task.type=token-classification",
            "finetune.task.stride=8",
            "finetune.task.train_file={data}/zh/ner/train.jsonl",
            "finetune.task.validation_file={tmp}/dev.jsonl",
        ],
        {
            "dev.jsonl": '{"tokens": ["张", "三"], "tags": ["B-PER", "I-PER"]}\n'
            '{"tokens": ["微", "软"], "tags": ["B-MISC", "I-MISC"]}\n'
        },
        "dev.jsonl: label(s) 'B-MISC', 'I-MISC' not seen in training",
    ),
    (
        "corpus-wrong-text-field",
        "tokenize",
        ["data.files=[{tmp}/c.jsonl]"],
        {"c.jsonl": '{"content": "第一句。", "id": 1}\n'},
        "c.jsonl:1: no text field 'text' (fields: content, id); set data.text_field",
    ),
    # corpora that are not what they seem: each refused naming the cause, the earlier output kept
    (
        "corpus-gbk",
        "tokenize",
        [*RERUN, "data.files={tmp}/c.txt"],
        {"c.txt": ZH_DOCUMENTS.encode("gbk")},
        "c.txt: 100 of its 150 lines skipped (not UTF-8: 100), over data.max_skipped_share=0.05; it reads as GB18030: "
        "set data.encoding=gb18030, or convert it: iconv -f GB18030 -t UTF-8",
    ),
    (
        "corpus-binary",
        "tokenize",
        [*RERUN, "data.files={tmp}/c.txt"],
        {"c.txt": bytes(range(256)) * 40},
        "it holds NUL bytes, so it is not text (binary data?); give text files, one sentence per line",
    ),
    (
        "corpus-json-array",
        "tokenize",
        [*RERUN, "data.files={tmp}/c.json"],
        {"c.json": '[{"text": "第一句。"},\n {"text": "第二句。"}]\n'},
        "c.json: a .json file is no corpus format; give JSONL, one object a line",
    ),
    (
        "corpus-jsonl-one-line-array",
        "tokenize",
        [*RERUN, "data.files={tmp}/c.jsonl"],
        {"c.jsonl": '[{"text": "第一句。"}, {"text": "第二句。"}]\n'},
        "c.jsonl: 1 of its 1 lines skipped (a JSON array, not an object: 1)",
    ),
    (
        "corpus-parquet-no-text-column",
        "tokenize",
        [*RERUN, "data.files={tmp}/c.parquet"],
        {"c.parquet": _parquet(content=ZH_DOCUMENTS.split("\n\n"))},
        "c.parquet: no text field 'text' (fields: content); set data.text_field",
    ),
    (
        "corpus-parquet-junk",
        "tokenize",
        [*RERUN, "data.files={tmp}/c.parquet"],
        {"c.parquet": b"PAR1" * 100},
        "c.parquet: not a Parquet file (",
    ),
    ("corpus-dev-zero", "tokenize", [*RERUN, "data.files=/dev/zero"], {}, "/dev/zero: not a regular file"),
    (
        "corpus-unknown-encoding",
        "tokenize",
        [*RERUN, "data.encoding=gbkk"],
        {},
        "data.encoding: not a text encoding Python knows; give a codec name: gb18030, big5, utf-16, got 'gbkk'",
    ),
    (
        "task-parquet-junk",  # no stray "Failed to read schema…" line from datasets' logging before the error
        "finetune",
        ["finetune.task.train_file={tmp}/t.parquet"],
        {"t.parquet": b"PAR1" * 100},
        "t.parquet: cannot read it (ArrowInvalid: ",
    ),
    (
        "task-ner-from-a-classifier",
        "finetune",
        [
            "finetune.model_dir={run}/finetune/topic",
            "finetune.task.type=token-classification",
            "finetune.task.stride=8",
            "finetune.task.train_file={data}/zh/ner/train.jsonl",
            "finetune.task.validation_file={data}/zh/ner/dev.jsonl",
        ],
        {},
        "topic: a fine-tuned BertForSequenceClassification of 5 labels (体育, 娱乐, 教育, 科技, 财经), not a "
        "pretrained BERT for finetune.task.type=token-classification; start from a pretrained BERT dir",
    ),
    # question answering
    (
        "qa-stride-too-large",
        "finetune",
        [
            "finetune.task.type=question-answering",
            "finetune.task.train_file={data}/zh/qa/train.json",
            "finetune.task.stride=28",  # fits the windows (below 32 - 3), but leaves none of them a question
            "finetune.task.validation_file=null",
        ],
        {},
        "finetune.task.stride=28 leaves no room for the context in finetune.task.max_seq_length=32",
    ),
    (
        "qa-answer-start-not-integer",
        "finetune",
        [
            "finetune.task.type=question-answering",
            "finetune.task.stride=8",
            "finetune.task.train_file={tmp}/train.json",
            "finetune.task.validation_file=null",
        ],
        {
            "train.json": '{"data": [{"paragraphs": [{"context": "Paris is nice.", "qas": ['
            '{"id": "q1", "question": "Where?", "answers": [{"text": "Paris", "answer_start": "0"}]}]}]}]}'
        },
        "train.json: question q1: answer 1: 'answer_start' must be the answer's character offset",
    ),
    (
        "qa-answers-not-a-list",
        "finetune",
        [
            "finetune.task.type=question-answering",
            "finetune.task.stride=8",
            "finetune.task.train_file={tmp}/train.json",
            "finetune.task.validation_file=null",
        ],
        {
            "train.json": '{"data": [{"paragraphs": [{"context": "Paris is nice.", "qas": ['
            '{"id": "q1", "question": "Where?", "answers": {"text": "Paris", "answer_start": 0}}]}]}]}'
        },
        "train.json: question q1: 'answers' must be a list",
    ),
    (
        "qa-answer-text-not-a-string",
        "finetune",
        [
            "finetune.task.type=question-answering",
            "finetune.task.stride=8",
            "finetune.task.train_file={tmp}/train.json",
            "finetune.task.validation_file=null",
        ],
        {
            "train.json": '{"data": [{"paragraphs": [{"context": "Paris is nice.", "qas": ['
            '{"id": "q1", "question": "Where?", "answers": [{"text": 7, "answer_start": 0}]}]}]}]}'
        },
        "train.json: question q1: answer 1 needs a non-empty 'text' string",
    ),
    (
        "qa-question-missing",
        "finetune",
        [
            "finetune.task.type=question-answering",
            "finetune.task.stride=8",
            "finetune.task.train_file={tmp}/train.json",
            "finetune.task.validation_file=null",
        ],
        {
            "train.json": '{"data": [{"paragraphs": [{"context": "Paris is nice.", "qas": ['
            '{"id": "q1", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}'
        },
        "train.json: question q1: no 'question' text",
    ),
    (
        "qa-dev-answer-start-negative",  # checked when read, not at the first evaluation
        "finetune",
        [
            "finetune.task.type=question-answering",
            "finetune.task.stride=8",
            "finetune.task.train_file={data}/zh/qa/train.json",
            "finetune.task.validation_file={tmp}/dev.json",
        ],
        {
            "dev.json": '{"data": [{"paragraphs": [{"context": "Paris is nice.", "qas": ['
            '{"id": 3, "question": "Where?", "answers": [{"text": "Paris", "answer_start": -1}]}]}]}]}'
        },
        "dev.json: question 3: answer 1: 'answer_start' must be",
    ),
    # where outputs go (the user-dir and overlap tests with file contents are in test_outputs.py)
    ("out-under-a-file", "tokenize", ["output_dir={tmp}/afile/out"], {"afile": "mine"}, "Not a directory"),
    ("out-is-a-file", "embed", ["embed.output_dir={tmp}/afile"], {"afile": "mine"}, "is a file or link"),
    (
        "out-over-the-corpus",
        "tokenize",
        ["data.files={tmp}/corpus/c.txt", "data.dataset_dir={tmp}/corpus"],
        {"corpus/c.txt": "中文。\n"},
        "data.dataset_dir=",
    ),
    ("out-eval-into-its-model", "eval", ["eval.output_dir={run}/finetune/topic"], {}, "overlaps eval.model_dir"),
    (
        "out-export-into-its-model",
        "export",
        ["export.output_dir={run}/finetune/topic"],
        {},
        "overlaps export.model_dir",
    ),
    ("out-finetune-its-own-output", "finetune", ["finetune.model_dir={tmp}/out/finetune/topic"], {}, "not a model dir"),
    ("out-task-name-hidden", "finetune", ["finetune.task.name=.git"], {}, "finetune.task.name: must be a plain"),
    # the recipe file itself: {tmp}/recipe.yaml, when given, replaces the demo recipe
    (
        "recipe-duplicate-key",
        "pretrain",
        [],
        {"recipe.yaml": "train:\n  lr: 1.0e-3\n  lr: 1.0e-4\n"},
        "duplicate key 'lr'",
    ),
    ("recipe-not-a-mapping", "pretrain", [], {"recipe.yaml": "- a\n- b\n"}, "a recipe must be a mapping"),
]


def _fill(text, tmp, run, earlier):
    if isinstance(text, bytes):
        return text
    places = {"{tmp}": tmp, "{run}": run, "{earlier}": earlier, "{data}": DATA}
    for name, place in places.items():
        text = text.replace(name, str(place))
    return text


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def earlier(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run's tokenize output, for the cases that rerun into it."""
    out = tmp_path_factory.mktemp("earlier")
    for part in ("tokenizer", "data"):
        shutil.copytree(tiny_run[0] / part, out / part, symlinks=True)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(case, tiny_run, earlier, tmp_path):
    _, command, overrides, files, expected = case
    run, _ = tiny_run
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        content = _fill(content, tmp_path, run, earlier)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    args = [_fill(o, tmp_path, run, earlier) for o in [*BASE[command], *overrides]]
    recipe = tmp_path / "recipe.yaml" if "recipe.yaml" in files else RECIPE
    before = {run: _digest(run), earlier: _digest(earlier)}
    result = run_cli(command, recipe, f"output_dir={tmp_path / 'out'}", *args)
    assert {d: _digest(d) for d in before} == before, "an earlier output changed"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    assert expected in errors[0], errors[0]
