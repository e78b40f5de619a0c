import math

import pytest

from bertkit.metrics import classification_metrics, format_table, pretraining_metrics


def test_classification_metrics_by_hand():
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(gold, pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P 2/2 R 2/3 F 0.8; b: P 1/2 R 1/2 F 0.5; c: P 1/2 R 1/1 F 2/3
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["micro_f1"] == pytest.approx(4 / 6)  # single-label: micro F1 = accuracy


def test_class_never_predicted_or_seen_scores_zero():
    m = classification_metrics([0, 0], [0, 0], ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx(0.5)


def test_pretraining_metrics():
    m = pretraining_metrics(mlm_loss_sum=20.0, mlm_correct=3, mlm_count=10, pair_correct=7, pair_count=8)
    assert m["mlm_accuracy"] == pytest.approx(0.3)
    assert m["mlm_perplexity"] == pytest.approx(math.exp(2.0))
    assert m["nsp_accuracy"] == pytest.approx(7 / 8)
    sop = pretraining_metrics(20.0, 3, 10, 5, 8, pair="sop")
    assert sop["sop_accuracy"] == pytest.approx(5 / 8) and "nsp_accuracy" not in sop
    assert "nsp_accuracy" not in pretraining_metrics(20.0, 3, 10, 0, 0)  # MLM only


def test_table_aligns_cjk_labels():
    m = classification_metrics([0, 1], [0, 1], ["体育", "finance"])
    lines = format_table(m).splitlines()
    rows = [line for line in lines if line.startswith(("体育", "finance"))]
    # CJK characters are two columns wide: the numbers line up on screen.
    assert rows[0].index("1.0000") + 2 == rows[1].index("1.0000")
