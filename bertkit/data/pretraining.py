"""Sentence-pair pretraining examples (NSP), as google-research/bert's create_pretraining_data.py makes them.

    docs = [[Sentence(ids, words), …], …]          # tokenized documents
    for ex in build_nsp_examples(docs, max_seq_length=128, short_seq_prob=0.1, rng=random.Random(0)):
        ex["input_ids"]            # [CLS] A [SEP] B [SEP]
        ex["token_type_ids"]       # 0 over [CLS] A [SEP], 1 over B [SEP]
        ex["next_sentence_label"]  # 0: B follows A in the document, 1: B is random (transformers' convention)
        ex["word_ids"]             # whole-word id per token, 0.. in order; -1 on special tokens

A and B are filled with whole sentences up to a target length; B is, half of the time, a span from a
different document (the sentences not used for A are then put back), and the longer side is truncated at a
random end until the pair fits.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Sentence:
    ids: list[int]
    words: list[int]  # word id per token, 0.. within the sentence


@dataclass
class Special:
    cls: int
    sep: int


def _concat(sentences: list[Sentence]) -> tuple[list[int], list[int]]:
    """Token ids and word ids, word ids kept distinct across sentences."""
    ids, words, offset = [], [], 0
    for s in sentences:
        ids.extend(s.ids)
        words.extend(w + offset for w in s.words)
        offset += (max(s.words) + 1) if s.words else 0
    return ids, words


def truncate_pair(a: list, a_words: list, b: list, b_words: list, max_tokens: int, rng: random.Random) -> None:
    """Trim the longer side, from a random end, until len(a) + len(b) <= max_tokens (in place)."""
    while len(a) + len(b) > max_tokens:
        ids, words = (a, a_words) if len(a) > len(b) else (b, b_words)
        if rng.random() < 0.5:
            del ids[0], words[0]
        else:
            ids.pop()
            words.pop()


def _renumber(words: list[int]) -> list[int]:
    """Word ids 0, 1, 2 … in order of appearance; -1 stays -1."""
    seen: dict[int, int] = {}
    return [-1 if w < 0 else seen.setdefault(w, len(seen)) for w in words]


def make_pair(
    a: list[int], a_words: list[int], b: list[int], b_words: list[int], is_random_next: bool, special: Special
) -> dict:
    # B's words are offset past A's so that no word spans the [SEP].
    shift = max(a_words, default=-1) + 1
    return {
        "input_ids": [special.cls, *a, special.sep, *b, special.sep],
        "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
        "next_sentence_label": int(is_random_next),
        "word_ids": _renumber([-1, *a_words, -1, *(w + shift for w in b_words), -1]),
    }


def build_nsp_examples(
    documents: list[list[Sentence]],
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    special: Special,
) -> Iterator[dict]:
    """All NSP examples of one pass over `documents` (each a list of tokenized sentences)."""
    max_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
    for doc_index, document in enumerate(documents):
        target = max_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_tokens)
        chunk: list[Sentence] = []
        length = 0
        i = 0
        while i < len(document):
            chunk.append(document[i])
            length += len(document[i].ids)
            if i == len(document) - 1 or length >= target:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a, a_words = _concat(chunk[:a_end])
                can_draw_random = len(documents) > 1
                if can_draw_random and (len(chunk) == 1 or rng.random() < 0.5):
                    is_random_next = True
                    other = rng.randrange(len(documents) - 1)
                    other += other >= doc_index  # any document but this one
                    random_doc = documents[other]
                    start = rng.randrange(len(random_doc))
                    picked, b_length = [], 0
                    for sentence in random_doc[start:]:
                        picked.append(sentence)
                        b_length += len(sentence.ids)
                        if b_length >= target - len(a):
                            break
                    b, b_words = _concat(picked)
                    i -= len(chunk) - a_end  # the unused sentences are put back
                else:
                    is_random_next = False
                    b, b_words = _concat(chunk[a_end:])
                truncate_pair(a, a_words, b, b_words, max_tokens, rng)
                if a and b:
                    yield make_pair(a, a_words, b, b_words, is_random_next, special)
                chunk, length = [], 0
            i += 1
