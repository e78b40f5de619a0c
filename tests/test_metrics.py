import math

import pytest

from bertkit.metrics import (
    classification_metrics,
    cmrc_em,
    cmrc_f1,
    cmrc_metrics,
    entity_metrics,
    format_table,
    mixed_segmentation,
    normalize_answer,
    pretraining_metrics,
    regression_metrics,
    squad_em,
    squad_f1,
    squad_metrics,
)


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


def test_mcc_by_hand():
    # TP 2, TN 2, FP 1, FN 1: MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 1) / sqrt(3^4) = 1/3
    m = classification_metrics([1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1], ["neg", "pos"])
    assert m["mcc"] == pytest.approx(1 / 3)
    assert classification_metrics([0, 1], [1, 0], ["neg", "pos"])["mcc"] == pytest.approx(-1.0)


def test_class_never_predicted_or_seen_scores_zero():
    m = classification_metrics([0, 0], [0, 0], ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["mcc"] == 0.0  # undefined with one label on both sides


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


def test_regression_perfect_and_anti_correlated():
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert m == pytest.approx({"pearson": 1.0, "spearman": 1.0, "mse": (1 + 4 + 9 + 16) / 4})
    anti = regression_metrics([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0])
    assert anti["pearson"] == pytest.approx(-1.0) and anti["spearman"] == pytest.approx(-1.0)


def test_spearman_with_ties_by_hand():
    # Ranks: gold [1, 2.5, 2.5, 4] (tie shares the mean rank), pred [1, 3, 2, 4]; Spearman is Pearson of the ranks:
    # deviations [-1.5, 0, 0, 1.5] and [-1.5, .5, -.5, 1.5] -> 4.5 / sqrt(4.5 * 5) = sqrt(0.9). (The no-ties formula
    # 1 - 6 sum d^2 / (n (n^2 - 1)) would give 0.95.)
    m = regression_metrics([1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0])
    assert m["spearman"] == pytest.approx(math.sqrt(0.9))


def test_entity_i_without_b_conlleval_versus_strict():
    gold = [["B-PER", "I-PER", "O"]]
    pred = [["I-PER", "I-PER", "O"]]
    m = entity_metrics(gold, pred)
    # conlleval: the I-PER run starts an entity, same span and type as gold.
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)
    # strict IOB2: no B-PER, no entity predicted.
    assert (m["strict_precision"], m["strict_recall"], m["strict_f1"]) == (0.0, 0.0, 0.0)


def test_entity_bioes():
    gold = [["B-LOC", "E-LOC", "O", "S-PER", "S-ORG"]]
    pred = [["I-LOC", "E-LOC", "O", "S-PER", "O"]]
    m = entity_metrics(gold, pred, scheme="BIOES")
    # conlleval: LOC (I-E) and PER found, ORG missed: P 2/2, R 2/3.
    assert (m["precision"], m["recall"]) == pytest.approx((1.0, 2 / 3))
    # strict IOBES: an I-LOC E-LOC without B-LOC is no entity; only PER: P 1/1, R 1/3, F 0.5.
    assert (m["strict_precision"], m["strict_recall"], m["strict_f1"]) == pytest.approx((1.0, 1 / 3, 0.5))
    with pytest.raises(ValueError):
        entity_metrics(gold, pred, scheme="BIO")  # S- and E- tags are not BIO
    with pytest.raises(ValueError, match="scheme"):
        entity_metrics(gold, pred, scheme="BILOU")


