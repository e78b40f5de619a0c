import random
from typing import get_args

import pytest

from bertkit.commands.tokenize import split_documents
from bertkit.config.sections import DataConfig
from bertkit.data.pretraining import (
    BUILDERS,
    LABELLED,
    Sentence,
    Special,
    build_nsp_examples,
    build_packed_examples,
    build_sop_examples,
    truncate_pair,
    word_ids_from_starts,
)

CLS, SEP = 2, 3
SPECIAL = Special(cls=CLS, sep=SEP)


def _corpus(n_docs=60, seed=0, longest=25, n_sentences=(2, 12)):
    """Token id = 10000 + 100*doc + sentence: every token tells where it came from."""
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        sentences = []
        for s in range(rng.randint(*n_sentences)):
            n = rng.randint(3, longest)
            sentences.append(Sentence([10000 + 100 * d + s] * n, [1 - k % 2 for k in range(n)]))
        docs.append(sentences)
    return docs


def _word_ids(example):
    starts = example["word_starts"]
    return word_ids_from_starts(starts, [len(starts)]).tolist()


def _doc(token):
    return (token - 10000) // 100


def _examples(max_len=64, **kw):
    return list(build_nsp_examples(_corpus(**kw), max_len, 0.1, random.Random(1), SPECIAL))


def _sop_examples(max_len=64, **kw):
    return list(build_sop_examples(_corpus(**kw), max_len, 0.1, random.Random(1), SPECIAL))


def test_random_next_is_about_half_on_long_documents():
    # A chunk of one sentence (a document's last) can only be paired with a random B, as in
    # google-research/bert: the share is near 50% on documents much longer than an example.
    examples = _examples(max_len=128, n_docs=100, n_sentences=(30, 60))
    share = sum(ex["next_sentence_label"] for ex in examples) / len(examples)
    assert 0.45 < share < 0.57


@pytest.mark.parametrize("examples", [_examples, _sop_examples], ids=["nsp", "sop"])
def test_layout_lengths_and_segments(examples):
    examples = examples()
    assert len(examples) > 100
    for ex in examples:
        ids, types = ex["input_ids"], ex["token_type_ids"]
        assert len(ids) <= 64 and len(types) == len(ids) == len(_word_ids(ex))
        assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 2
        first_sep = ids.index(SEP)
        assert 2 <= first_sep <= len(ids) - 3  # A and B are non-empty
        assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)


def test_random_next_comes_from_another_document():
    examples = _examples(n_docs=200)
    assert 0.3 < sum(ex["next_sentence_label"] for ex in examples) / len(examples) < 0.7
    for ex in examples:
        ids = ex["input_ids"]
        sep = ids.index(SEP)
        a_docs = {_doc(t) for t in ids[1:sep]}
        b_docs = {_doc(t) for t in ids[sep + 1 : -1]}
        assert len(a_docs) == 1
        if ex["next_sentence_label"] == 1:
            assert not a_docs & b_docs
        else:
            assert a_docs == b_docs
            # B comes after A in the document (random truncation may trim the front of B, as in BERT).
            assert ids[sep + 1] % 100 > ids[sep - 1] % 100


@pytest.mark.parametrize("objective", ["nsp", "sop"])
def test_word_ids_are_consecutive_and_special_tokens_have_none(objective):
    for ex in _examples() if objective == "nsp" else _sop_examples():
        words = _word_ids(ex)
        sep = ex["input_ids"].index(SEP)
        assert words[0] == words[sep] == words[-1] == -1
        real = [w for w in words if w >= 0]
        assert real[0] == 0 and all(b - a in (0, 1) for a, b in zip(real, real[1:], strict=False))
        # no word spans the [SEP]
        assert not set(words[1:sep]) & set(words[sep + 1 : -1])


def test_every_sentence_of_a_single_document_corpus_needs_a_pair():
    docs = [[Sentence([5] * 4, [1, 1, 1, 1]), Sentence([6] * 4, [1, 1, 1, 1])]]
    examples = list(build_nsp_examples(docs, 32, 0.0, random.Random(0), SPECIAL))
    assert [ex["next_sentence_label"] for ex in examples] == [0]  # no other document to draw from


def test_truncate_pair_trims_the_longer_side():
    a, b = list(range(10)), list(range(100, 104))
    aw, bw = list(a), list(b)
    truncate_pair(a, aw, b, bw, 8, random.Random(0))
    assert len(a) + len(b) == 8 and len(b) == 4 and len(a) == 4
    assert a == aw and a == sorted(a) and set(a) <= set(range(10))


def test_sop_segments_are_consecutive_text_of_one_document_swapped_half_of_the_time():
    examples = _sop_examples(max_len=32, n_docs=1000)
    assert len(examples) > 3000
    assert 0.45 < sum(ex["next_sentence_label"] for ex in examples) / len(examples) < 0.55
    for ex in examples:
        ids = ex["input_ids"]
        sep = ids.index(SEP)
        x, y = ids[1:sep], ids[sep + 1 : -1]
        assert len({_doc(t) for t in x + y}) == 1
        # Token id % 100 is the sentence index; a lone sentence split in two puts the same index on both sides.
        first, second = (x, y) if ex["next_sentence_label"] == 0 else (y, x)
        assert max(t % 100 for t in first) <= min(t % 100 for t in second)


