"""Padding shared by every collator: the ignored-label value and batch widths rounded up to a multiple of 8.

batch["labels"] = pad(rows, IGNORE_INDEX, padded_length(rows))
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # label of positions that are not predicted (ignored by cross-entropy)


def round_up(n: int, multiple: int = 8) -> int:
    """`n` rounded up to a multiple of 8: tensor-core friendly shapes, and fewer distinct shapes."""
    return -(-n // multiple) * multiple


def padded_length(rows: list[list[int]], multiple: int = 8) -> int:
    """Longest row rounded up to a multiple of 8 (dynamic padding)."""
    return round_up(max(len(r) for r in rows), multiple)


def pad(rows: list[list], value, length: int, dtype=torch.long) -> torch.Tensor:
    """Rows of different lengths as one (len(rows), length) tensor filled with `value` past each row."""
    out = torch.full((len(rows), length), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=dtype)
    return out
