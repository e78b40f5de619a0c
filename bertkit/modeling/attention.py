"""The attention implementation bertkit trains with ("bertkit" in transformers' AttentionInterface).

    use_fast_dropout(model)     # bertkit/modeling/dropout.py switches a model's SDPA attention to this one
    model.bert(..., attention_mask=None, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=m, max_length_k=m)

Two things stock SDPA lacks:
- **cheap dropout on CPU**: with attention dropout on a CPU, SDPA's reference math softmax(QKᵀ·scale + mask)·V
  with bertkit's dropout (bertkit/modeling/dropout_bits.py) on the probabilities; torch's SDPA otherwise (eval, GPUs).
- **variable-length sequences** (packed batches, bertkit/data/packing.py with `varlen`): the tokens of several
  sequences in one row, `cu_seq_lens_q` their boundaries (int32, 0 … total, as flash-attention's varlen
  functions take them). Each sequence attends only to itself through SDPA on a nested (jagged) tensor: on a GPU
  torch runs its flash / memory-efficient kernels on it (with dropout), where a block-diagonal mask would keep
  SDPA on its slowest kernel. On a CPU each sequence goes through the path above in turn (torch's nested
  fallback there does the same, but activation checkpointing cannot save its tensors). transformers' own
  flash_attention_2 reads the same keyword arguments, so a batch made for one runs on the other.

Saved models are unaffected (the attention implementation is not written to config.json) and load with plain
transformers.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from bertkit.modeling.dropout_bits import fast_dropout

NAME = "bertkit"
# Implementations that keep the sequences of a varlen batch apart (attention_mask=None, cu_seq_lens_* given).
VARLEN = {NAME, "flash_attention_2", "flash_attention_3"}


def register() -> None:
    """Make "bertkit" known to transformers (here rather than at import: importing bertkit changes nothing)."""
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    # torch's own noise on the nested-tensor path (a deprecation note on is_fx_tracing, once per process):
    # not the user's to act on.
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)


def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' attention-function signature: (B, heads, T, D) in, ((B, T, heads, D), None) out."""
    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    if cu_seq_lens is not None:
        if query.device.type == "cpu":
            return sequence_by_sequence(module, query, key, value, cu_seq_lens, dropout, scaling), None
        return varlen_attention(query, key, value, cu_seq_lens, kwargs.get("max_length_q"), dropout, scaling), None
    if dropout == 0.0 or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill_(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = fast_dropout(probs, dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def sequence_by_sequence(module, query, key, value, cu_seq_lens, dropout, scaling):
    """Varlen attention on a CPU: each sequence through the attention above (its cheap dropout), one after
    another — what torch's nested-tensor SDPA does there too, but with tensors that activation checkpointing
    can save (the nested fallback's cannot)."""
    batch, heads, length, dim = query.shape

    def flat(x: torch.Tensor) -> torch.Tensor:  # (B, heads, T, D) → (heads, B·T, D)
        return x.transpose(0, 1).reshape(heads, batch * length, dim)

    q, k, v = flat(query), flat(key), flat(value)
    bounds = cu_seq_lens.tolist()
    outs = [
        attention(module, q[None, :, a:b], k[None, :, a:b], v[None, :, a:b], None, dropout, scaling)[0][0]
        for a, b in zip(bounds[:-1], bounds[1:], strict=False)
    ]
    return torch.cat(outs).view(batch, length, heads, dim)


def varlen_attention(query, key, value, cu_seq_lens, max_length, dropout, scaling):
    """Attention within each sequence of the flattened (B·T) tokens, sequence k at cu_seq_lens[k]:[k+1]; the
    longest sequence's length, when given, spares the GPU a sync to find it."""
    batch, heads, length, dim = query.shape
    offsets = cu_seq_lens.to(device=query.device, dtype=torch.int64)  # one tensor: q, k and v share their raggedness

    def jagged(x: torch.Tensor) -> torch.Tensor:  # (B, heads, T, D) → (sequences, heads, jagged, D)
        tokens = x.transpose(1, 2).reshape(batch * length, heads, dim)
        return torch.nested.nested_tensor_from_jagged(tokens, offsets, max_seqlen=max_length).transpose(1, 2)

    out = F.scaled_dot_product_attention(jagged(query), jagged(key), jagged(value), dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).values().view(batch, length, heads, dim)
