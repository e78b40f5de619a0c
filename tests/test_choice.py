"""Multiple choice with a varying number of candidates (C3: 2 to 4 per question): the padded batch gives each
question the logits and loss it has alone, in transformers' own head; C3's layout (dialogue turns as a list, the
answer as text) read from a local mirror of the Hub's `clue` config c3, then fine-tuned and evaluated."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from conftest import ROOT, recipe_edits, run_cli
from datasets import Dataset, Features, List, Value

from bertkit.config.sections import TaskConfig
from bertkit.errors import BertkitError
from bertkit.tasks import choice

C3_README = """---
configs:
- config_name: c3
  data_files:
  - split: train
    path: c3/train-*.parquet
  - split: validation
    path: c3/validation-*.parquet
---
"""


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return choice.BertForMultipleChoice(config).eval()


def _features(n_choices: list[int]) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    features = []
    for i, n in enumerate(n_choices):
        rows = [torch.randint(5, 100, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g) for _ in range(n)]
        features.append(
            {
                "input_ids": [r.tolist() for r in rows],
                "token_type_ids": [[0] * (len(r) // 2) + [1] * (len(r) - len(r) // 2) for r in rows],
                "labels": i % n,
            }
        )
    return features


def test_a_padded_batch_scores_each_question_as_alone(model):
    features = _features([2, 4, 3])
    batch = choice.collate(features)
    assert batch["input_ids"].shape[:2] == (3, 4)
    with torch.no_grad():
        out = model(**batch)
        alone = [model(**choice.collate([f])) for f in features]
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        torch.testing.assert_close(out.logits[i, :n], alone[i].logits[0], rtol=1e-5, atol=1e-5)
        assert (out.logits[i].softmax(-1)[n:] == 0).all()  # padding candidates take no probability
    losses = torch.stack([a.loss for a in alone])
    torch.testing.assert_close(out.loss, losses.mean(), rtol=1e-5, atol=1e-6)


def test_same_outputs_as_transformers_head_and_finite_gradients(model):
    features = _features([4, 4])
    reference = transformers.BertForMultipleChoice(model.config).eval()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            model(**choice.collate(features)).logits, reference(**choice.collate(features)).logits
        )
    model.train()
    try:
        model.zero_grad()
        model(**choice.collate(_features([2, 4, 3]))).loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    finally:
        model.eval()


def test_labels_by_index_or_by_text(tmp_path):
    rows = [
        {"text": "t", "choices": ["晴", "雨"], "label": "雨"},
        {"text": "t", "choices": ["a", "b", "c"], "label": 2},
        {"text": "t", "choices": ["x", "y", "z", "w"], "label": "3"},  # CSV-style index text
        {"text": "t", "choices": ["5", "6"], "label": 1},  # a JSON number is always an index
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert [e["label"] for e in choice.read(path, TaskConfig(type="multiple-choice"))] == [1, 2, 3, 1]
    path.write_text(json.dumps({"text": "t", "choices": ["1", "0"], "label": "1"}) + "\n", encoding="utf-8")
    with pytest.raises(BertkitError, match=r"row 1: label '1' is both the index of candidate 1 and the text of"):
        choice.read(path, TaskConfig(type="multiple-choice"))
    path.write_text(json.dumps({"text": "t", "choices": ["only one"], "label": 0}) + "\n", encoding="utf-8")
    with pytest.raises(BertkitError, match=r"row 1: 'choices' must be a list of 2 or more candidates"):
        choice.read(path, TaskConfig(type="multiple-choice"))


def _c3_mirror(root):
    """The Hub's `clue` repo, config c3: id, context (the dialogue's turns), question, choice (2–4), answer (text)."""
    repo = root / "clue"
    (repo / "c3").mkdir(parents=True)
    (repo / "README.md").write_text(C3_README, encoding="utf-8")
    features = Features(
        {
            "id": Value("int32"),
            "context": List(Value("string")),
            "question": Value("string"),
            "choice": List(Value("string")),
            "answer": Value("string"),
        }
    )
    topics = [("银行", "往前走，右边就是银行。"), ("医院", "医院在学校旁边。"), ("车站", "车站离这里很远。")]
    rows = []
    for i in range(24):
        place, said = topics[i % 3]
        options = ["银行", "医院", "车站", "学校"][: 2 + i % 3]
        options = options if place in options else options[:-1] + [place]
        rows.append(
            {"id": i, "context": ["男：请问怎么走？", f"女：{said}"], "question": "他们在说哪里？", "choice": options}
            | {"answer": place}
        )
    for split in ("train", "validation"):
        Dataset.from_list(rows, features=features).to_parquet(str(repo / "c3" / f"{split}-00000-of-00001.parquet"))
    return repo


def test_c3_from_a_data_set_mirror_finetunes_and_evaluates(tiny_run, tmp_path):
    repo = _c3_mirror(tmp_path)
    examples = choice.read(f"hf:{repo}:c3:validation", _c3_task())
    assert {len(e["choices"]) for e in examples} == {2, 3, 4}
    assert examples[0]["context"] == "男：请问怎么走？\n女：往前走，右边就是银行。" and examples[0]["label"] == 0
    args = [
        ROOT / "recipes" / "finetune" / "clue-c3.yaml",
        *recipe_edits(
            [
                f"output_dir={tmp_path / 'out'}",
                f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
                f"finetune.task.train_file=hf:{repo}:c3:train",
                f"finetune.task.validation_file=hf:{repo}:c3:validation",
                f"finetune.task.test_file=hf:{repo}:c3:validation",
                "finetune.train.max_steps=3",
                "finetune.train.batch_size=8",
                "finetune.task.max_seq_length=32",
            ]
        ),
    ]
    for command in ("finetune", "eval"):
        result = run_cli(command, *args)
        assert result.exit_code == 0, result.output
    report = json.loads(next((tmp_path / "out" / "eval").glob("*/report.json")).read_text())
    assert 0 <= report["accuracy"] <= 1 and report["examples"] == 24
    predictions = [json.loads(line) for line in next((tmp_path / "out" / "eval").glob("*/predictions.jsonl")).open()]
    assert all(0 <= p["prediction"] < len(p["choices"]) for p in predictions)
    model_dir = next((tmp_path / "out" / "finetune").iterdir())
    transformers.BertForMultipleChoice.from_pretrained(model_dir)  # plain transformers loads it


def _c3_task() -> TaskConfig:
    return TaskConfig(
        type="multiple-choice", text_column="context", question_column="question", choices_column="choice",
        label_column="answer",
    )  # fmt: skip
