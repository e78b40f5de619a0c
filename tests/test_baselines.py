"""The classical baselines of `make results` (bench/baselines.py) on hand-made data."""

import importlib.util

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("baselines", ROOT / "bench" / "baselines.py")
baselines = importlib.util.module_from_spec(spec)
spec.loader.exec_module(baselines)


def test_entities_of_a_bio_sentence():
    tokens = list("江泽民在北京人民大会堂")
    tags = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-LOC", "I-LOC", "I-LOC", "I-LOC", "I-LOC"]
    assert baselines.entities(tokens, tags) == [("江泽民", "PER"), ("北京", "LOC"), ("人民大会堂", "LOC")]


def test_dictionary_tagger_takes_the_longest_known_entity():
    train = [
        {"tokens": list("北京大学很好"), "tags": ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"]},
        {"tokens": list("去北京"), "tags": ["O", "B-LOC", "I-LOC"]},
    ]
    test = [
        {"tokens": list("北京大学在北京"), "tags": ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC"]},
        {"tokens": list("上海"), "tags": ["B-LOC", "I-LOC"]},
    ]
    # Found: 北京大学 (ORG) and 北京 (LOC), both right; 上海 is unknown: precision 1, recall 2/3.
    metrics = baselines.dictionary_tagger(train, test)
    assert metrics["precision"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(0.8)


def test_tfidf_classifier_separates_two_obvious_classes():
    train = [{"text": t, "label": "pos"} for t in ("很好很好", "好用", "非常好")] + [
        {"text": t, "label": "neg"} for t in ("很差", "太差了", "差评")
    ]
    test = [{"text": "好", "label": "pos"}, {"text": "差", "label": "neg"}]
    assert baselines.tfidf_classifier(train, test) == 1.0
