import json

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForPreTraining, BertModel

from bertkit.modeling.dropout import FastDropout, use_fast_dropout
from bertkit.modeling.dropout_bits import LEVELS, fast_dropout


def test_drop_rate_and_scale_are_torchs():
    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 0.5
    y = fast_dropout(x, 0.1)
    dropped = (y == 0).float().mean().item()
    p = round(0.1 * LEVELS) / LEVELS  # 0.100006
    assert dropped == pytest.approx(p, abs=4 * (p * (1 - p) / x.numel()) ** 0.5)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    assert y.mean().item() == pytest.approx(x.mean().item(), rel=2e-3)  # unbiased
    # A bf16 input stays bf16 and is not biased by a rounded scale tensor.
    xb = x.bfloat16()
    yb = fast_dropout(xb, 0.1)
    assert yb.dtype == torch.bfloat16
    assert yb.float().mean().item() == pytest.approx(xb.float().mean().item(), rel=2e-3)


def test_dropout_is_seeded_differentiable_and_off_in_eval():
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(1)
    a = fast_dropout(x, 0.3)
    torch.manual_seed(1)
    b = fast_dropout(x, 0.3)
    assert torch.equal(a, b) and not torch.equal(a, fast_dropout(x, 0.3))
    a.sum().backward()
    keep = (a != 0).float()
    torch.testing.assert_close(x.grad, keep * LEVELS / (LEVELS - round(0.3 * LEVELS)))
    layer = FastDropout(0.3).eval()
    assert layer(x) is x and fast_dropout(x, 0.0) is x


def test_use_fast_dropout_swaps_layers_and_saves_a_plain_model(tmp_path):
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        attn_implementation="sdpa",
    )
    model = use_fast_dropout(BertForPreTraining(config))
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert sum(isinstance(m, FastDropout) for m in model.modules()) == 1 + 2 * 3
    assert model.bert.encoder.layer[0].attention.self.config._attn_implementation == "bertkit"
    ids = torch.randint(5, 50, (2, 12))
    model.train()
    torch.manual_seed(3)
    a = model.bert(input_ids=ids).last_hidden_state
    torch.manual_seed(3)
    assert torch.equal(a, model.bert(input_ids=ids).last_hidden_state)  # reproducible under a seed
    model.eval()
    evaluated = model.bert(input_ids=ids).last_hidden_state
    model.save_pretrained(tmp_path)
    assert "bertkit" not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
    plain = BertModel.from_pretrained(tmp_path).eval()
    assert plain.config._attn_implementation == "sdpa"
    torch.testing.assert_close(plain(input_ids=ids).last_hidden_state, evaluated)


def test_use_fast_dropout_keeps_an_eval_model_in_eval():
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    model = BertModel(config).eval()
    ids = torch.randint(5, 50, (2, 12))
    before = model(input_ids=ids).last_hidden_state
    use_fast_dropout(model)
    assert not any(m.training for m in model.modules())
    torch.testing.assert_close(model(input_ids=ids).last_hidden_state, before)
