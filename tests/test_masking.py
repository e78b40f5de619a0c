import torch

from bertkit.config.sections import MaskingConfig
from bertkit.data.loader import EpochSampler, KeyedDataset, mix
from bertkit.data.masking import IGNORE_INDEX, PretrainingCollator, example_draws, mask_tokens, random_draws

VOCAB, MASK = 1000, 4


def _batch(b=256, t=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, VOCAB, (b, t), generator=g)
    words = torch.arange(t).expand(b, t).clone()
    words[:, 0] = -1  # [CLS]
    words[:, -1] = -1  # [SEP]
    words[:, 100:] = -1  # padding
    return ids, words


def _mask(ids, words, seed, **kw):
    draws = random_draws(ids.shape, VOCAB, torch.Generator().manual_seed(seed))
    return mask_tokens(ids, words, draws, mask_id=MASK, **kw)


def test_rate_and_80_10_10():
    ids, words = _batch()
    out, labels = _mask(ids, words, 1, rate=0.15)
    picked = labels != IGNORE_INDEX
    candidates = (words >= 0).sum().item()
    assert abs(picked.sum().item() / candidates - 0.15) < 0.01
    n = picked.sum().item()
    masked = (out[picked] == MASK).sum().item() / n
    unchanged = (out[picked] == ids[picked]).sum().item() / n
    assert abs(masked - 0.8) < 0.02
    assert abs(unchanged - 0.1) < 0.015  # a random replacement equals the original only 1/VOCAB of the time
    assert abs(1 - masked - unchanged - 0.1) < 0.015


def test_configurable_proportions():
    ids, words = _batch()
    out, labels = _mask(ids, words, 5, rate=0.3, mask_prob=0.5, random_prob=0.5)
    picked = labels != IGNORE_INDEX
    assert abs(picked.sum().item() / (words >= 0).sum().item() - 0.3) < 0.01
    assert abs((out[picked] == MASK).float().mean().item() - 0.5) < 0.02
    assert (out[picked] == ids[picked]).float().mean().item() < 0.01  # none left unchanged


def test_labels_and_untouched_positions():
    ids, words = _batch()
    out, labels = _mask(ids, words, 2)
    picked = labels != IGNORE_INDEX
    assert torch.equal(labels[picked], ids[picked])  # labels are the original tokens
    assert torch.equal(out[~picked], ids[~picked])  # nothing else changes
    assert not picked[words < 0].any()  # special tokens and padding are never picked


def test_whole_words_are_picked_together():
    b, t = 64, 60
    ids = torch.randint(10, VOCAB, (b, t))
    words = (torch.arange(t) // 3).expand(b, t).clone()  # words of 3 tokens
    words[:, 0] = -1
    _, labels = _mask(ids, words, 3, rate=0.3)
    picked = (labels != IGNORE_INDEX)[:, 3:].reshape(b, -1, 3)  # full words only
    assert picked.any()
    assert torch.equal(picked.all(-1), picked.any(-1))


def test_max_predictions_caps_whole_words():
    b, t = 128, 60
    ids = torch.randint(10, VOCAB, (b, t))
    words = (torch.arange(t) // 3).expand(b, t).clone()
    _, free = _mask(ids, words, 4, rate=0.5)
    _, capped = _mask(ids, words, 4, rate=0.5, max_predictions=7)
    counts = (capped != IGNORE_INDEX).sum(1)
    assert counts.max().item() <= 7 and (counts % 3 == 0).all()  # whole words only: 6 of 7
    assert ((capped != IGNORE_INDEX) <= (free != IGNORE_INDEX)).all()  # a subset of the uncapped pick
    assert counts.float().mean().item() > 5  # rows with more picked words are cut to the budget, not emptied


def test_draws_per_example_do_not_depend_on_padding():
    a = example_draws([11, 12], [5, 9], width=16, vocab_size=VOCAB)
    b = example_draws([12], [9], width=9, vocab_size=VOCAB)
    assert torch.equal(a.word[1, :9], b.word[0]) and torch.equal(a.random_ids[1, :9], b.random_ids[0])
    assert (a.word[0, 5:] == 1).all()  # padding is never picked


def _examples():
    rows = [[2, *range(10, 10 + n), 3] for n in (5, 30, 12, 7)]
    return [{"input_ids": r, "token_type_ids": [0] * len(r), "word_ids": [-1, *range(len(r) - 2), -1]} for r in rows]


def test_masks_follow_the_example_not_the_batch(tokenizer):
    keyed = KeyedDataset(_examples(), seed=3)
    collate = PretrainingCollator(tokenizer, MaskingConfig(rate=0.4))
    whole = collate([keyed[(0, i)] for i in range(4)])
    halves = [collate([keyed[(0, i)] for i in pair]) for pair in ((0, 1), (2, 3))]
    for i in range(4):
        half = halves[i // 2]
        n = len(_examples()[i]["input_ids"])
        assert torch.equal(whole["labels"][i, :n], half["labels"][i % 2, :n])
        assert torch.equal(whole["input_ids"][i, :n], half["input_ids"][i % 2, :n])
    assert not torch.equal(collate([keyed[(1, 1)]])["labels"][0, :32], whole["labels"][1, :32])  # new epoch


def test_epoch_sampler():
    s = EpochSampler(10, seed=1)
    first = list(s)
    assert sorted(i for _, i in first) == list(range(10)) and {e for e, _ in first} == {0}
    assert list(s) == first  # reproducible
    s.set_epoch(1)
    assert [i for _, i in s] != [i for _, i in first]
    assert [i for _, i in EpochSampler(4, 0, shuffle=False)] == [0, 1, 2, 3]
    # Pinned: every run's data order and masks come from these seeds, and a resumed run (or a second process)
    # must draw the same ones; Python's hash() of a str would differ from process to process.
    assert [i for _, i in first] == [6, 3, 0, 5, 4, 7, 9, 8, 2, 1]
    assert [i for _, i in s] == [1, 4, 8, 0, 7, 3, 9, 5, 2, 6]
    assert (mix(1, 2), mix(2, 1)) == (8223792388187916959, 6751992546180168930)  # order matters


def test_collator_pads_and_masks(tokenizer):
    examples = [
        {
            "input_ids": [2, 50, 51, 3, 60, 3],
            "token_type_ids": [0, 0, 0, 0, 1, 1],
            "word_ids": [-1, 0, 0, -1, 1, -1],
            "next_sentence_label": 1,
            "mask_seed": 1,
        },
        {
            "input_ids": [2, 70, 3, 80, 3],
            "token_type_ids": [0, 0, 0, 1, 1],
            "word_ids": [-1, 0, -1, 1, -1],
            "next_sentence_label": 0,
            "mask_seed": 2,
        },
    ]
    batch = PretrainingCollator(tokenizer, MaskingConfig(rate=0.5))(examples)
    assert batch["input_ids"].shape == (2, 8)  # padded to a multiple of 8
    assert batch["attention_mask"].tolist() == [[1] * 6 + [0] * 2, [1] * 5 + [0] * 3]
    assert batch["token_type_ids"][1].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert batch["next_sentence_label"].tolist() == [1, 0]
    specials = torch.tensor([[1, 0, 0, 1, 0, 1, 1, 1], [1, 0, 1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    assert (batch["labels"][specials] == IGNORE_INDEX).all()
