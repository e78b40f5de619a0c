"""Training a transformers BERT with bertkit's cheap CPU dropout (bertkit/modeling/dropout_bits.py).

    use_fast_dropout(model)   # before training a transformers BERT: its nn.Dropout layers and attention dropout

The attention-probability dropout happens inside SDPA, so `use_fast_dropout` also switches the model's
attention to bertkit's own (bertkit/modeling/attention.py), which applies this dropout to the probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

from bertkit.modeling import attention
from bertkit.modeling.dropout_bits import fast_dropout


class FastDropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def use_fast_dropout(model: nn.Module) -> nn.Module:
    """Swap every nn.Dropout of `model` for FastDropout and its BERT attention for "bertkit", in place."""
    attention.register()
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p).train(child.training))  # an eval model stays so
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) == "sdpa":
        config._attn_implementation = attention.NAME
    return model
