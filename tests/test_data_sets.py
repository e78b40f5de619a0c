"""Task files given as data sets (`hf:name[:config]:split`) or Parquet/Arrow files, offline: local mirrors
written here in the Hub repos' layout (CLUE's per-config parquet with a README's configs, CoNLL-2003's tag ids,
SQuAD's nested answers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import RECIPE, recipe_edits, run_cli
from datasets import ClassLabel, Dataset, Features, List, Value

from bertkit.config.sections import TaskConfig
from bertkit.errors import BertkitError
from bertkit.hub import DataSet, data_set_ref
from bertkit.tasks import classification, qa, tagging
from bertkit.tasks.common import read_rows

TNEWS_LABELS = ["100", "101", "102"]
CLUE_README = """---
configs:
- config_name: tnews
  data_files:
  - split: train
    path: tnews/train-*.parquet
  - split: validation
    path: tnews/validation-*.parquet
  - split: test
    path: tnews/test-*.parquet
---
"""


def _clue(root: Path) -> Path:
    """A mirror of the Hub's `clue` repo, config tnews only: sentence, label (ClassLabel), idx; the test split's
    labels hidden (-1), as CLUE's are."""
    repo = root / "clue"
    (repo / "tnews").mkdir(parents=True)
    (repo / "README.md").write_text(CLUE_README, encoding="utf-8")
    features = Features({"sentence": Value("string"), "label": ClassLabel(names=TNEWS_LABELS), "idx": Value("int32")})
    texts = ["股市今天大涨", "球队赢得冠军", "新电影上映了", "央行调整利率", "足球比赛结束", "演员获得大奖"]
    for split, hidden in (("train", False), ("validation", False), ("test", True)):
        rows = {"sentence": texts, "label": [-1 if hidden else i % 3 for i in range(6)], "idx": list(range(6))}
        Dataset.from_dict(rows, features=features).to_parquet(str(repo / "tnews" / f"{split}-00000-of-00001.parquet"))
    return repo


def test_a_data_set_split_reads_as_rows_with_class_names(tmp_path):
    repo = _clue(tmp_path)
    rows = read_rows(Path(f"hf:{repo}:tnews:train"))
    assert rows[0] == {"sentence": "股市今天大涨", "label": "100", "idx": 0} and len(rows) == 6
    assert [r["label"] for r in read_rows(Path(f"hf:{repo}:tnews:test"))] == [None] * 6  # hidden: no gold
    assert len(read_rows(Path(f"hf:{repo}:tnews:validation[:2]"))) == 2  # datasets' split slicing


@pytest.mark.parametrize(
    "ref, says",
    [
        ("hf:clue", "hf:<name>[:<config>]:<split>"),
        ("hf:{repo}:tnews:nosuchsplit", "cannot read it"),
        ("hf:{repo}:nosuchconfig:train", "cannot read it"),
        ("hf:{root}/missing:train", "cannot read it"),
    ],
)
def test_a_wrong_data_set_is_one_line(tmp_path, ref, says):
    repo = _clue(tmp_path)
    with pytest.raises(BertkitError) as e:
        read_rows(Path(ref.format(repo=repo, root=tmp_path)))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_data_set_ref_may_pin_a_revision():
    assert data_set_ref("hf:eriktks/conll2003@refs/convert/parquet:conll2003:train") == DataSet(
        "eriktks/conll2003", "conll2003", "train", "refs/convert/parquet"
    )
    squad = DataSet("rajpurkar/squad", None, "validation[:50]", None)
    assert data_set_ref("hf:rajpurkar/squad:validation[:50]") == squad
    assert data_set_ref("hf://datasets/owner/name/a.txt") is None  # a file URL, not a data set


def test_a_list_of_texts_reads_as_one_text(tmp_path):
    """CSL's keywords (a list) as the second text of a pair."""
    path = tmp_path / "csl.parquet"
    Dataset.from_dict({"abst": ["摘要一"], "keyword": [["深度学习", "文本分类"]], "label": [1]}).to_parquet(str(path))
    cfg = TaskConfig(text_column="abst", text_pair_column="keyword")
    assert classification.read(path, cfg)[0] == {"text": "摘要一", "text_pair": "深度学习\n文本分类", "label": "1"}


def test_tags_as_class_ids_read_as_names(tmp_path):
    """CoNLL-2003's layout: tokens and ner_tags, a list of ClassLabel ids."""
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=names))})
    path = tmp_path / "train.parquet"
    rows = {"tokens": [["John", "lives", "in", "New", "York"]], "ner_tags": [[1, 0, 0, 3, 4]]}
    Dataset.from_dict(rows, features=features).to_parquet(str(path))
    examples = tagging.read(path, TaskConfig(type="token-classification", tags_column="ner_tags"))
    assert examples == [
        {"tokens": ["John", "lives", "in", "New", "York"], "label": ["B-PER", "O", "O", "B-LOC", "I-LOC"]}
    ]


def test_squad_layout_rows_read_as_squad(tmp_path):
    features = Features(
        {
            "id": Value("string"),
            "title": Value("string"),
            "context": Value("string"),
            "question": Value("string"),
            "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))},
        }
    )
    rows = {
        "id": ["q1", "q2"],
        "title": ["t", "t"],
        "context": ["北京是中国的首都。", "北京是中国的首都。"],
        "question": ["中国的首都是哪里？", "上海在哪里？"],
        "answers": [{"text": ["北京"], "answer_start": [0]}, {"text": [], "answer_start": []}],
    }
    Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "saved"))
    path = next((tmp_path / "saved").glob("*.arrow"))  # an Arrow file, as save_to_disk writes it
    examples = qa.read(path, TaskConfig(type="question-answering"))
    assert [e["label"] for e in examples] == [[("北京", 0)], []]
    assert qa.is_version_2(examples)  # an unanswerable question: SQuAD v2.0 rules


def test_finetune_and_eval_on_a_data_set(tiny_run, tmp_path):
    repo = _clue(tmp_path)
    args = [
        RECIPE,
        *tiny_run[1],
        *recipe_edits(
            [
                f"output_dir={tmp_path / 'out'}",
                f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
                "finetune.task.name=tnews",
                f"finetune.task.train_file=hf:{repo}:tnews:train",
                f"finetune.task.validation_file=hf:{repo}:tnews:validation",
                f"finetune.task.test_file=hf:{repo}:tnews:validation",
                "finetune.task.text_column=sentence",
                "finetune.train.max_steps=2",
            ]
        ),
    ]
    result = run_cli("finetune", *args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "out" / "finetune" / "tnews" / "config.json").read_text())
    assert sorted(config["id2label"].values()) == TNEWS_LABELS
    result = run_cli("eval", *args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "eval" / "tnews" / "report.json").read_text())["examples"] == 6
