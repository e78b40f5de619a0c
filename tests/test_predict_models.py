"""`bertkit predict` on raw text through the taggers that decode otherwise than a softmax BERT: a CRF's Viterbi
path (BERT and BiLSTM) and the BiLSTM baseline. Each entity slices the text and carries a score, and the tags are
those of the same words read from a file (the path that computes no scores)."""

import json

import pytest
from conftest import ROOT, recipe_edits, run_cli
from typer.testing import CliRunner

from bertkit.cli import app

NER = ROOT / "recipes" / "finetune" / "zh-ner.yaml"
TEXTS = [
    "张三在北京大学读书，李四在上海工作。",
    "王五 visited 深圳 in 2019, then 香港!",
    "国务院总理李克强今天访问了广州市。",
]
BILSTM = ["finetune.model_type=bilstm", "finetune.bilstm.hidden_size=16", "finetune.bilstm.embedding_dim=16"]
MODELS = {"bert-crf": ["finetune.task.crf=true"], "bilstm": BILSTM, "bilstm-crf": [*BILSTM, "finetune.task.crf=true"]}


@pytest.fixture(scope="module", params=list(MODELS))
def tagger(request, tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    edits = [
        f"output_dir={out}",
        f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
        "finetune.train.max_steps=4",
        "finetune.train.batch_size=8",
        "finetune.task.max_seq_length=64",
        "finetune.task.stride=16",
        *MODELS[request.param],
    ]
    result = run_cli("finetune", NER, *recipe_edits(edits))
    assert result.exit_code == 0, result.output
    return out / "finetune" / "ner"


def _predict(*args) -> list[dict]:
    result = CliRunner().invoke(app, ["predict", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_raw_text_gives_scored_entities_that_slice_it(tagger, tmp_path):
    rows = _predict(tagger, *[a for text in TEXTS for a in ("--text", text)])
    assert [r["text"] for r in rows] == TEXTS
    entities = [e for r in rows for e in r["entities"]]
    assert entities, "the tiny tagger found no entity to check"  # 4 steps from the tiny BERT: it tags plenty
    for r in rows:
        assert len(r["prediction"]) == len(r["tokens"])
        for e in r["entities"]:
            assert set(e) == {"type", "text", "start", "end", "score"}
            assert e["text"] == r["text"][e["start"] : e["end"]] and e["text"]
            assert 0 < e["score"] <= 1
    # The same words from a file: no scores are computed there, and the tags are the same.
    words = tmp_path / "words.jsonl"
    words.write_text("".join(json.dumps({"tokens": r["tokens"]}, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert [r["prediction"] for r in _predict(tagger, words)] == [r["prediction"] for r in rows]
