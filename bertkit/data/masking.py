"""Masked-LM corruption as a pure tensor function, and the pretraining collator that pads and masks.

    draws = example_draws(seeds=[7, 8], lengths=[12, 9], width=16, vocab_size=8000)
    inputs, labels = mask_tokens(input_ids, word_ids, draws, mask_id=4, rate=0.15)
    collate = PretrainingCollator(tokenizer, cfg.masking)   # DataLoader(KeyedDataset(...), collate_fn=collate)

Masking is drawn anew for every epoch (dynamic masking, as RoBERTa) from each example's own seed (see
bertkit/data/loader.py), so it does not depend on how examples are batched. Token masking is whole-word masking
where every token is its own word, so one function serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from bertkit.config import MaskingConfig
from bertkit.data.packing import pack_batch
from bertkit.data.padding import IGNORE_INDEX, pad, padded_length


@dataclass
class Draws:
    """The randomness of one batch's masking, each (B, T)."""

    word: torch.Tensor  # uniform per word slot: a word is picked when its draw < rate
    action: torch.Tensor  # uniform per token: [MASK] / random token / unchanged
    random_ids: torch.Tensor  # replacement token per position


def random_draws(shape: tuple[int, int], vocab_size: int, generator: torch.Generator | None = None) -> Draws:
    return Draws(
        torch.rand(shape, generator=generator),
        torch.rand(shape, generator=generator),
        torch.randint(vocab_size, shape, generator=generator),
    )


def example_draws(seeds: list[int], lengths: list[int], width: int, vocab_size: int) -> Draws:
    """Draws of each row from its own seed, over its own length: the same whatever the batch's padding."""
    out = Draws(torch.ones(len(seeds), width), torch.ones(len(seeds), width), torch.zeros(len(seeds), width).long())
    for row, (seed, length) in enumerate(zip(seeds, lengths, strict=True)):
        g = torch.Generator().manual_seed(seed)
        out.word[row, :length] = torch.rand(length, generator=g)
        out.action[row, :length] = torch.rand(length, generator=g)
        out.random_ids[row, :length] = torch.randint(vocab_size, (length,), generator=g)
    return out


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: pick words with probability `rate`; of their tokens, `mask_prob` become [MASK],
    `random_prob` a random token, the rest stay. Returns (corrupted ids, labels with -100 where not picked).

    Args:
        input_ids: (B, T) token ids.
        word_ids: (B, T) word id per token, each in [0, T); -1 marks tokens never to mask (special, padding).
        draws: the randomness, see `random_draws` and `example_draws`.
        max_predictions: at most this many picked tokens per row; words are kept in the order of their draws
            and a word that would cross the limit is dropped whole.
    """
    candidate = word_ids >= 0
    safe_words = word_ids.clamp(min=0)
    # One draw per word slot, shared by all tokens of the word: each token is picked with probability `rate`,
    # and a word's tokens are picked together.
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


class PretrainingCollator:
    """Pads a list of examples to the batch's longest and masks them.

    Examples hold input_ids, token_type_ids, word_ids, mask_seed and (for NSP/SOP) next_sentence_label. Masks
    are drawn on the padded batch, then (with `pack_to`) the sequences are packed into full rows.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, masking: MaskingConfig, pack_to: int | None = None):
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.masking = masking
        self.pack_to = pack_to  # pack the masked batch into rows of this many tokens (see packing.py)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rows = [e["input_ids"] for e in examples]
        length = padded_length(rows)
        input_ids = pad(rows, self.pad_id, length)
        words = pad([e["word_ids"] for e in examples], -1, length)
        if not self.masking.whole_word:
            positions = torch.arange(length).expand_as(words)
            words = torch.where(words >= 0, positions, -1)
        draws = example_draws([e["mask_seed"] for e in examples], [len(r) for r in rows], length, self.vocab_size)
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
        )
        batch = {
            "input_ids": inputs,
            "token_type_ids": pad([e["token_type_ids"] for e in examples], 0, length),
            "attention_mask": pad([[1] * len(r) for r in rows], 0, length),
            "labels": labels,
        }
        if "next_sentence_label" in examples[0]:
            batch["next_sentence_label"] = torch.tensor([e["next_sentence_label"] for e in examples])
        return pack_batch(batch, self.pack_to) if self.pack_to else batch
