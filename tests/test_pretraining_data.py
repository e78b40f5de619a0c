import random

import pytest

from bertkit.data.pretraining import Sentence, Special, build_nsp_examples, truncate_pair
from bertkit.prepare import split_documents

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
            sentences.append(Sentence([10000 + 100 * d + s] * n, [k // 2 for k in range(n)]))
        docs.append(sentences)
    return docs


def _doc(token):
    return (token - 10000) // 100


def _examples(max_len=64, **kw):
    return list(build_nsp_examples(_corpus(**kw), max_len, 0.1, random.Random(1), SPECIAL))


def test_random_next_is_about_half_on_long_documents():
    # A chunk of one sentence (a document's last) can only be paired with a random B, as in
    # google-research/bert: the share is near 50% on documents much longer than an example.
    examples = _examples(max_len=128, n_docs=100, n_sentences=(30, 60))
    share = sum(ex["next_sentence_label"] for ex in examples) / len(examples)
    assert 0.45 < share < 0.57


def test_layout_lengths_and_segments():
    examples = _examples()
    assert len(examples) > 100
    for ex in examples:
        ids, types = ex["input_ids"], ex["token_type_ids"]
        assert len(ids) <= 64 and len(types) == len(ids) == len(ex["word_ids"])
        assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 2
        first_sep = ids.index(SEP)
        assert first_sep >= 2 and first_sep <= len(ids) - 3  # A and B are non-empty
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


def test_word_ids_are_consecutive_and_special_tokens_have_none():
    for ex in _examples():
        words = ex["word_ids"]
        sep = ex["input_ids"].index(SEP)
        assert words[0] == words[sep] == words[-1] == -1
        real = [w for w in words if w >= 0]
        assert real[0] == 0 and all(b - a in (0, 1) for a, b in zip(real, real[1:], strict=False))
        # no word spans the [SEP]
        assert not set(words[1:sep]) & set(words[sep + 1 : -1])


def test_every_sentence_of_a_single_document_corpus_needs_a_pair():
    docs = [[Sentence([5] * 4, [0, 1, 2, 3]), Sentence([6] * 4, [0, 1, 2, 3])]]
    examples = list(build_nsp_examples(docs, 32, 0.0, random.Random(0), SPECIAL))
    assert [ex["next_sentence_label"] for ex in examples] == [0]  # no other document to draw from


def test_truncate_pair_trims_the_longer_side():
    a, b = list(range(10)), list(range(100, 104))
    aw, bw = list(a), list(b)
    truncate_pair(a, aw, b, bw, 8, random.Random(0))
    assert len(a) + len(b) == 8 and len(b) == 4 and len(a) == 4
    assert a == aw and a == sorted(a) and set(a) <= set(range(10))


@pytest.mark.parametrize("n,fraction,expected", [(100, 0.05, 5), (10, 0.05, 1), (1, 0.5, 0), (5, 0.0, 0)])
def test_split_documents(n, fraction, expected):
    train, val = split_documents(n, fraction, seed=0)
    assert len(val) == expected and sorted(train + val) == list(range(n))
    assert split_documents(n, fraction, seed=0) == (train, val)
