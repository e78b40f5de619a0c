"""A released vocabulary extended with domain words, and the model's embeddings grown to match.

    new = add_words(tokenizer, ["阿司匹林", "pembrolizumab"])           # bertkit tokenize: tokenizer.add_words…
    extend_embeddings(model, old_tokenizer, new)                          # bertkit pretrain: model.init_from

A released Chinese BERT reads 阿司匹林 as four characters, and an English one splits a drug name into many
pieces: continued pretraining on medical or legal text then never learns the domain's words as units. The new
words become tokens after the old ones (every old id keeps its meaning) — added tokens, which the tokenizer
matches before BERT's pre-tokenizer splits Chinese text into characters — and each new embedding row (and
MLM decoder bias) starts as the mean of the rows of the pieces the old vocabulary read the word as, so the model
starts from what it knew (as in Chinese-LLaMA's vocabulary extension; the pieces' mean, as transformers' own
resize would need to be told).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterable

import torch
from tokenizers import AddedToken
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bertkit.errors import BertkitError


def splits(tokenizer: PreTrainedTokenizerBase, word: str) -> bool:
    """Whether the vocabulary reads `word` as more than one token or as [UNK]."""
    pieces = tokenizer.tokenize(word)
    return len(pieces) > 1 or tokenizer.unk_token in pieces


def frequent_split_words(
    tokenizer: PreTrainedTokenizerBase,
    sentences: Iterable[str],
    cut: Callable[[str], list[str]],
    n: int,
    min_count: int = 2,
) -> list[str]:
    """The corpus' `n` most frequent segmenter words (2+ characters, letters or CJK) that the vocabulary splits,
    seen at least `min_count` times; ties in first-seen order."""
    counts = Counter(w.strip() for s in sentences for w in cut(s))
    words = [
        w
        for w, c in counts.most_common()
        if c >= min_count and len(w) > 1 and all(ch.isalnum() for ch in w) and not w.isdigit()
    ]
    return [w for w in words if splits(tokenizer, w)][:n]


def add_words(tokenizer: PreTrainedTokenizerBase, words: list[str]) -> PreTrainedTokenizerBase:
    """A copy of `tokenizer` with `words` (those it splits) as tokens after its own. ASCII words match whole
    words only (not inside a longer word), after the tokenizer's normalisation (lower-casing); other words
    (Chinese) wherever they occur in the raw text, as a segmenter would: BERT's normaliser spaces out CJK
    characters, so a normalised Chinese token could never match."""
    new = copy.deepcopy(tokenizer)
    fresh = [w.strip() for w in dict.fromkeys(words) if w.strip() and splits(tokenizer, w.strip())]
    new.add_tokens([AddedToken(w, single_word=w.isascii(), normalized=w.isascii()) for w in fresh])
    return new


def extends(old: PreTrainedTokenizerBase, new: PreTrainedTokenizerBase) -> bool:
    """Whether `new` is `old` with tokens added after it (every old token keeps its id)."""
    old_vocab, new_vocab = old.get_vocab(), new.get_vocab()
    return len(new_vocab) > len(old_vocab) and all(new_vocab.get(t) == i for t, i in old_vocab.items())


@torch.no_grad()
def extend_embeddings(model: PreTrainedModel, old: PreTrainedTokenizerBase, new: PreTrainedTokenizerBase) -> int:
    """Grow `model`'s word embeddings (and its tied MLM decoder and bias) to `new`'s size; each new token's row
    is the mean of the rows of the pieces `old` reads it as. Returns how many rows were added."""
    if not extends(old, new):
        raise BertkitError("the data's tokenizer is not the model's vocabulary with tokens added after it")
    added = {i: t for t, i in new.get_vocab().items() if i >= len(old)}
    first = model.get_input_embeddings().num_embeddings
    model.resize_token_embeddings(max(first, len(new)), mean_resizing=False)
    embeddings = model.get_input_embeddings().weight
    bias = getattr(getattr(getattr(model, "cls", None), "predictions", None), "bias", None)
    for i, token in added.items():
        pieces = old.convert_tokens_to_ids(old.tokenize(token)) or [old.unk_token_id]
        embeddings[i] = embeddings[pieces].mean(0)
        if bias is not None:
            bias[i] = bias[pieces].mean()
    return len(added)
