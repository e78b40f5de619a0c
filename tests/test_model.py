import pytest
import torch
from transformers import BertForPreTraining

from bertkit.config.sections import MaskingConfig, ModelConfig
from bertkit.data.masking import PretrainingCollator
from bertkit.data.packing import pack_batch
from bertkit.errors import BertkitError
from bertkit.modeling.dropout import use_fast_dropout
from bertkit.modeling.model import PretrainingObjective, bert_config, build_pretraining_model


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


@pytest.mark.parametrize("packed", [None, "mask", "varlen"])
def test_objective_equals_stock_bert_for_pretraining(tokenizer, packed):
    """MLM head on masked positions only, and packed rows (block-diagonal attention, or varlen: one row and
    the sequences' boundaries): the same loss and gradients as transformers' BertForPreTraining on the padded
    batch."""
    torch.manual_seed(0)
    model = build_pretraining_model(ModelConfig(hidden_size=64, num_hidden_layers=2), tokenizer).eval()
    if packed == "varlen":
        use_fast_dropout(model)  # bertkit's attention: the one that reads the boundaries
    rows = [[2, *range(10, 10 + n), 3, *range(200, 200 + m), 3] for n, m in ((5, 9), (17, 30), (30, 4), (8, 8))]
    examples = [
        {
            "input_ids": r,
            "token_type_ids": [0] * (len(r) - m - 1) + [1] * (m + 1),
            "word_ids": [-1 if t in (2, 3) else i for i, t in enumerate(r)],
            "next_sentence_label": i % 2,
            "mask_seed": i,
        }
        for i, (r, m) in enumerate(zip(rows, (9, 30, 4, 8), strict=True))
    ]
    batch = PretrainingCollator(tokenizer, MaskingConfig(rate=0.3))(examples)
    ours_batch = pack_batch(batch, 64, varlen=packed == "varlen") if packed else batch
    if packed:
        assert len(ours_batch["input_ids"]) < len(examples)  # sequences share rows

    ours = PretrainingObjective(model)(**ours_batch)
    ours["loss"].backward()
    ours_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    stock = BertForPreTraining.forward(model, **batch)
    stock.loss.backward()
    stock_mlm = torch.nn.functional.cross_entropy(
        stock.prediction_logits.view(-1, stock.prediction_logits.shape[-1]), batch["labels"].view(-1)
    )
    assert ours["mlm_loss"].item() == pytest.approx(stock_mlm.item(), abs=1e-5)
    assert ours["loss"].item() == pytest.approx(stock.loss.item(), abs=1e-5)
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(ours_grads[name], p.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_packing_fills_rows_without_mixing_sequences():
    from bertkit.data.packing import assign_rows

    rows = assign_rows([100, 60, 60, 30, 20, 120], capacity=128)
    assert all(sum([100, 60, 60, 30, 20, 120][i] for i in row) <= 128 for row in rows)
    assert sorted(i for row in rows for i in row) == list(range(6)) and len(rows) == 4
    batch = {
        "input_ids": torch.tensor([[2, 5, 3, 0], [2, 6, 7, 3]]),
        "token_type_ids": torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),
        "labels": torch.tensor([[-100, 5, -100, -100], [-100, -100, 7, -100]]),
        "next_sentence_label": torch.tensor([1, 0]),
    }
    packed = pack_batch(batch, 8)
    assert packed["input_ids"].tolist() == [[2, 5, 3, 2, 6, 7, 3, 0]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 0]]
    assert packed["token_type_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 0]]
    assert packed["cls_positions"].tolist() == [[0, 0], [0, 3]] and packed["num_tokens"].item() == 7
    mask = packed["attention_mask"][0, 0]
    assert mask[1, :3].all() and not mask[1, 3:].any() and mask[4, 3:7].all() and not mask[4, :3].any()


def test_varlen_packing_one_row_with_boundaries():
    batch = {
        "input_ids": torch.tensor([[2, 5, 3, 0], [2, 6, 7, 3], [2, 8, 3, 0]]),
        "token_type_ids": torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]]),
        "labels": torch.tensor([[-100, 5, -100, -100], [-100, -100, 7, -100], [-100, 8, -100, -100]]),
    }
    packed = pack_batch(batch, varlen=True)
    assert packed["input_ids"].tolist() == [[2, 5, 3, 2, 6, 7, 3, 2, 8, 3, 0, 0, 0, 0, 0, 0]]  # 10 → 16
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 0, 0, 0, 0, 0, 0]]
    assert packed["cu_seq_lens"].tolist() == [0, 3, 7, 10, 16] and packed["cu_seq_lens"].dtype == torch.int32
    assert packed["max_length"] == 6 and "attention_mask" not in packed  # the padding is a sequence of its own
    assert packed["cls_positions"].tolist() == [[0, 0], [0, 3], [0, 7]]


def test_varlen_batch_needs_an_attention_that_reads_boundaries(tokenizer):
    """Plain SDPA would ignore the boundaries and let the row's sequences attend to each other: refused."""
    model = build_pretraining_model(ModelConfig(hidden_size=64, num_hidden_layers=2), tokenizer)
    batch = PretrainingCollator(tokenizer, MaskingConfig(), pack_to=128, varlen=True)(
        [{"input_ids": [2, 10, 11, 3], "token_type_ids": [0] * 4, "word_ids": [-1, 0, 1, -1], "mask_seed": 0}] * 2
    )
    with pytest.raises(BertkitError, match="varlen attention implementation"):
        PretrainingObjective(model)(**batch)
    assert PretrainingObjective(use_fast_dropout(model))(**batch)["loss"].isfinite()
