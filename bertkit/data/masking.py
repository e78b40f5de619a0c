"""Masked-LM corruption as a pure tensor function, and the pretraining collator that pads and masks.

    draws = example_draws(seeds=[7, 8], lengths=[12, 9], width=16, vocab_size=8000)
    inputs, labels = mask_tokens(input_ids, word_ids, draws, mask_id=4, rate=0.15)
    collate = PretrainingCollator(tokenizer, cfg.masking)   # DataLoader(KeyedDataset(...), collate_fn=collate)

    span_probs = span_length_probs(MaskingConfig(span="geometric"))    # P(1 word), P(2 words) … (SpanBERT)
    draws = example_draws([7, 8], [12, 9], width=16, vocab_size=8000, spans=True)
    inputs, labels = mask_tokens(input_ids, word_ids, draws, mask_id=4, span_probs=span_probs)

Masking is drawn anew for every epoch (dynamic masking, as RoBERTa) from each example's own seed (see
bertkit/data/loader.py), so it does not depend on how examples are batched. Token masking is whole-word masking
where every token is its own word, so one function serves both; span masking (SpanBERT, MacBERT's n-grams) picks
runs of consecutive words instead of single words, through the same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from bertkit.config.sections import MaskingConfig
from bertkit.data.packing import pack_batch
from bertkit.data.padding import IGNORE_INDEX, pad, padded_length


@dataclass
class Draws:
    """The randomness of one batch's masking, each (B, T)."""

    word: torch.Tensor  # uniform per word slot: a word is picked when its draw < rate (spans: the span's rank)
    action: torch.Tensor  # uniform per token: [MASK] / random token / unchanged
    random_ids: torch.Tensor  # replacement token per position
    # Span masking only (drawn after the above, so that they stay the same with spans on or off):
    span: torch.Tensor | None = None  # uniform per word slot: the length of a span starting at that word
    cut: torch.Tensor | None = None  # (B,) uniform: whether the span that crosses the row's budget is taken


def random_draws(
    shape: tuple[int, int], vocab_size: int, generator: torch.Generator | None = None, spans: bool = False
) -> Draws:
    draws = Draws(
        torch.rand(shape, generator=generator),
        torch.rand(shape, generator=generator),
        torch.randint(vocab_size, shape, generator=generator),
    )
    if spans:
        draws.span = torch.rand(shape, generator=generator)
        draws.cut = torch.rand(shape[0], generator=generator)
    return draws


def example_draws(seeds: list[int], lengths: list[int], width: int, vocab_size: int, spans: bool = False) -> Draws:
    """Draws of each row from its own seed, over its own length: the same whatever the batch's padding.
    `spans` adds the draws of span masking, after the others: the rest stay as without."""
    out = Draws(torch.ones(len(seeds), width), torch.ones(len(seeds), width), torch.zeros(len(seeds), width).long())
    span = torch.ones(len(seeds), width + 1) if spans else None  # a row's span draws, then its cut draw
    for row, (seed, length) in enumerate(zip(seeds, lengths, strict=True)):
        g = torch.Generator().manual_seed(seed)
        out.word[row, :length] = torch.rand(length, generator=g)
        out.action[row, :length] = torch.rand(length, generator=g)
        out.random_ids[row, :length] = torch.randint(vocab_size, (length,), generator=g)
        if span is not None:
            span[row, : length + 1] = torch.rand(length + 1, generator=g)  # one call and one copy per row
    if span is not None:
        at_end = torch.tensor(lengths).unsqueeze(1)
        out.cut = span.gather(1, at_end).squeeze(1)
        out.span = span.scatter_(1, at_end, 1.0)[:, :width]
    return out


def span_length_probs(masking: MaskingConfig) -> torch.Tensor | None:
    """P(span of 1 word), P(2 words) … of `masking.span`, or None when span masking is off.

    geometric: p·(1 − p)^(n − 1) for n = 1 … span_max_length, renormalised (SpanBERT clips at 10 this way);
    ngram: span_ngram_probs (MacBERT's 0.4/0.3/0.2/0.1 for 1- to 4-grams).
    """
    if masking.span == "off":
        return None
    if masking.span == "geometric":
        n = torch.arange(masking.span_max_length, dtype=torch.float64)
        probs = masking.span_p * (1 - masking.span_p) ** n
    else:
        probs = torch.tensor(masking.span_ngram_probs, dtype=torch.float64)
    return probs / probs.sum()


