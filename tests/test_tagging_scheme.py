"""Token classification beyond BIO: the tag scheme decided when the train file is read, stored with the model,
and plain tags (POS) scored word by word."""

import json

import pytest
from conftest import RECIPE, recipe_edits, run_cli

from bertkit.config.sections import TaskConfig
from bertkit.errors import BertkitError
from bertkit.metrics import tag_metrics
from bertkit.tasks import tagging

WORDS = {"我": "PN", "他": "PN", "张三": "NR", "李四": "NR", "喜欢": "VV", "去": "VV", "北京": "NR", "电影": "NN"}


def _pos_rows(n: int) -> list[dict]:
    """n short Chinese sentences (subject, verb, object, 。) with CTB-style POS tags: a plain tag set, no O."""
    subjects, verbs, objects = ["我", "他", "张三", "李四"], ["喜欢", "去"], ["北京", "电影", "李四"]
    rows = []
    for i in range(n):
        words = [subjects[i % 4], verbs[i // 4 % 2], objects[i % 3], "。"]
        rows.append({"tokens": words, "tags": [WORDS.get(w, "PU") for w in words]})
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "tags,scheme",
    [
        ({"O", "B-PER", "I-PER"}, "BIO"),
        ({"O", "B-PER", "E-PER", "S-LOC"}, "BIOES"),
        ({"O", "B-PER", "I-PER", "E-PER"}, "BIOES"),  # an E- tag in an otherwise BIO set
        ({"NN", "VV", "PU"}, "plain"),
        ({"O", "NAME"}, "plain"),
        ({"O"}, "BIO"),
    ],
)
def test_detect_scheme(tags, scheme):
    assert tagging.detect_scheme(tags) == scheme


@pytest.mark.parametrize(
    "tags,tag_scheme,expected",
    [
        (["B-PER", "X-PER"], "auto", r"t.jsonl: row 2: tag 'X-PER' is not O or B-/I-/E-/S-<type> like the file's "),
        (["B-PER", "b-per"], "auto", r"row 2: tag 'b-per' .*\(e.g. 'B-PER'\); fix it, or set finetune.task.tag_sch"),
        (["B-LOC", "PER"], "auto", r"row 2: tag 'PER' is not O"),
        (["B-PER", "E-PER"], "BIO", r"row 2: tag 'E-PER' is not O or B-/I-<type> as finetune.task.tag_scheme=BIO "),
        (["NN", "VV"], "BIOES", r"row 1: tag 'NN' is not O or B-/I-/E-/S-<type> as finetune.task.tag_scheme=BIOES"),
    ],
)
def test_tags_outside_the_scheme_are_rejected_when_the_file_is_read(tmp_path, tags, tag_scheme, expected):
    path = _write(tmp_path / "t.jsonl", [{"tokens": ["a", "b"], "tags": ["O", t]} for t in tags])
    with pytest.raises(BertkitError, match=expected):
        tagging.read(path, TaskConfig(type="token-classification", tag_scheme=tag_scheme))


def test_a_forced_plain_scheme_takes_any_tags_and_is_the_models_setting(tmp_path):
    path = _write(tmp_path / "t.jsonl", [{"tokens": ["a", "b"], "tags": ["B-LOC", "PER"]}])
    cfg = TaskConfig(type="token-classification", tag_scheme="plain")
    examples = tagging.read(path, cfg)
    assert tagging.TASK.model_settings(examples, cfg) == {"tag_scheme": "plain", "crf": False}
    pos = tagging.read(_write(tmp_path / "pos.jsonl", _pos_rows(4)), TaskConfig(type="token-classification"))
    assert tagging.TASK.model_settings(pos, TaskConfig()) == {"tag_scheme": "plain", "crf": False}


def test_plain_tag_metrics_by_hand():
    # Words: gold DT NN VB NN NN, predicted DT VB VB NN DT: 3 of 5 right.
    m = tag_metrics([["DT", "NN", "VB"], ["NN", "NN"]], [["DT", "VB", "VB"], ["NN", "DT"]], ["DT", "NN", "VB"])
    # DT: P 1/2 R 1/1 F 2/3; NN: P 1/1 R 1/3 F 1/2; VB: P 1/2 R 1/1 F 2/3. Without O, micro P = R = F1 = accuracy.
    assert m["accuracy"] == m["precision"] == m["recall"] == m["f1"] == pytest.approx(0.6)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert m["per_tag"]["NN"] == {"precision": 1.0, "recall": pytest.approx(1 / 3), "f1": 0.5, "support": 3}
    # With O (no tag): it counts for accuracy (2/3) but not in the averages: NAME P 1/2, R 1/1, F 2/3.
    m = tag_metrics([["O", "NAME", "O"]], [["NAME", "NAME", "O"]], ["O", "NAME"])
    assert (m["accuracy"], m["precision"], m["recall"]) == pytest.approx((2 / 3, 0.5, 1.0))
    assert m["f1"] == m["macro_f1"] == pytest.approx(2 / 3) and m["per_tag"]["O"]["support"] == 2


@pytest.mark.parametrize("model", ["bert", "bilstm"])
def test_pos_tagging_end_to_end(tiny_run, tmp_path, model):
    train = _write(tmp_path / "train.jsonl", _pos_rows(20))
    dev = _write(tmp_path / "dev.jsonl", _pos_rows(8))
    args = [
        RECIPE,
        *tiny_run[1],
        f"output_dir={tmp_path}",
        f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
        "finetune.task.type=token-classification",
        "finetune.task.name=pos",
        f"finetune.task.train_file={train}",
        f"finetune.task.validation_file={dev}",
        f"finetune.task.test_file={dev}",
        "finetune.train.max_steps=2",
        "finetune.train.batch_size=8",
        "finetune.task.stride=8",
        *(
            ["finetune.model_type=bilstm", "finetune.bilstm.hidden_size=16", "finetune.bilstm.embedding_dim=16"]
            * (model == "bilstm")
        ),
    ]
    result = run_cli("finetune", *args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "finetune" / "pos" / "config.json").read_text())["tag_scheme"] == "plain"
    result = run_cli("eval", args[0], *recipe_edits(args[1:]))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "pos" / "report.json").read_text())
    assert report["examples"] == 8 and set(report["per_tag"]) == {"NN", "NR", "PN", "PU", "VV"}
    assert report["f1"] == pytest.approx(report["accuracy"])  # no O in the set
    # 2 steps at the tiny run's lr (5e-3): BERT gets 25 of the 32 words right; the BiLSTM from random init, at its
    # own finetune.bilstm.lr (2e-3), 7 (±1).
    loss, right = {"bert": (1.493131, 25), "bilstm": (1.595603, 7)}[model]
    log = [json.loads(line) for line in (tmp_path / "finetune" / "pos" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log if "loss" in r] == pytest.approx([loss], rel=1e-4)
    assert report["accuracy"] == pytest.approx(right / 32, abs=1.01 / 32)
    assert "macro_f1" in report and "per_type" not in report and "tag" in result.output
