import pytest
import torch
from transformers import BertForPreTraining

from bertkit.config import MaskingConfig, ModelConfig
from bertkit.data.masking import PretrainingCollator
from bertkit.errors import BertkitError
from bertkit.model import PretrainingObjective, bert_config, build_pretraining_model


@pytest.mark.parametrize(
    "size,layers,hidden,heads",
    [("tiny", 2, 128, 2), ("mini", 4, 256, 4), ("base", 12, 768, 12), ("large", 24, 1024, 16)],
)
def test_size_presets(tokenizer, size, layers, hidden, heads):
    cfg = bert_config(ModelConfig(size=size), tokenizer)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (
        layers,
        hidden,
        heads,
        4 * hidden,
    )
    assert cfg.vocab_size == len(tokenizer)


def test_bad_head_count_is_an_error(tokenizer):
    with pytest.raises(BertkitError, match="not divisible"):
        bert_config(ModelConfig(hidden_size=100, num_attention_heads=3), tokenizer)


def test_objective_equals_stock_bert_for_pretraining(tokenizer):
    """The MLM head on masked positions only gives the same loss and gradients as transformers' model."""
    torch.manual_seed(0)
    model = build_pretraining_model(ModelConfig(hidden_size=64, num_hidden_layers=2), tokenizer).eval()
    rows = [[2, *range(10, 10 + n), 3, *range(200, 210), 3] for n in (5, 17, 30)]
    examples = [
        {
            "input_ids": r,
            "token_type_ids": [0] * (len(r) - 11) + [1] * 11,
            "word_ids": [-1 if t in (2, 3) else i for i, t in enumerate(r)],
            "next_sentence_label": i % 2,
            "mask_seed": i,
        }
        for i, r in enumerate(rows)
    ]
    batch = PretrainingCollator(tokenizer, MaskingConfig(rate=0.3))(examples)

    ours = PretrainingObjective(model)(**batch)
    ours["loss"].backward()
    ours_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    stock = BertForPreTraining.forward(model, **batch)
    stock.loss.backward()
    assert ours["loss"].item() == pytest.approx(stock.loss.item(), abs=1e-5)
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(ours_grads[name], p.grad, atol=1e-6, rtol=1e-4, msg=name)