def mask_tokens(
    input_ids: torch.Tensor,
    word_ids: torch.Tensor,
    draws: Draws,
    *,
    mask_id: int,
    rate: float = 0.15,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    max_predictions: int | None = None,
    span_probs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: pick words with probability `rate`; of their tokens, `mask_prob` become [MASK],
    `random_prob` a random token, the rest stay. Returns (corrupted ids, labels with -100 where not picked).
    With `span_probs`, runs of consecutive words are picked instead, until about `rate` of the tokens (see
    `span_ids` and `_pick_spans`).

    Args:
        input_ids: (B, T) token ids.
        word_ids: (B, T) word id per token, each in [0, T); -1 marks tokens never to mask (special, padding).
            A word's tokens are adjacent; a run of words between two -1 tokens is a segment.
        draws: the randomness, see `random_draws` and `example_draws` (with `spans=True` for span masking).
        max_predictions: at most this many picked tokens per row; words (spans) are kept in the order of their
            draws and one that would cross the limit is dropped whole.
        span_probs: (K,) P(span of 1 word) … P(K words), see `span_length_probs`; None: words one by one.
    """
    candidate = word_ids >= 0
    if span_probs is not None:
        if draws.span is None or draws.cut is None:
            raise ValueError("span masking needs the span draws: example_draws(..., spans=True)")
        picked = _pick_spans(span_ids(word_ids, draws.span, span_probs), draws, rate, max_predictions)
    else:
        safe_words = word_ids.clamp(min=0)
        # One draw per word slot, shared by all tokens of the word: each token is picked with probability
        # `rate`, and a word's tokens are picked together.
        token_draw = draws.word.gather(1, safe_words)  # (B, T)
        picked = candidate & (token_draw < rate)
        if max_predictions is not None:
            picked &= _within_budget(picked, token_draw, safe_words, max_predictions)
    labels = torch.where(picked, input_ids, IGNORE_INDEX)
    to_mask = picked & (draws.action < mask_prob)
    to_random = picked & (draws.action >= mask_prob) & (draws.action < mask_prob + random_prob)
    corrupted = torch.where(to_mask, mask_id, input_ids)
    corrupted = torch.where(to_random, draws.random_ids.to(input_ids.dtype), corrupted)
    return corrupted, labels


def _within_budget(picked: torch.Tensor, token_draw: torch.Tensor, words: torch.Tensor, budget: int) -> torch.Tensor:
    """Tokens of the words that fit in `budget` when words are taken in order of their draw."""
    order_key = torch.where(picked, token_draw, torch.inf)
    _, order = order_key.sort(dim=1, stable=True)  # a word's tokens are adjacent here: they share the draw
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(1, order.shape[1] + 1).expand_as(order))
    # A word fits when its last token in draw order still fits.
    last = torch.zeros_like(rank).scatter_reduce(1, words, torch.where(picked, rank, 0), reduce="amax")
    return last.gather(1, words) <= budget


def span_ids(word_ids: torch.Tensor, span_draw: torch.Tensor, span_probs: torch.Tensor) -> torch.Tensor:
    """Cut every segment's words into consecutive spans: the span id of each token, (B, T), -1 off the words.

    A segment's first word starts a span; a span starting at word j (the row's j-th word) is L_j words long,
    L_j drawn from `span_probs` by `span_draw[:, j]`, cut short where the segment ends; the next span starts
    right after it. So the spans tile each segment and their lengths (but the segment's last) follow
    `span_probs`. Span ids count 0, 1 … along the row; they, like the word indices, depend only on the row's
    own tokens, not on the batch's padding.

    Args:
        word_ids: (B, T) as in `mask_tokens`.
        span_draw: (B, T) uniform per word slot.
        span_probs: (K,) probabilities of spans of 1 … K words.
    """
    b, t = word_ids.shape
    rows = torch.arange(b).unsqueeze(1)
    candidate = word_ids >= 0
    before = torch.nn.functional.pad(word_ids[:, :-1], (1, 0), value=-1)  # the previous token's word id
    word_start = candidate & (word_ids != before)  # (B, T)
    segment_start = candidate & (before < 0)
    word = word_start.cumsum(1) - 1  # the row's word index of each token: 0, 1 … (B, T)
    n_words = word_start.sum(1, keepdim=True)  # (B, 1)
    # Word-level arrays, (B, W) with W = T + 1: slot t is a sink that no real word reaches.
    slot = torch.where(word_start, word, t)
    seg_start = torch.zeros(b, t + 1, dtype=torch.bool).scatter_(1, slot, segment_start)
    seg_start[:, t] = False
    j = torch.arange(t + 1).expand(b, t + 1)
    # The first segment start after word j (or the row's end), as a suffix minimum.
    start_or_end = torch.where(seg_start, j, n_words)
    after = start_or_end.flip(1).cummin(1).values.flip(1)
    next_segment = torch.nn.functional.pad(after[:, 1:], (0, 1), value=t)
    cdf = span_probs.cumsum(0).to(span_draw.dtype)
    length = (torch.searchsorted(cdf, span_draw.contiguous(), right=True) + 1).clamp(max=len(span_probs))  # (B, T)
    length = torch.nn.functional.pad(length, (0, 1), value=1)
    nxt = torch.minimum(j + length, next_segment)  # where the span starting at word j would end
    nxt = torch.where(j < n_words, nxt, t)  # past the row's words: into the sink
    # Span starts = the words reachable from a segment start along nxt. Pointer doubling: after step k,
    # `reach` holds the words within 2^(k+1) − 1 hops and `hop` jumps 2^(k+1) hops, so log2(T + 1) steps of
    # (B, W) gathers instead of a walk of T steps.
    reach = seg_start.to(torch.uint8)
    hop = nxt
    for _ in range(math.ceil(math.log2(t + 1))):
        reach = reach.scatter_reduce(1, hop, reach, reduce="amax")
        hop = hop.gather(1, hop)
    span_start = reach[:, :t].bool() & (j[:, :t] < n_words)
    span_of_word = span_start.cumsum(1) - 1  # (B, T) over word indices
    span_of_token = span_of_word[rows, word.clamp(min=0)]
    return torch.where(candidate, span_of_token, -1)


def _pick_spans(spans: torch.Tensor, draws: Draws, rate: float, max_predictions: int | None) -> torch.Tensor:
    """Whole spans in the order of their draws (`draws.word` at the span's id) until `rate` of the row's
    tokens: the span that crosses the budget rate·n is taken with probability (budget − tokens before it) /
    its tokens, so a row gets exactly rate·n tokens on average and always either the tokens before that span
    or those and it. `max_predictions` then keeps only the spans that end within it. Returns (B, T) picked."""
    candidate = spans >= 0
    safe = spans.clamp(min=0)
    n_spans = spans.amax(1, keepdim=True) + 1  # (B, 1)
    size = torch.zeros_like(spans).scatter_add_(1, safe, candidate.long())  # tokens per span id (B, T)
    slot = torch.arange(spans.shape[1]).expand_as(spans)
    _, order = torch.where(slot < n_spans, draws.word, torch.inf).sort(dim=1, stable=True)  # span ids by draw
    sorted_size = size.gather(1, order)
    through = sorted_size.cumsum(1)  # tokens up to and including each span, in draw order
    budget = rate * candidate.sum(1, keepdim=True)
    # (tokens before) + u·size < budget: true for every span that ends within the budget, for the crossing
    # one with probability (budget − before) / size, false after it.
    take = (through - sorted_size) + draws.cut.unsqueeze(1) * sorted_size < budget
    if max_predictions is not None:
        take &= through <= max_predictions
    taken = torch.zeros_like(take).scatter_(1, order, take)  # back to span ids
    return candidate & taken.gather(1, safe)


class PretrainingCollator:
    """Pads a list of examples to the batch's longest and masks them.

    Examples hold input_ids, token_type_ids, word_ids, mask_seed and (for NSP/SOP) next_sentence_label. Masks
    are drawn on the padded batch, then (with `pack_to`) the sequences are packed into full rows (`varlen`: one).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        masking: MaskingConfig,
        pack_to: int | None = None,
        varlen: bool = False,
    ):
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.masking = masking
        self.pack_to = pack_to  # pack the masked batch into rows of this many tokens (see packing.py)
        self.varlen = varlen  # or, when packing, all into one row with the sequences' boundaries
        self.span_probs = span_length_probs(masking)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rows = [e["input_ids"] for e in examples]
        length = padded_length(rows)
        input_ids = pad(rows, self.pad_id, length)
        words = pad([e["word_ids"] for e in examples], -1, length)
        if not self.masking.whole_word:
            positions = torch.arange(length).expand_as(words)
            words = torch.where(words >= 0, positions, -1)
        seeds, lengths = [e["mask_seed"] for e in examples], [len(r) for r in rows]
        draws = example_draws(seeds, lengths, length, self.vocab_size, spans=self.span_probs is not None)
        m = self.masking
        inputs, labels = mask_tokens(
            input_ids,
            words,
            draws,
            mask_id=self.mask_id,
            rate=m.rate,
            mask_prob=m.mask_prob,
            random_prob=m.random_prob,
            max_predictions=m.max_predictions_per_seq,
            span_probs=self.span_probs,
        )
        batch = {
            "input_ids": inputs,
            "token_type_ids": pad([e["token_type_ids"] for e in examples], 0, length),
            "attention_mask": pad([[1] * len(r) for r in rows], 0, length),
            "labels": labels,
        }
        if "next_sentence_label" in examples[0]:
            batch["next_sentence_label"] = torch.tensor([e["next_sentence_label"] for e in examples])
        return pack_batch(batch, self.pack_to, self.varlen, self.pad_id) if self.pack_to else batch
