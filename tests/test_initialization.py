"""model.init=local: sinusoidal positions and mimetic attention weights (bertkit/modeling/initialization.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import RECIPE, recipe_edits, run_cli, tiny_overrides
from transformers import BertConfig, BertForMaskedLM, BertForPreTraining

from bertkit.config import load_recipe
from bertkit.modeling.initialization import (
    POSITION_SCALE,
    QK_IDENTITY,
    VO_IDENTITY,
    local_attention_init,
    sinusoidal_positions,
)
from bertkit.modeling.model import build_pretraining_model


def tiny_bert(hidden: int = 128, heads: int = 2, layers: int = 2) -> BertForPreTraining:
    config = BertConfig(
        vocab_size=300,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    return BertForPreTraining(config)


def test_sinusoidal_positions_are_the_transformer_codes():
    codes = sinusoidal_positions(50, 16)
    assert codes.shape == (50, 16)
    for pos in (0, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert codes[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert codes[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert sinusoidal_positions(5, 7).shape == (5, 7)  # an odd width drops the last cosine


def test_position_codes_are_more_alike_the_nearer_they_are():
    codes = sinusoidal_positions(128, 128)
    similarity = [(codes[:-d] * codes[d:]).sum(-1).mean().item() for d in (1, 2, 4, 8, 16)]
    assert similarity == sorted(similarity, reverse=True)


def test_weights_are_the_mimetic_products():
    torch.manual_seed(0)
    model = tiny_bert()
    local_attention_init(model)
    config = model.config
    hidden, head_dim = config.hidden_size, config.hidden_size // config.num_attention_heads
    positions = model.bert.embeddings.position_embeddings.weight
    rms = positions.pow(2).mean().sqrt().item()  # sin² + cos² = 1: every pair of dims has RMS 1/√2
    assert rms == pytest.approx(POSITION_SCALE * config.initializer_range, rel=1e-4)
    for layer in model.bert.encoder.layer:
        attention = layer.attention.self
        for h in range(config.num_attention_heads):
            rows = slice(h * head_dim, (h + 1) * head_dim)
            scores = attention.query.weight[rows].T @ attention.key.weight[rows]  # x·scores·xᵀ per head
            # The best rank-head_dim share of A·Z + B·I: its top singular values are at least about B.
            assert torch.linalg.matrix_rank(scores).item() == head_dim
            assert torch.trace(scores).item() / head_dim > QK_IDENTITY
        mixing = attention.value.weight.T @ layer.attention.output.dense.weight.T
        assert torch.trace(mixing).item() / hidden == pytest.approx(-VO_IDENTITY, rel=0.15)


def _attention_near(model: BertForPreTraining, reach: int = 2) -> float:
    """Share of layer 0's attention that falls within `reach` positions, on a sequence of one repeated token
    (so that only the positions differ)."""
    ids = torch.full((1, 64), 7)
    with torch.no_grad():
        attention = model.bert(input_ids=ids, output_attentions=True).attentions[0][0]  # (heads, T, T)
    offsets = (torch.arange(64)[:, None] - torch.arange(64)[None, :]).abs()
    return attention[:, offsets <= reach].sum().item() / attention.sum().item()


def test_heads_start_out_looking_at_nearby_tokens():
    torch.manual_seed(0)
    standard = tiny_bert()
    local = tiny_bert()
    local_attention_init(local)
    uniform = 5 / 64  # about 5 of 64 positions lie within 2
    assert _attention_near(standard) == pytest.approx(uniform, rel=0.1)
    assert _attention_near(local) > 4 * uniform


def test_local_init_saves_and_loads_in_plain_transformers(tmp_path, tokenizer):
    cfg = load_recipe(RECIPE, ["model.init=local", "model.hidden_size=64", "model.num_hidden_layers=1"], "pretrain")
    torch.manual_seed(0)
    model = build_pretraining_model(cfg.model, tokenizer).eval()
    torch.manual_seed(0)
    standard = build_pretraining_model(cfg.model.model_copy(update={"init": "standard"}), tokenizer)
    position = "bert.embeddings.position_embeddings.weight"
    assert not torch.equal(model.state_dict()[position], standard.state_dict()[position])
    model.save_pretrained(tmp_path)
    loaded = BertForMaskedLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, len(tokenizer), (2, 20))
    with torch.no_grad():
        expected = model(input_ids=ids).prediction_logits
        assert torch.equal(loaded(input_ids=ids).logits, expected)


def test_pretrain_with_local_init(tmp_path):
    overrides = [*tiny_overrides(tmp_path), *recipe_edits(["model.init=local"])]
    for command in ("tokenize", "pretrain"):
        result = run_cli(command, RECIPE, *overrides)
        assert result.exit_code == 0, result.output
    model = BertForPreTraining.from_pretrained(tmp_path / "pretrain")
    codes = sinusoidal_positions(64, 64) * POSITION_SCALE * model.config.initializer_range * math.sqrt(2)
    # Six steps move the positions a little from their sinusoidal start, not away from it.
    drift = (model.bert.embeddings.position_embeddings.weight - codes).norm() / codes.norm()
    assert 0 < drift.item() < 0.5