def test_sop_splits_a_lone_sentence_and_skips_one_of_a_single_token():
    docs = [[Sentence([5] * 6, [1, 0, 1, 1, 0, 1])], [Sentence([7], [1])]]
    examples = list(build_sop_examples(docs, 32, 0.0, random.Random(0), SPECIAL))
    assert len(examples) == 1
    ids = examples[0]["input_ids"]
    assert ids.count(5) == 6 and ids[0] == CLS and ids.count(SEP) == 2
    words = _word_ids(examples[0])
    sep = ids.index(SEP)
    assert not set(words[1:sep]) & set(words[sep + 1 : -1])  # a word cut by the split becomes two


def test_packed_rows_are_full_and_lose_nothing():
    docs = _corpus(n_docs=30, longest=80)
    examples = list(build_packed_examples(docs, 64, 0.1, random.Random(1), SPECIAL))
    stream = []
    for d, doc in enumerate(docs):
        stream += [SEP] * (d > 0) + [t for s in doc for t in s.ids]
    assert len(examples) == -(-len(stream) // 62)
    assert all(len(ex["input_ids"]) == 64 for ex in examples[:-1]) and 3 <= len(examples[-1]["input_ids"]) <= 64
    inner = []
    for ex in examples:
        ids = ex["input_ids"]
        assert ids[0] == CLS and ids[-1] == SEP
        assert ex["token_type_ids"] == [0] * len(ids)
        assert "next_sentence_label" not in ex
        inner += ids[1:-1]
    assert inner == stream
    # Sentences of up to 80 tokens do not fit a 62-token row: some run on into the next row.
    assert any(examples[k]["input_ids"][-2] == examples[k + 1]["input_ids"][1] for k in range(len(examples) - 1))


def test_packed_word_ids():
    docs = [
        [Sentence([5] * 4, [1, 0, 1, 0]), Sentence([6] * 3, [1, 1, 1])],
        [Sentence([7] * 3, [1, 0, 1])],
    ]
    examples = list(build_packed_examples(docs, 7, 0.0, random.Random(0), SPECIAL))
    rows = [[CLS, 5, 5, 5, 5, 6, SEP], [CLS, 6, 6, SEP, 7, 7, SEP], [CLS, 7, SEP]]
    assert [ex["input_ids"] for ex in examples] == rows
    # Per row, 0.. in order; the word cut by the row boundary starts row 2 afresh; -1 on every [CLS]/[SEP].
    assert [_word_ids(ex) for ex in examples] == [[-1, 0, 0, 1, 1, 2, -1], [-1, 0, 1, -1, 2, 2, -1], [-1, 0, -1]]


def test_packed_word_ids_on_a_corpus():
    for ex in build_packed_examples(_corpus(), 64, 0.1, random.Random(1), SPECIAL):
        ids, words = ex["input_ids"], _word_ids(ex)
        assert [i for i, w in enumerate(words) if w < 0] == [i for i, t in enumerate(ids) if t in (CLS, SEP)]
        real = [w for w in words if w >= 0]
        assert real[0] == 0 and all(b - a in (0, 1) for a, b in zip(real, real[1:], strict=False))


@pytest.mark.parametrize("objective", get_args(DataConfig.model_fields["objective"].annotation))
def test_every_objective_builds_examples_with_a_sentence_label_only_where_labelled(objective):
    # Every data.objective the config takes has a builder, and its examples carry next_sentence_label exactly when
    # it is in LABELLED (what tokenize writes as a column and pretrain trains a head on).
    examples = list(BUILDERS[objective](_corpus(n_docs=10), 64, 0.1, random.Random(0), SPECIAL))
    assert examples and all(("next_sentence_label" in ex) == (objective in LABELLED) for ex in examples)


@pytest.mark.parametrize("n,fraction,expected", [(100, 0.05, 5), (10, 0.05, 1), (1, 0.5, 0), (5, 0.0, 0)])
def test_split_documents(n, fraction, expected):
    train, val = split_documents(n, fraction, random.Random(0))
    assert len(val) == expected and sorted(train + val) == list(range(n))
    assert split_documents(n, fraction, random.Random(0)) == (train, val)


def test_word_ids_from_starts_over_many_rows():
    starts = [-1, 1, 0, 1, -1, 0, 1, -1] + [-1, 0, 0, 1, -1]
    # A continuation right after a special token (front-truncated segment) begins a word; rows restart at 0.
    assert word_ids_from_starts(starts, [8, 5]).tolist() == [-1, 0, 0, 1, -1, 2, 3, -1] + [-1, 0, 0, 1, -1]


def test_truncating_a_huge_segment_is_linear():
    a, b = list(range(300_000)), list(range(10))
    a_starts, b_starts = [1] * len(a), [1] * len(b)
    truncate_pair(a, a_starts, b, b_starts, 100, random.Random(0))
    assert len(a) == 90 and len(b) == 10 and len(a_starts) == 90
    assert a == list(range(a[0], a[0] + 90))  # one contiguous window survives
