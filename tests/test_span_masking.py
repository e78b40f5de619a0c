"""Span masking (masking.span): span lengths, the masked share, word alignment, segments, the per-sequence cap,
independence of batching, a plain-Python reference, `off` as before, and a pretraining run through the CLI."""

import json
import math
from itertools import accumulate

import pytest
import torch
from conftest import RECIPE, SMALL, run_cli

from bertkit.config import load_recipe
from bertkit.config.sections import MaskingConfig
from bertkit.data.loader import KeyedDataset
from bertkit.data.masking import (
    IGNORE_INDEX,
    PretrainingCollator,
    example_draws,
    mask_tokens,
    random_draws,
    span_ids,
    span_length_probs,
)
from bertkit.errors import BertkitError

VOCAB, MASK = 1000, 4
GEOMETRIC = span_length_probs(MaskingConfig(span="geometric"))
NGRAM = span_length_probs(MaskingConfig(span="ngram"))


class Tok:  # what the collator needs of a tokenizer
    pad_token_id, mask_token_id = 0, MASK

    def __len__(self):
        return VOCAB


def _words(b, t, seed, sep_at=None, pad_from=None):
    """(B, T) word ids: words of 1–3 tokens, [CLS] first, [SEP] at `sep_at` and last, -1 padding from `pad_from`."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 4, (b, t), generator=g)  # a word of lengths[r, k] tokens; enough of them
    words = torch.stack([torch.repeat_interleave(torch.arange(t), row)[:t] for row in lengths])
    specials = torch.zeros(b, t, dtype=torch.bool)
    specials[:, 0] = specials[:, -1] = True
    if sep_at is not None:
        specials[:, sep_at] = True
    if pad_from is not None:
        specials[:, pad_from:] = True
    # As bertkit tokenize numbers them: 0, 1 … along the row, a word cut by a [SEP] becomes two.
    before = torch.nn.functional.pad(torch.where(specials, -1, words)[:, :-1], (1, 0), value=-1)
    starts = ~specials & ((words != before) | (before < 0))
    return torch.where(specials, -1, starts.cumsum(1) - 1)


def _mask(words, seed, probs, **kw):
    ids = torch.randint(10, VOCAB, words.shape, generator=torch.Generator().manual_seed(seed + 1))
    draws = random_draws(words.shape, VOCAB, torch.Generator().manual_seed(seed), spans=True)
    out, labels = mask_tokens(ids, words, draws, mask_id=MASK, span_probs=probs, **kw)
    return ids, out, labels, draws


def _spans_of(spans_row, words_row):
    """{span id: (token positions, word ids)} of one row."""
    out: dict[int, tuple[list[int], list[int]]] = {}
    for pos, (s, w) in enumerate(zip(spans_row.tolist(), words_row.tolist(), strict=True)):
        if s >= 0:
            out.setdefault(s, ([], []))[0].append(pos)
            if w not in out[s][1]:
                out[s][1].append(w)
    return out


def test_length_probabilities():
    assert GEOMETRIC.tolist() == pytest.approx([0.2 * 0.8**n / (1 - 0.8**10) for n in range(10)])
    assert (torch.arange(1, 11) * GEOMETRIC).sum().item() == pytest.approx(3.797, abs=1e-3)  # SpanBERT's 3.8
    assert NGRAM.tolist() == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert span_length_probs(MaskingConfig(span="geometric", span_p=1)).tolist() == [1.0] + [0.0] * 9
    assert span_length_probs(MaskingConfig()) is None


def _span_lengths(words, spans, picked):
    """Per (row, span id) slot: words in the span, whether it ends its segment, whether it is picked."""
    pad = torch.nn.functional.pad
    first = (words >= 0) & (words != pad(words[:, :-1], (1, 0), value=-1))  # a word's first token
    ends_segment = (words >= 0) & (pad(words[:, 1:], (0, 1), value=-1) < 0)
    slot = spans.clamp(min=0)

    def per_span(flags):
        return torch.zeros_like(spans).scatter_add_(1, slot, (flags & (spans >= 0)).long())

    return per_span(first), per_span(ends_segment) > 0, per_span(picked) > 0


@pytest.mark.parametrize("probs", [GEOMETRIC, NGRAM], ids=["geometric", "ngram"])
def test_span_lengths_follow_the_distribution(probs):
    # Long rows: leaving out each segment's last span (cut short, and more often a long one) biases little.
    words = _words(32, 4096, seed=0)
    _, _, labels, draws = _mask(words, 1, probs)
    lengths, last, picked = _span_lengths(words, span_ids(words, draws.span, probs), labels != IGNORE_INDEX)
    drawn = lengths[(lengths > 0) & ~last]
    expected = (torch.arange(1, len(probs) + 1) * probs).sum().item()
    counts = torch.bincount(drawn, minlength=len(probs) + 1)[1:]
    assert drawn.numel() > 15000 and counts.numel() == len(probs)  # nothing longer than the longest length
    assert (counts / drawn.numel() - probs).abs().max().item() < 0.01  # the histogram, bin by bin (σ ≤ 0.004)
    assert drawn.float().mean().item() == pytest.approx(expected, abs=0.06)  # σ 0.02
    # The picked spans are a random choice of them: the same lengths, up to the budget's one crossing span.
    chosen = lengths[(lengths > 0) & ~last & picked]
    assert chosen.numel() > 2000 and chosen.float().mean().item() == pytest.approx(expected, abs=0.15)


def test_masked_share_is_the_rate():
    words = _words(256, 512, seed=2, sep_at=300)
    for rate in (0.15, 0.4):
        _, _, labels, _ = _mask(words, 3, GEOMETRIC, rate=rate)
        share = (labels != IGNORE_INDEX).sum().item() / (words >= 0).sum().item()
        assert share == pytest.approx(rate, abs=0.003)  # unbiased: rate·n on average, not fewer


def _reference(words, span_u, word_u, cut, probs, rate, cap):
    """Span masking of one row, step by step in plain Python: the picked token positions."""
    cdf = list(accumulate(probs.tolist()))
    cdf = torch.tensor(cdf, dtype=torch.float32).tolist()  # the thresholds the tensor code compares with
    word_tokens: list[list[int]] = []
    segments: list[list[int]] = []
    for t, w in enumerate(words):
        if w < 0:
            continue
        new_segment = t == 0 or words[t - 1] < 0
        if new_segment:
            segments.append([])
        if new_segment or w != words[t - 1]:
            segments[-1].append(len(word_tokens))
            word_tokens.append([])
        word_tokens[-1].append(t)
    spans = []
    for segment in segments:
        i = 0
        while i < len(segment):
            length = min(1 + sum(c <= span_u[segment[i]] for c in cdf), len(cdf))
            spans.append([t for w in segment[i : i + length] for t in word_tokens[w]])
            i += length
    budget = rate * sum(w >= 0 for w in words)
    picked, count = [], 0
    for k in sorted(range(len(spans)), key=lambda k: word_u[k]):
        size = len(spans[k])
        if cap is not None and count + size > cap:
            break
        if count + size > budget:  # the span that crosses the budget: taken with probability (budget − count)/size
            if cut < (budget - count) / size:
                picked += spans[k]
            break
        picked += spans[k]
        count += size
    return sorted(picked)


@pytest.mark.parametrize("cap", [None, 9])
@pytest.mark.parametrize("probs", [GEOMETRIC, NGRAM], ids=["geometric", "ngram"])
def test_matches_a_plain_python_reference(probs, cap):
    words = torch.cat([_words(20, 48, seed=4, sep_at=20), _words(20, 48, seed=5, sep_at=30, pad_from=41)])
    words[-5:] = torch.where(words[-5:] >= 0, torch.arange(48), -1)  # token masking: every token its own word
    words[-1, 1:-1] = torch.arange(46)  # a row without [SEP]
    words[-2] = -1  # a row with nothing to mask
    _, _, labels, d = _mask(words, 6, probs, rate=0.3, max_predictions=cap)
    for row in range(words.shape[0]):
        expected = _reference(
            words[row].tolist(), d.span[row].tolist(), d.word[row].tolist(), d.cut[row].item(), probs, 0.3, cap
        )
        assert torch.nonzero(labels[row] != IGNORE_INDEX).flatten().tolist() == expected, row


def test_spans_are_whole_words_within_segments():
    words = _words(128, 96, seed=7, sep_at=40, pad_from=80)
    ids, out, labels, draws = _mask(words, 8, NGRAM, rate=0.3)
    picked = labels != IGNORE_INDEX
    spans = span_ids(words, draws.span, NGRAM)
    assert not picked[words < 0].any() and (spans[words < 0] == -1).all()  # [CLS], [SEP], padding: never
    assert torch.equal(labels[picked], ids[picked]) and torch.equal(out[~picked], ids[~picked])
    sep = 40
    for row in range(words.shape[0]):
        for positions, ws in _spans_of(spans[row], words[row]).values():
            assert positions == list(range(positions[0], positions[-1] + 1))  # contiguous
            assert (positions[-1] < sep) or (positions[0] > sep)  # never across [SEP]
            assert 1 <= len(ws) <= 4
            span_tokens = set(positions)
            word_tokens = {p for p in range(words.shape[1]) if words[row, p].item() in ws}
            assert span_tokens == word_tokens  # whole words: no word split between spans
            assert len({picked[row, p].item() for p in positions}) == 1  # a span is picked whole or not at all
    # The same 80/10/10 replacement as word masking.
    n = picked.sum().item()
    assert (out[picked] == MASK).sum().item() / n == pytest.approx(0.8, abs=0.03)


def test_max_predictions_keeps_whole_spans():
    words = _words(256, 128, seed=9, sep_at=64)
    _, _, free, draws = _mask(words, 10, GEOMETRIC, rate=0.3)
    _, _, capped, _ = _mask(words, 10, GEOMETRIC, rate=0.3, max_predictions=20)
    counts = (capped != IGNORE_INDEX).sum(1)
    assert counts.max().item() <= 20
    assert ((capped != IGNORE_INDEX) <= (free != IGNORE_INDEX)).all()  # a subset of the uncapped pick
    spans = span_ids(words, draws.span, GEOMETRIC)
    for row in range(0, 256, 16):
        for positions, _ in _spans_of(spans[row], words[row]).values():
            assert len({(capped[row, p] != IGNORE_INDEX).item() for p in positions}) == 1
    assert counts.float().mean().item() > 14  # cut to the budget, not emptied


def _examples():
    out = []
    for n, m in ((20, 9), (7, 30), (40, 0), (3, 3), (60, 50)):
        ids = [2, *range(100, 100 + n), 3, *range(200, 200 + m), 3][: n + m + 3 if m else n + 2]
        words = [-1, *[i // 2 for i in range(n)], -1, *[n // 2 + 1 + i // 3 for i in range(m)], -1][: len(ids)]
        out.append({"input_ids": ids, "token_type_ids": [0] * len(ids), "word_ids": words})
    return out


@pytest.mark.parametrize("whole_word", [True, False])
def test_masks_follow_the_example_not_the_batch(whole_word):
    keyed = KeyedDataset(_examples(), seed=3)
    collate = PretrainingCollator(Tok(), MaskingConfig(rate=0.3, span="geometric", whole_word=whole_word))
    whole = collate([keyed[(0, i)] for i in range(5)])
    for batch_of in ([0, 1], [2], [3, 4], [4, 3, 0, 2, 1]):  # other companions, other padding, other order
        part = collate([keyed[(0, i)] for i in batch_of])
        for slot, i in enumerate(batch_of):
            n = len(_examples()[i]["input_ids"])
            assert torch.equal(whole["labels"][i, :n], part["labels"][slot, :n])
            assert torch.equal(whole["input_ids"][i, :n], part["input_ids"][slot, :n])
    assert (whole["labels"] != IGNORE_INDEX).any()
    assert not torch.equal(collate([keyed[(1, 4)]])["labels"][0], whole["labels"][4])  # a new epoch: new masks


def test_span_draws_come_after_the_others():
    plain = example_draws([11, 12], [5, 9], width=16, vocab_size=VOCAB)
    more = example_draws([11, 12], [5, 9], width=16, vocab_size=VOCAB, spans=True)
    for name in ("word", "action", "random_ids"):
        assert torch.equal(getattr(plain, name), getattr(more, name))
    alone = example_draws([12], [9], width=9, vocab_size=VOCAB, spans=True)
    assert torch.equal(more.span[1, :9], alone.span[0]) and more.cut[1] == alone.cut[0]
    assert (more.span[0, 5:] == 1).all() and more.span.shape == (2, 16)


PINNED = {  # the collator's output before span masking existed: `off` must keep it bit for bit
    "token": (
        [[1, 5, 6, 9, 11, 14, 24, 26, 28], [4, 6, 11, 12, 15, 18, 19, 20, 23, 24, 35, 37]],
        [259, 4, 4, 46, 814, 4, 4, 4, 4, 4, 4, 4, 4, 4, 209, 4, 4, 214, 4, 264, 4],
    ),
    "whole_word": ([[19, 20, 22, 23, 24], [1, 2, 9, 10, 11]], [4, 4, 4, 4, 4, 4, 698, 4, 4, 4]),
}


@pytest.mark.parametrize("span", ["off", False])  # YAML's `off` arrives as False
def test_off_is_the_word_masking_of_before(span):
    keyed = KeyedDataset(_examples()[:2], seed=5)
    settings = {"token": {"rate": 0.3}, "whole_word": {"rate": 0.4, "whole_word": True, "max_predictions_per_seq": 6}}
    for name, kw in settings.items():
        config = MaskingConfig(**kw, span=span, span_p=0.5, span_ngram_probs=[1.0])  # span fields unused when off
        batch = PretrainingCollator(Tok(), config)([keyed[(0, i)] for i in range(2)])
        picked = batch["labels"] != IGNORE_INDEX
        assert ([torch.nonzero(r).flatten().tolist() for r in picked], batch["input_ids"][picked].tolist()) == (
            PINNED[name]
        )


@pytest.mark.parametrize(
    "override,message",
    [
        ("masking.span=bpe", "masking.span: Input should be 'off', 'geometric' or 'ngram'"),
        ("masking.span_p=0", "masking.span_p: Input should be greater than 0"),
        ("masking.span_p=1.5", "masking.span_p: Input should be less than or equal to 1"),
        ("masking.span_max_length=0", "masking.span_max_length: Input should be greater than or equal to 1"),
        ("masking.span_ngram_probs=[0.5,0.4]", "masking.span_ngram_probs: must be probabilities"),
        ("masking.span_ngram_probs=[1.5,-0.5]", "masking.span_ngram_probs: must be probabilities"),
        ("masking.span_ngram_probs=[]", "masking.span_ngram_probs: List should have at least 1 item"),
    ],
)
def test_invalid_span_settings_are_one_line_errors(override, message):
    with pytest.raises(BertkitError, match="command line: " + message.replace("[", r"\[")):
        load_recipe(RECIPE, [override], "pretrain")


def test_span_settings_load_from_the_command_line():
    cfg = load_recipe(RECIPE, ["masking.span=ngram", "masking.span_ngram_probs=[0.5,0.5]"], "pretrain")
    assert span_length_probs(cfg.masking).tolist() == [0.5, 0.5]
    assert load_recipe(RECIPE, ["masking.span=off"], "pretrain").masking.span == "off"


@pytest.mark.slow
def test_pretrain_with_span_masking_through_the_cli(tmp_path):
    assert run_cli("tokenize", RECIPE, f"output_dir={tmp_path}", *SMALL).exit_code == 0
    result = run_cli(
        "pretrain",
        RECIPE,
        f"output_dir={tmp_path}",
        *SMALL,
        "masking.span=geometric",
        "masking.max_predictions_per_seq=10",
        "train.max_steps=2",
        "train.eval_every=2",
        "train.batch_size=8",
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    evals = [r for r in records if "eval/mlm_accuracy" in r]
    assert evals and evals[-1]["eval/masked_tokens"] > 0
    assert "span: geometric" in (tmp_path / "pretrain" / "bertkit.yaml").read_text()
