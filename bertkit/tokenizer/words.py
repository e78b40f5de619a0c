"""Whole words: which tokens of a sentence belong to the same word, as word-start flags.

    ids, starts = encode_with_words(tokenizer, ["北京是中国的首都。", "Tokenization matters."], segmenter("rjieba"))
    # starts[0]: 北 1, 京 0, 是 1, 中 1, 国 0 …; starts[1]: token 1, ##ization 0, matters 1, . 1

Chinese words come from a segmenter (rjieba: jieba's algorithm in Rust), run on the raw text and matched to
tokens through character offsets; English words are the segmenter's too, which keeps `##` pieces of a word
together. With segmenter 'none', words are BERT's pre-tokenizer words (each Chinese character alone).
Computed once at tokenize time, so whole-word masking needs no extra "ref" file.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from bertkit.errors import BertkitError
from bertkit.textfile import split_lines


def segmenter(name: str, user_dict: Path | None = None) -> Callable[[str], list[str]] | None:
    """A function text → list of pieces covering the text exactly, or None for 'none'. `user_dict` is a jieba
    dictionary file (one `word [freq] [tag]` per line) whose words the segmenter keeps whole."""
    if name == "none":
        return None
    try:
        if name == "rjieba":
            import rjieba

            if user_dict:
                for word, freq, tag in _user_words(user_dict):
                    rjieba.add_word(word, freq, tag)
            return rjieba.cut
        if name == "jieba":
            import jieba

            jieba.setLogLevel(60)
            if user_dict:
                _user_words(user_dict)  # the same checks and errors as for rjieba
                jieba.load_userdict(str(user_dict))
            return lambda text: list(jieba.cut(text))
    except ImportError:
        raise BertkitError(f"tokenizer.segmenter={name} needs the '{name}' package: pip install {name}") from None
    raise BertkitError(f"unknown tokenizer.segmenter '{name}'; use rjieba, jieba or none")


def _user_words(path: Path) -> list[tuple[str, int | None, str | None]]:
    path = Path(path)
    if not path.is_file():
        raise BertkitError(f"{path}: user dictionary not found; check tokenizer.user_dict")
    words = []
    for n, line in enumerate(split_lines(path.read_text(encoding="utf-8")), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 3 or (len(parts) > 1 and not parts[1].isdigit()):
            raise BertkitError(f"{path}:{n}: expected 'word [frequency] [tag]'")
        words.append((parts[0], int(parts[1]) if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None))
    return words


def _pieces(text: str, cut: Callable[[str], list[str]]) -> list[str]:
    pieces = cut(text)
    # A segmenter that drops or changes characters cannot be matched through offsets: one piece per character.
    return pieces if sum(map(len, pieces)) == len(text) else list(text)


def encode_with_words(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], cut: Callable[[str], list[str]] | None
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids (no special tokens) and per-token word-start flags (1 begins a word, 0 continues it) of each
    text; `cut` is a segmenter from `segmenter()`. Vectorised over the batch: no Python work per token."""
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    ids = [e.ids for e in encodings]
    counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    n = int(counts.sum())
    if cut is None:
        # Pre-tokenizer words (each Chinese character alone); offset per text so that texts never share a word.
        word = np.fromiter(chain.from_iterable(e.word_ids for e in encodings), dtype=np.int64, count=n)
        word += np.repeat(np.cumsum(counts) - counts, counts)
    else:
        # Token start offsets and segmenter piece ends, both in one coordinate system over all texts.
        text_start = np.cumsum([len(t) for t in texts]) - np.array([len(t) for t in texts])
        offsets = np.fromiter(
            chain.from_iterable(chain.from_iterable(e.offsets for e in encodings)), dtype=np.int64, count=2 * n
        )
        token_start = offsets[::2] + np.repeat(text_start, counts)
        pieces = [_pieces(t, cut) for t in texts]
        piece_end = np.cumsum(np.fromiter(map(len, chain.from_iterable(pieces)), dtype=np.int64))
        word = np.searchsorted(piece_end, token_start, side="right")
    begins = np.ones(n, dtype=np.int8)
    begins[1:] = word[1:] != word[:-1]
    flat = begins.tolist()
    bounds = np.cumsum(counts).tolist()
    starts = [flat[b - c : b] for b, c in zip(bounds, counts.tolist(), strict=True)]
    return ids, starts
