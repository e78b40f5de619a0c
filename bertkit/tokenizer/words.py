"""Whole-word ids: which tokens of a sentence belong to the same word.

    ids, words = encode_with_words(tokenizer, ["北京是中国的首都。", "Tokenization matters."], segmenter("rjieba"))
    # words[0]: 北 京 → same id, 中 国 → same id …; words[1]: token ##ization shares its word's id

Chinese words come from a segmenter (rjieba: jieba's algorithm in Rust), run on the raw text and matched to
tokens through character offsets; English words are the segmenter's too, which keeps `##` pieces of a word
together. With segmenter 'none', words are BERT's pre-tokenizer words (each Chinese character alone).
Computed once at tokenize time, so whole-word masking needs no extra "ref" file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from bertkit.errors import BertkitError


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
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 3 or (len(parts) > 1 and not parts[1].isdigit()):
            raise BertkitError(f"{path}:{n}: expected 'word [frequency] [tag]'")
        words.append((parts[0], int(parts[1]) if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None))
    return words


def _piece_index(text: str, pieces: list[str]) -> list[int]:
    """For each character of `text`, the index of the segmenter piece that holds it."""
    index = []
    for i, piece in enumerate(pieces):
        index.extend([i] * len(piece))
    if len(index) != len(text):  # a segmenter that drops characters: fall back to one piece per char
        return list(range(len(text)))
    return index


def encode_with_words(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], cut: Callable[[str], list[str]] | None
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids (no special tokens) and per-token word ids numbered 0.. within each text; `cut` is a
    segmenter from `segmenter()`."""
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    all_ids, all_words = [], []
    for text, enc in zip(texts, encodings, strict=True):
        if cut is None:
            raw = enc.word_ids
        else:
            char_piece = _piece_index(text, cut(text))
            raw = [char_piece[start] for start, _ in enc.offsets]
        words, last, n = [], None, -1
        for w in raw:  # renumber 0, 1, 2 … in order of appearance
            if w != last:
                n += 1
                last = w
            words.append(n)
        all_ids.append(enc.ids)
        all_words.append(words)
    return all_ids, all_words
