"""How a fresh BERT's weights start (model.init), in transformers' own weight layout.

    model = BertForPreTraining(config)       # `standard`: transformers' init, N(0, initializer_range)
    local_attention_init(model)              # `local`: attention that starts out looking at nearby tokens

Why: a small BERT trained from scratch with the standard init sits for thousands of steps on a plateau where
it predicts masked tokens from a bag of the whole sequence's words (held-out MLM accuracy ~14% on Chinese
characters, while a count-based model of the two neighbours gets 35%). Its position embeddings and its
query/key weights are all small and random, so no head can tell a neighbour from a token far away, and the
gradient that would teach one is the product of the two small matrices. The local init puts two known pieces
together: sinusoidal position embeddings (Vaswani et al. 2017), whose dot products fall with distance, and
mimetic attention weights (Trockman & Kolter 2023: query·keyᵀ ≈ identity, value·output ≈ −identity, plus
noise) under which each head scores tokens by similarity of their hidden states — so, through the positions,
by nearness. The weights stay ordinary BERT weights: the model saves and loads as any BertForPreTraining.
"""

from __future__ import annotations

import math

import torch
from transformers import BertForPreTraining, BertModel

# Position embeddings' per-element std, in units of initializer_range: strong enough to steer attention at
# the start, weak enough to leave token identity in the LayerNorm'd sum (BERT-tiny on Chinese MLM escapes the
# plateau at 3.5× and 5.3×, not at 2.1× or 10.6×: docs/results.md, "Leaving the plateau").
POSITION_SCALE = 4.2
# Trockman & Kolter's mimetic weights: query·keyᵀ ≈ A·Z + B·I, value·output ≈ A'·Z' − B'·I, Z ~ N(0, 1/H).
QK_NOISE, QK_IDENTITY = 0.7, 0.7
VO_NOISE, VO_IDENTITY = 0.4, 0.4


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sin/cos position codes, each element of std 1/√2 (odd dims: the last cosine dropped)."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    codes = torch.zeros(length, dim + dim % 2, dtype=torch.float64)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)
    return codes[:, :dim].float()


def _factor(target: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (rank, H) matrices a, b with aᵀb the best rank-`rank` approximation of `target` (H, H)."""
    u, s, vh = torch.linalg.svd(target)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).T, root[:, None] * vh[:rank]


@torch.no_grad()
def local_attention_init(model: BertForPreTraining | BertModel) -> None:
    """Sinusoidal positions and mimetic attention weights of a BERT (or its encoder alone: ELECTRA's
    discriminator), in place; random draws from torch's global RNG."""
    config = model.config
    bert = getattr(model, "bert", model)
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_dim = hidden // heads
    embeddings = bert.embeddings.position_embeddings.weight
    codes = sinusoidal_positions(*embeddings.shape)
    embeddings.copy_(codes * (POSITION_SCALE * config.initializer_range * math.sqrt(2)))
    identity = torch.eye(hidden)
    for layer in bert.encoder.layer:
        attention = layer.attention.self
        # Scores are x·W_qᵀ·W_k·xᵀ per head: each head gets its own rank-head_dim share of A·Z + B·I.
        for h in range(heads):
            rows = slice(h * head_dim, (h + 1) * head_dim)
            noise = torch.randn(hidden, hidden) / math.sqrt(hidden)
            query, key = _factor(QK_NOISE * noise + QK_IDENTITY * identity, head_dim)
            attention.query.weight[rows] = query
            attention.key.weight[rows] = key
        # The value and output projections together map x to x·W_vᵀ·W_oᵀ.
        noise = torch.randn(hidden, hidden) / math.sqrt(hidden)
        value, output = _factor(VO_NOISE * noise - VO_IDENTITY * identity, hidden)
        attention.value.weight.copy_(value)
        layer.attention.output.dense.weight.copy_(output.T)
