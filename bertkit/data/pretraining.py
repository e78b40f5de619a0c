"""Pretraining examples: sentence pairs for NSP (google-research/bert) or SOP (ALBERT), or packed MLM-only rows.

    docs = [[Sentence(ids, words), …], …]          # tokenized documents
    for ex in BUILDERS["nsp"](docs, max_seq_length=128, short_seq_prob=0.1, rng=random.Random(0), special=special):
        ex["input_ids"]            # [CLS] A [SEP] B [SEP]
        ex["token_type_ids"]       # 0 over [CLS] A [SEP], 1 over B [SEP]
        ex["next_sentence_label"]  # 0: B follows A in the document, 1: B is random (transformers' convention)
        ex["word_ids"]             # whole-word id per token, 0.. in order; -1 on special tokens

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
        target = max_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_tokens)
        chunk: list[Sentence] = []
        length = 0
        for i, sentence in enumerate(document):
            chunk.append(sentence)
            length += len(sentence.ids)
            if i < len(document) - 1 and length < target:
                continue
            if len(chunk) >= 2:
                a_end = rng.randint(1, len(chunk) - 1)
                a, a_words = _concat(chunk[:a_end])
                b, b_words = _concat(chunk[a_end:])
            elif len(sentence.ids) >= 2:
                # No second sentence to order against: the order of a sentence's two halves is the signal.
                cut = rng.randint(1, len(sentence.ids) - 1)
                a, a_words = sentence.ids[:cut], sentence.words[:cut]
                b, b_words = sentence.ids[cut:], sentence.words[cut:]
            else:
                chunk, length = [], 0
                continue
            is_swapped = rng.random() < 0.5
            if is_swapped:
                a, a_words, b, b_words = b, b_words, a, a_words
            truncate_pair(a, a_words, b, b_words, max_tokens, rng)
            yield make_pair(a, a_words, b, b_words, is_swapped, special)
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
    words: list[int] = []
    offset = 0  # word ids stay distinct across documents, which may share a row
    for document in documents:
        doc_ids, doc_words = _concat(document)
        if not doc_ids:
            continue
        if offset:  # a document came before: RoBERTa's document separator
            ids.append(special.sep)
            words.append(-1)
        ids.extend(doc_ids)
        words.extend([w + offset for w in doc_words])
        offset += max(doc_words) + 1
        full = len(ids) - len(ids) % row_length
        for start in range(0, full, row_length):
            yield _packed_row(ids[start : start + row_length], words[start : start + row_length], special)
        del ids[:full], words[:full]
    if ids:
        yield _packed_row(ids, words, special)


def _packed_row(ids: list[int], words: list[int], special: Special) -> dict:
    return {
        "input_ids": [special.cls, *ids, special.sep],
        "token_type_ids": [0] * (len(ids) + 2),
        "word_ids": _renumber([-1, *words, -1]),
    }


BUILDERS: dict[str, Callable[..., Iterator[dict]]] = {
    "nsp": build_nsp_examples,
    "sop": build_sop_examples,
    "packed": build_packed_examples,
}
LABELLED = {"nsp", "sop"}  # objectives whose examples carry next_sentence_label
