"""train.gradient_checkpointing: activations kept for the backward pass fall to the layers' inputs, and the
gradients stay the same, dropout included (its masks are replayed in the recomputation)."""

import torch
from transformers import BertConfig, BertForPreTraining

from bertkit.modeling.dropout import use_fast_dropout
from bertkit.modeling.model import PretrainingObjective, checkpoint_layers


def _step(checkpointing: bool) -> tuple[int, dict]:
    """(bytes saved for the backward pass, gradients) of one training step of a 4-layer BERT with dropout."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256
    )  # dropout 0.1 on hidden states and attention probabilities
    model = BertForPreTraining(config)
    if checkpointing:
        checkpoint_layers(model)
    use_fast_dropout(model).train()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (4, 48), generator=g)
    labels = torch.where(torch.rand(4, 48, generator=g) < 0.15, ids, torch.full_like(ids, -100))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        "labels": labels,
        "next_sentence_label": torch.tensor([0, 1, 0, 1]),
    }
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    torch.manual_seed(2)  # the dropout masks
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = PretrainingObjective(model)(**batch)["loss"]
    loss.backward()
    return sum(saved), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def test_less_activation_memory_same_gradients():
    kept, grads = _step(checkpointing=False)
    kept_checkpointed, grads_checkpointed = _step(checkpointing=True)
    assert kept_checkpointed < kept / 3
    assert grads.keys() == grads_checkpointed.keys()
    for name in grads:
        torch.testing.assert_close(grads_checkpointed[name], grads[name], rtol=1e-5, atol=1e-6, msg=name)