def test_entity_types_and_support():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "O"]]
    m = entity_metrics(gold, pred)
    # gold PER x2, LOC, ORG; predicted PER, ORG x2; correct PER and the second sentence's ORG.
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((2 / 3, 2 / 4, 4 / 7))
    assert list(m["per_type"]) == ["LOC", "ORG", "PER"]
    assert m["per_type"]["PER"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_type"]["ORG"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    # An entity never crosses a sentence boundary: B-LOC then B-ORG are two entities, not one.
    assert sum(t["support"] for t in m["per_type"].values()) == 4


def test_entity_sentences_without_entities():
    m = entity_metrics([["O", "O"], ["B-PER"]], [["O", "O"], ["B-PER"]])
    assert m["f1"] == 1.0 and m["strict_f1"] == 1.0  # an all-O sentence changes nothing
    empty = entity_metrics([["O", "O"]], [["O", "O"]])
    assert empty["f1"] == 0.0 and empty["strict_f1"] == 0.0 and empty["per_type"] == {}  # as conlleval


def test_squad_articles_punctuation_and_whitespace():
    assert normalize_answer("The Eiffel Tower.") == "eiffel tower"
    assert squad_em("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert normalize_answer("  An\tapple,  a day ") == "apple day"
    assert normalize_answer("Theatre and anatomy") == "theatre and anatomy"  # whole words only
    assert normalize_answer("U.S.-based") == "usbased"  # punctuation goes before the words are split


def test_squad_multiple_gold_answers_take_the_max():
    assert squad_em("Paris", ["France", "paris"]) == 1.0
    # "the city of Paris" -> [city, of, paris]; vs [paris]: P 1/3 R 1 F 0.5; vs [city, of, light]: P 2/3 R 2/3.
    assert squad_f1("the city of Paris", ["Paris", "city of light"]) == pytest.approx(2 / 3)


def test_squad_partial_f1_by_hand():
    # [denver, broncos, won] vs [broncos]: one shared token, P 1/3, R 1, F 2 * 1/3 / (4/3) = 0.5.
    assert squad_f1("Denver Broncos won", ["Broncos"]) == pytest.approx(0.5)
    assert squad_em("Denver Broncos won", ["Broncos"]) == 0.0
    # Shared tokens are counted with multiplicity: [cat, cat] vs [cat] share one, P 1/2 R 1 F 2/3.
    assert squad_f1("the cat, the cat", ["a cat"]) == pytest.approx(2 / 3)


def test_squad_v2_unanswerable():
    assert squad_em("", []) == 1.0 and squad_f1("", []) == 1.0
    assert squad_em("Paris", []) == 0.0 and squad_f1("Paris", []) == 0.0
    assert squad_f1("The", []) == 1.0  # normalizes to nothing: an abstention
    assert squad_em("", ["Paris"]) == 0.0 and squad_f1("", ["Paris"]) == 0.0


def test_squad_metrics_with_breakdown():
    predictions = {"q1": "The Eiffel Tower.", "q2": "", "q3": "Paris", "q4": "red dog"}
    references = {"q1": ["eiffel tower"], "q2": [], "q3": [], "q4": ["big red dog"]}
    m = squad_metrics(predictions, references)
    # EM 1, 1, 0, 0; F1 1, 1, 0 and (P 1, R 2/3) 0.8.
    assert m == pytest.approx(
        {
            "exact_match": 50.0,
            "f1": 70.0,
            "has_answer_exact": 50.0,
            "has_answer_f1": 90.0,
            "has_answer_total": 2,
            "no_answer_exact": 50.0,
            "no_answer_f1": 50.0,
            "no_answer_total": 2,
        }
    )
    assert "has_answer_exact" in format_table(m)


def test_squad_metrics_answerable_only_and_missing_predictions():
    m = squad_metrics({"q1": "Paris"}, {"q1": ["Paris"], "q2": ["London"], "q3": []})
    assert m["exact_match"] == pytest.approx(100 / 3)  # missing predictions score 0, even when unanswerable
    assert squad_metrics({"q1": "Paris"}, {"q1": ["Paris"]}) == {"exact_match": 100.0, "f1": 100.0}


def test_cmrc_chinese_punctuation_ignored():
    assert cmrc_em("北京。", ["北京"]) == 1.0 and cmrc_f1("北京。", ["北京"]) == 1.0
    assert cmrc_metrics({"q1": "《红楼梦》"}, {"q1": ["红楼梦"]}) == {"exact_match": 100.0, "f1": 100.0}
    assert cmrc_em("北京.", ["北京"]) == 0.0  # the official list has no ASCII period


def test_cmrc_mixed_segmentation():
    # Chinese characters one by one, the other text in words, lowercased.
    assert mixed_segmentation("iPhone X发布于2017年") == ["iphone", "x", "发", "布", "于", "2017", "年"]
    assert mixed_segmentation("约1,000.5万（人）") == ["约", "1,000.5", "万", "人"]
    assert mixed_segmentation("Wi-Fi：(U.S.)") == ["wifi", "(", "u.s", ".", ")"]  # "-" and "：" dropped, no split


def test_cmrc_partial_f1_uses_longest_common_run():
    # [北 京 天 安 门] vs [北 京]: LCS 2, P 2/5, R 1, F 2 * 0.4 / 1.4 = 4/7.
    assert cmrc_f1("北京天安门", ["北京"]) == pytest.approx(4 / 7)
    # [天 安 门 北 京] vs [北 京 天 安]: all of 北京天安 is shared as a bag, but the longest common run is 2:
    # P 2/5, R 2/4, F 4/9 (bag-of-tokens would give 8/9).
    assert cmrc_f1("天安门北京", ["北京天安", "上海"]) == pytest.approx(4 / 9)
    m = cmrc_metrics({"q1": "北京天安门", "q2": "上海"}, {"q1": ["北京"], "q2": ["上海。", "沪"]})
    assert m == pytest.approx({"exact_match": 50.0, "f1": 100 * (4 / 7 + 1) / 2})


def test_table_prints_per_type_block():
    m = entity_metrics([["B-PER", "O", "B-地点"]], [["B-PER", "O", "O"]])
    lines = format_table(m).splitlines()
    assert any(line.startswith("strict_f1") for line in lines)
    rows = lines[lines.index(next(line for line in lines if line.startswith("type"))) + 1 :]
    assert [row.split()[0] for row in rows] == ["PER", "地点"]
    assert rows[1].index("0.0000") + 2 == rows[0].index("1.0000")  # CJK type names align too
