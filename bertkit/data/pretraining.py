"""Pretraining examples: sentence pairs for NSP (google-research/bert) or SOP (ALBERT), or packed MLM-only rows.

    docs = [[Sentence(ids, starts), …], …]          # tokenized documents
    for ex in BUILDERS["nsp"](docs, max_seq_length=128, short_seq_prob=0.1, rng=random.Random(0), special=special):
        ex["input_ids"]            # [CLS] A [SEP] B [SEP]
        ex["token_type_ids"]       # 0 over [CLS] A [SEP], 1 over B [SEP]
        ex["next_sentence_label"]  # 0: B follows A in the document, 1: B is random (transformers' convention)
        ex["word_starts"]          # 1: token begins a word, 0: continues it, -1: [CLS]/[SEP]
    word_ids_from_starts(flags, lengths)  # → whole-word ids 0.. per row, for many rows at once

- nsp: A and B are filled with whole sentences up to a target length; B is, half of the time, a span from a
  different document (the sentences not used for A are then put back), and the longer side is truncated at a
  random end until the pair fits.
- sop: A and B as for nsp, but B always follows A in the same document; half of the time they are swapped
  (B first), and next_sentence_label says so (1: swapped), so the same seq_relationship head trains on it.
- packed: [CLS] row [SEP] rows cut from the token stream of the whole corpus (documents separated by one [SEP]),
  every row but the last full; no pair and no next_sentence_label: MLM only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

SPECIAL_WORD = -1  # word-start flag of [CLS]/[SEP]: never part of a word, never masked


@dataclass(frozen=True)
class Sentence:
    ids: list[int]
    starts: list[int]  # per token: 1 if it begins a word, 0 if it continues the word before it


@dataclass
class Special:
    cls: int
    sep: int


def _concat(sentences: list[Sentence]) -> tuple[list[int], list[int]]:
    """Token ids and word-start flags of consecutive sentences."""
    ids: list[int] = []
    starts: list[int] = []
    for s in sentences:
        ids.extend(s.ids)
        starts.extend(s.starts)
    return ids, starts


def truncate_pair(a: list, a_starts: list, b: list, b_starts: list, max_tokens: int, rng: random.Random) -> None:
    """Trim the longer side, one token at a time from a random end, until len(a) + len(b) <= max_tokens (in
    place). The trims are counted first and applied as slices, so a huge segment costs no quadratic deletes."""
    trim = {"a": [0, 0], "b": [0, 0]}  # side → [from front, from back]
    la, lb = len(a), len(b)
    while la + lb > max_tokens:
        side = "a" if la > lb else "b"
        trim[side][0 if rng.random() < 0.5 else 1] += 1
        la, lb = (la - 1, lb) if side == "a" else (la, lb - 1)
    for seq, flags, (front, back) in ((a, a_starts, trim["a"]), (b, b_starts, trim["b"])):
        for lst in (seq, flags):
            del lst[len(lst) - back :]
            del lst[:front]


def make_pair(
    a: list[int], a_starts: list[int], b: list[int], b_starts: list[int], is_random_next: bool, special: Special
) -> dict:
    return {
        "input_ids": [special.cls, *a, special.sep, *b, special.sep],
        "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
        "next_sentence_label": int(is_random_next),
        "word_starts": [SPECIAL_WORD, *a_starts, SPECIAL_WORD, *b_starts, SPECIAL_WORD],
    }


def word_ids_from_starts(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Whole-word ids 0, 1, 2 … within each row from word-start flags, for many rows at once.

    Args:
        starts: (N,) the rows' flags concatenated: 1 begins a word, 0 continues one, -1 special token.
        lengths: (R,) tokens per row.
    Returns:
        (N,) word ids, -1 on special tokens. A continuation right after a special token (a segment truncated
        in mid-word) begins a word of its own.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if starts.size == 0:
        return starts
    row_first = np.cumsum(lengths) - lengths
    after_special = np.empty(starts.size, dtype=bool)
    after_special[0] = True
    after_special[1:] = starts[:-1] == SPECIAL_WORD
    after_special[row_first] = True
    is_word = starts != SPECIAL_WORD
    begins = is_word & ((starts == 1) | after_special)
    count = np.cumsum(begins)
    before_row = count[row_first] - begins[row_first]  # words of earlier rows
    ids = count - 1 - np.repeat(before_row, lengths)
    ids[~is_word] = -1
    return ids


def _target_length(max_tokens: int, short_seq_prob: float, rng: random.Random) -> int:
    """Tokens a pair is filled to: usually all, sometimes (short_seq_prob) a random shorter length, so the
    model also sees short inputs."""
    return rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens


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
        target = _target_length(max_tokens, short_seq_prob, rng)
        chunk: list[Sentence] = []
        length = 0
        i = 0
        while i < len(document):
            chunk.append(document[i])
            length += len(document[i].ids)
            if i == len(document) - 1 or length >= target:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a, a_starts = _concat(chunk[:a_end])
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
                    b, b_starts = _concat(picked)
                    i -= len(chunk) - a_end  # the unused sentences are put back
                else:
                    is_random_next = False
                    b, b_starts = _concat(chunk[a_end:])
                truncate_pair(a, a_starts, b, b_starts, max_tokens, rng)
                if a and b:
                    yield make_pair(a, a_starts, b, b_starts, is_random_next, special)
                chunk, length = [], 0
            i += 1


def build_sop_examples(
    documents: list[list[Sentence]],
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    special: Special,
) -> Iterator[dict]:
    """All sentence-order examples of one pass over `documents`; next_sentence_label 1 = the two are swapped."""
    max_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
    for document in documents:
        target = _target_length(max_tokens, short_seq_prob, rng)
        chunk: list[Sentence] = []
        length = 0
        for i, sentence in enumerate(document):
            chunk.append(sentence)
            length += len(sentence.ids)
            if i < len(document) - 1 and length < target:
                continue
            if len(chunk) >= 2:
                a_end = rng.randint(1, len(chunk) - 1)
                a, a_starts = _concat(chunk[:a_end])
                b, b_starts = _concat(chunk[a_end:])
            elif len(sentence.ids) >= 2:
                # No second sentence to order against: the order of a sentence's two halves is the signal.
                cut = rng.randint(1, len(sentence.ids) - 1)
                a, a_starts = sentence.ids[:cut], sentence.starts[:cut]
                b, b_starts = sentence.ids[cut:], sentence.starts[cut:]
            else:
                chunk, length = [], 0
                continue
            is_swapped = rng.random() < 0.5
            if is_swapped:
                a, a_starts, b, b_starts = b, b_starts, a, a_starts
            truncate_pair(a, a_starts, b, b_starts, max_tokens, rng)
            yield make_pair(a, a_starts, b, b_starts, is_swapped, special)
            chunk, length = [], 0


def build_packed_examples(
    documents: list[list[Sentence]],
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    special: Special,
) -> Iterator[dict]:
    """[CLS] row [SEP] over the corpus' token stream, one [SEP] between documents; every row but the last full.

    Sentences and words run on across rows, so no position is padding. `short_seq_prob` and `rng` are unused:
    they are taken so that every builder has the same signature.
    """
    row_length = max_seq_length - 2  # [CLS], [SEP]
    ids: list[int] = []  # the stream not yet cut into rows
    starts: list[int] = []
    first = True
    for document in documents:
        doc_ids, doc_starts = _concat(document)
        if not doc_ids:
            continue
        if not first:  # RoBERTa's document separator
            ids.append(special.sep)
            starts.append(SPECIAL_WORD)
        first = False
        ids.extend(doc_ids)
        starts.extend(doc_starts)
        full = len(ids) - len(ids) % row_length
        for start in range(0, full, row_length):
            yield _packed_row(ids[start : start + row_length], starts[start : start + row_length], special)
        del ids[:full], starts[:full]
    if ids:
        yield _packed_row(ids, starts, special)


def _packed_row(ids: list[int], starts: list[int], special: Special) -> dict:
    return {
        "input_ids": [special.cls, *ids, special.sep],
        "token_type_ids": [0] * (len(ids) + 2),
        "word_starts": [SPECIAL_WORD, *starts, SPECIAL_WORD],
    }


BUILDERS: dict[str, Callable[..., Iterator[dict]]] = {
    "nsp": build_nsp_examples,
    "sop": build_sop_examples,
    "packed": build_packed_examples,
}
LABELLED = {"nsp", "sop"}  # objectives whose examples carry next_sentence_label
