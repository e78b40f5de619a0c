"""Masked-LM corruption as a plain tensor function, and the pretraining collator that pads and masks.

    inputs, labels = mask_tokens(input_ids, word_ids, vocab_size=8000, mask_id=4, rate=0.15)
    collate = PretrainingCollator(tokenizer, cfg.masking)   # DataLoader(collate_fn=collate)

Masking is drawn anew for every batch (dynamic masking, as RoBERTa). Token masking is whole-word masking
where every token is its own word, so one function serves both.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from bertkit.config import MaskingConfig

IGNORE_INDEX = -100  # label of positions that are not predicted (ignored by cross-entropy)


def mask_tokens(
    input_ids: torch.Tensor,
    word_ids: torch.Tensor,
    *,
    vocab_size: int,
    mask_id: int,
    rate: float = 0.15,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: pick words with probability `rate`; of their tokens, `mask_prob` become [MASK],
    `random_prob` a random token, the rest stay. Returns (corrupted ids, labels with -100 where not picked).

    Args:
        input_ids: (B, T) token ids.
        word_ids: (B, T) word id per token, each in [0, T); -1 marks tokens never to mask (special, padding).
    """
    candidate = word_ids >= 0
    # One uniform draw per word slot, shared by all tokens of the word: each token is picked with
    # probability `rate`, and a word's tokens are picked together.
    word_draw = torch.rand(word_ids.shape, generator=generator)
    picked = candidate & (word_draw.gather(1, word_ids.clamp(min=0)) < rate)
    labels = torch.where(picked, input_ids, IGNORE_INDEX)

    action = torch.rand(input_ids.shape, generator=generator)
    to_mask = picked & (action < mask_prob)
    to_random = picked & (action >= mask_prob) & (action < mask_prob + random_prob)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, dtype=input_ids.dtype)
    corrupted = torch.where(to_mask, mask_id, input_ids)
    corrupted = torch.where(to_random, random_ids, corrupted)
    return corrupted, labels


def pad(rows: list[list[int]], value: int, length: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def padded_length(rows: list[list[int]], multiple: int = 8) -> int:
    """Longest row rounded up to a multiple of 8 (dynamic padding; tensor-core friendly shapes)."""
    longest = max(len(r) for r in rows)
    return -(-longest // multiple) * multiple


class PretrainingCollator:
    """Pads a list of examples to the batch's longest and applies dynamic masking.

    Examples hold input_ids, token_type_ids, word_ids and (for NSP) next_sentence_label.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, masking: MaskingConfig, generator: torch.Generator | None = None
    ):
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.masking = masking
        self.generator = generator  # fixed for evaluation, so every run scores the same masks

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        length = padded_length([e["input_ids"] for e in examples])
        input_ids = pad([e["input_ids"] for e in examples], self.pad_id, length)
        words = pad([e["word_ids"] for e in examples], -1, length)
        if not self.masking.whole_word:
            positions = torch.arange(length).expand_as(words)
            words = torch.where(words >= 0, positions, -1)
        inputs, labels = mask_tokens(
            input_ids,
            words,
            vocab_size=self.vocab_size,
            mask_id=self.mask_id,
            rate=self.masking.rate,
            mask_prob=self.masking.mask_prob,
            random_prob=self.masking.random_prob,
            generator=self.generator,
        )
        batch = {
            "input_ids": inputs,
            "token_type_ids": pad([e["token_type_ids"] for e in examples], 0, length),
            "attention_mask": pad([[1] * len(e["input_ids"]) for e in examples], 0, length),
            "labels": labels,
        }
        if "next_sentence_label" in examples[0]:
            batch["next_sentence_label"] = torch.tensor([e["next_sentence_label"] for e in examples])
        return batch
