"""Packing a padded batch of sequences into full rows, so that no compute is spent on padding.

    packed = pack_batch(batch, capacity=128)   # batch from PretrainingCollator: (B, L) tensors
    packed = pack_batch(batch, varlen=True)    # or: all of them in one row, with their boundaries
    objective(**packed)                         # several sequences per row, each seeing only itself

Each row holds whole sequences end to end; positions restart at 0 for every sequence and its token types are
kept, so every sequence is computed exactly as alone — the loss equals the unpacked one up to float rounding.
The NSP/SOP head reads each sequence's [CLS] at `cls_positions`. How attention keeps the sequences apart:
- rows of `capacity` tokens with a block-diagonal 4D boolean mask (a token attends to its own sequence's
  tokens): any attention implementation computes it, at the cost of (rows × capacity²) scores, and on a GPU the
  mask keeps SDPA off its flash kernel;
- `varlen`: every sequence in one row and `cu_seq_lens` (int32 boundaries over the row, as flash-attention's
  varlen functions take them) instead of a mask: only each sequence's own n² scores, on the GPU's flash /
  memory-efficient kernels (bertkit/modeling/attention.py).
"""

from __future__ import annotations

import torch

from bertkit.data.padding import IGNORE_INDEX, round_up


def assign_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: sequence indices per row, every row's total length <= capacity."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return [sorted(r) for r in rows]  # sequences in input order within a row


def pack_batch(
    batch: dict[str, torch.Tensor], capacity: int = 0, varlen: bool = False, pad_id: int = 0
) -> dict[str, torch.Tensor]:
    """Pack the sequences of a padded batch (input_ids, token_type_ids, attention_mask, labels and optionally
    next_sentence_label) into rows of `capacity` tokens, or with `varlen` all into one (rounded up to a
    multiple of 8); the rows' padding holds `pad_id`, as the padded batch's does (ELECTRA finds real tokens by it)."""
    lengths = batch["attention_mask"].sum(1).tolist()
    rows = [list(range(len(lengths)))] if varlen else assign_rows(lengths, capacity)
    width = round_up(max(sum(lengths[i] for i in row) for row in rows))
    n_rows = len(rows)
    # Flat gather indices: where each packed position comes from in the padded batch.
    src_seq, src_pos, dst_row, dst_col, segment, position = [], [], [], [], [], []
    cls_positions = []
    for r, row in enumerate(rows):
        col = 0
        for k, i in enumerate(row):
            n = lengths[i]
            src_seq += [i] * n
            src_pos += range(n)
            dst_row += [r] * n
            dst_col += range(col, col + n)
            segment += [k] * n
            position += range(n)
            cls_positions.append((r, col, i))
            col += n
    src = (torch.tensor(src_seq), torch.tensor(src_pos))
    dst = (torch.tensor(dst_row), torch.tensor(dst_col))
    out = {}
    for name, fill in (("input_ids", pad_id), ("token_type_ids", 0), ("labels", IGNORE_INDEX)):
        packed = torch.full((n_rows, width), fill, dtype=batch[name].dtype)
        packed[dst] = batch[name][src]
        out[name] = packed
    seg = torch.full((n_rows, width), -1, dtype=torch.long)  # padding: a block of its own (never all-masked)
    seg[dst] = torch.tensor(segment)
    pos = torch.zeros((n_rows, width), dtype=torch.long)
    pos[dst] = torch.tensor(position)
    out["position_ids"] = pos
    if varlen:
        # The padding at the row's end is a sequence of its own: every token belongs to one.
        ends = [c for _, c, _ in cls_positions[1:]] + [col] + ([width] if width > col else [])
        out["cu_seq_lens"] = torch.tensor([0, *ends], dtype=torch.int32)
        out["max_length"] = max(lengths + [width - col])
    else:
        out["attention_mask"] = (seg[:, :, None] == seg[:, None, :])[:, None]  # (R, 1, T, T) block-diagonal
    # The pair head reads sequences in their input order, so labels keep theirs.
    order = sorted(cls_positions, key=lambda t: t[2])
    out["cls_positions"] = torch.tensor([(r, c) for r, c, _ in order])
    if "next_sentence_label" in batch:
        out["next_sentence_label"] = batch["next_sentence_label"]
    # Real tokens, for throughput: a 4D mask (or none, varlen) no longer says; the objective reports them.
    out["num_tokens"] = torch.tensor(sum(lengths))
    return out
