"""Prediction: batches grouped by length give each example the outputs it has alone, in the input's order; eval
runs in the recipe's precision and reports its speed."""

import json

import pytest
import torch
from conftest import RECIPE, run_cli
from transformers import BertConfig, BertForSequenceClassification

from bertkit.tasks import classification
from bertkit.tasks.common import length_batches, predict_all


def test_length_grouped_batches_keep_each_examples_outputs_and_order():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertForSequenceClassification(config).eval()
    g = torch.Generator().manual_seed(1)
    lengths = [3, 17, 5, 30, 2, 9, 17, 4, 25, 6]
    features = [
        {"input_ids": torch.randint(5, 50, (n,), generator=g).tolist(), "token_type_ids": [0] * n} for n in lengths
    ]
    batches = length_batches(features, 4, batch_tokens=40)
    assert [lengths[i] for b in batches for i in b] == sorted(lengths, reverse=True)
    assert all(len(b) == 1 or len(b) * lengths[b[0]] <= 40 for b in batches) and max(map(len, batches)) <= 4
    batched = predict_all(model, features, classification.collate, 4, lambda out: out.logits)
    with torch.no_grad():
        alone = torch.cat([model(**classification.collate([f])).logits for f in features])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_eval_in_bf16_agrees_with_fp32_and_reports_its_speed(tiny_run, tmp_path):
    out, overrides = tiny_run
    reports, predictions = {}, {}
    for precision in ("no", "bf16"):
        where = tmp_path / precision
        result = run_cli("eval", RECIPE, *overrides, f"eval.precision={precision}", f"eval.output_dir={where}")
        assert result.exit_code == 0, result.output
        assert "predicted 100 examples in" in result.output
        reports[precision] = json.loads((where / "report.json").read_text())
        rows = [json.loads(line) for line in (where / "predictions.jsonl").open()]
        predictions[precision] = [(r["prediction"], r["probability"]) for r in rows]
    assert reports["no"]["speed"]["precision"] == "fp32" and reports["bf16"]["speed"]["precision"] == "bf16"
    assert reports["bf16"]["speed"]["examples_per_s"] > 0
    pairs = list(zip(predictions["no"], predictions["bf16"], strict=True))
    assert any(a[1] != b[1] for a, b in pairs)  # bf16 really ran: the probabilities move a little
    agree = sum(a[0] == b[0] for a, b in pairs) / 100
    assert agree >= 0.95 and reports["bf16"]["accuracy"] == pytest.approx(reports["no"]["accuracy"], abs=0.05)
