"""On a CUDA GPU only (bench/gpu.sh runs these): bertkit's pretraining objective, packed or not (block-diagonal
mask or varlen on nested tensors), equals stock BertForPreTraining there too, in bf16 up to rounding; a CLI run
picks bf16 and varlen packing by itself (train.precision=auto, train.packed_attention=auto)."""

import pytest
import torch
from conftest import RECIPE, SMALL, run_cli
from transformers import BertConfig, BertForPreTraining

from bertkit.config.sections import MaskingConfig
from bertkit.data.masking import PretrainingCollator
from bertkit.data.packing import pack_batch
from bertkit.modeling.dropout import use_fast_dropout
from bertkit.modeling.model import PretrainingObjective, checkpoint_layers

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _batch(tokenizer, sentences):
    enc = [tokenizer(a, b) for a, b in zip(sentences[:8], sentences[8:16], strict=True)]
    examples = [
        {
            "input_ids": e["input_ids"],
            "token_type_ids": e["token_type_ids"],
            "word_ids": list(range(len(e["input_ids"]))),
            "next_sentence_label": i % 2,
            "mask_seed": i,
        }
        for i, e in enumerate(enc)
    ]
    return PretrainingCollator(tokenizer, MaskingConfig())(examples)


@pytest.mark.parametrize("packed", [None, "mask", "varlen", "varlen-checkpointed"])
def test_objective_equals_stock_on_the_gpu(tokenizer, sentences, packed):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=256, hidden_dropout_prob=0, attention_probs_dropout_prob=0)  # fmt: skip
    model = BertForPreTraining(config).cuda().train()
    if packed == "varlen-checkpointed":  # nested tensors saved by activation checkpointing
        checkpoint_layers(model)
        packed = "varlen"
    batch = _batch(tokenizer, sentences)
    stock = model(**{k: v.cuda() for k, v in batch.items()}).loss
    inputs = pack_batch(batch, 128, varlen=packed == "varlen") if packed else batch
    objective = PretrainingObjective(use_fast_dropout(model))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ours = objective(**{k: v.cuda() if torch.is_tensor(v) else v for k, v in inputs.items()})["loss"]
    ours.backward()
    assert ours.item() == pytest.approx(stock.item(), rel=2e-2)
    assert all(p.grad is None or p.grad.isfinite().all() for p in model.parameters())


def test_cli_pretrains_on_the_gpu_in_bf16(tmp_path):
    assert run_cli("tokenize", RECIPE, f"output_dir={tmp_path}", *SMALL).exit_code == 0
    result = run_cli("pretrain", RECIPE, f"output_dir={tmp_path}", *SMALL, "train.max_steps=3", "train.precision=auto")
    assert result.exit_code == 0, result.output
    major, _ = torch.cuda.get_device_capability()
    assert ("precision: bf16" if major >= 8 else "precision: fp32") in result.output
    assert "packed_attention: varlen" in (tmp_path / "pretrain" / "resolved.yaml").read_text()
