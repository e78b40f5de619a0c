import torch

from bertkit.config import MaskingConfig
from bertkit.data.masking import IGNORE_INDEX, PretrainingCollator, mask_tokens

VOCAB, MASK = 1000, 4


def _batch(b=256, t=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, VOCAB, (b, t), generator=g)
    words = torch.arange(t).expand(b, t).clone()
    words[:, 0] = -1  # [CLS]
    words[:, -1] = -1  # [SEP]
    words[:, 100:] = -1  # padding
    return ids, words


def test_rate_and_80_10_10():
    ids, words = _batch()
    out, labels = mask_tokens(
        ids, words, vocab_size=VOCAB, mask_id=MASK, rate=0.15, generator=torch.Generator().manual_seed(1)
    )
    picked = labels != IGNORE_INDEX
    candidates = (words >= 0).sum().item()
    assert abs(picked.sum().item() / candidates - 0.15) < 0.01
    n = picked.sum().item()
    masked = (out[picked] == MASK).sum().item() / n
    unchanged = (out[picked] == ids[picked]).sum().item() / n
    assert abs(masked - 0.8) < 0.02
    assert abs(unchanged - 0.1) < 0.015  # a random replacement equals the original only 1/VOCAB of the time
    assert abs(1 - masked - unchanged - 0.1) < 0.015


def test_labels_and_untouched_positions():
    ids, words = _batch()
    out, labels = mask_tokens(ids, words, vocab_size=VOCAB, mask_id=MASK, generator=torch.Generator().manual_seed(2))
    picked = labels != IGNORE_INDEX
    assert torch.equal(labels[picked], ids[picked])  # labels are the original tokens
    assert torch.equal(out[~picked], ids[~picked])  # nothing else changes
    assert not picked[words < 0].any()  # special tokens and padding are never picked


def test_whole_words_are_picked_together():
    b, t = 64, 60
    ids = torch.randint(10, VOCAB, (b, t))
    words = (torch.arange(t) // 3).expand(b, t).clone()  # words of 3 tokens
    words[:, 0] = -1
    _, labels = mask_tokens(
        ids, words, vocab_size=VOCAB, mask_id=MASK, rate=0.3, generator=torch.Generator().manual_seed(3)
    )
    picked = (labels != IGNORE_INDEX)[:, 3:].reshape(b, -1, 3)  # full words only
    assert picked.any()
    assert torch.equal(picked.all(-1), picked.any(-1))


def test_collator_pads_and_masks(tokenizer):
    examples = [
        {
            "input_ids": [2, 50, 51, 3, 60, 3],
            "token_type_ids": [0, 0, 0, 0, 1, 1],
            "word_ids": [-1, 0, 0, -1, 1, -1],
            "next_sentence_label": 1,
        },
        {
            "input_ids": [2, 70, 3, 80, 3],
            "token_type_ids": [0, 0, 0, 1, 1],
            "word_ids": [-1, 0, -1, 1, -1],
            "next_sentence_label": 0,
        },
    ]
    collate = PretrainingCollator(tokenizer, MaskingConfig(rate=0.5), generator=torch.Generator().manual_seed(0))
    batch = collate(examples)
    assert batch["input_ids"].shape == (2, 8)  # padded to a multiple of 8
    assert batch["attention_mask"].tolist() == [[1] * 6 + [0] * 2, [1] * 5 + [0] * 3]
    assert batch["token_type_ids"][1].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert batch["next_sentence_label"].tolist() == [1, 0]
    specials = torch.tensor([[1, 0, 0, 1, 0, 1, 1, 1], [1, 0, 1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    assert (batch["labels"][specials] == IGNORE_INDEX).all()
