"""Optimizers and learning-rate schedules.

optimizer = make_optimizer(model, cfg.train)              # AdamW or LAMB, no decay on biases/LayerNorm
scheduler = make_schedule(optimizer, cfg.train, total_steps=1000)   # warm-up, then linear/cosine decay
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from bertkit.config import TrainConfig


def no_decay(name: str, param: torch.Tensor) -> bool:
    """Biases and LayerNorm weights get no weight decay (as in BERT)."""
    return param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning"): Adam's update rescaled per
    parameter tensor by the trust ratio ‖w‖ / ‖update‖, which keeps very large batches (BERT in 76 minutes)
    stable. Bias correction as in Adam; the trust ratio is 1 where either norm is 0."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                step = state["step"].item()
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(p.grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = (exp_avg / (1 - beta1**step)) / (exp_avg_sq / (1 - beta2**step)).sqrt().add_(group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.add_(update * trust, alpha=-group["lr"])
        return loss


def layer_depth(name: str, num_layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, num_layers + 1 for everything above (pooler, heads)."""
    if ".embeddings." in f".{name}":
        return 0
    marker = "encoder.layer."
    if marker in name:
        return int(name.split(marker)[1].split(".")[0]) + 1
    return num_layers + 1


def make_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    num_layers = getattr(getattr(model, "config", None), "num_hidden_layers", 0)
    groups: dict[tuple[bool, int], dict] = {}
    for n, p in named:
        depth = layer_depth(n, num_layers) if train.layer_lr_decay else 0
        scale = train.layer_lr_decay ** (num_layers + 1 - depth) if train.layer_lr_decay else 1.0
        key = (no_decay(n, p), depth)
        groups.setdefault(
            key, {"params": [], "weight_decay": 0.0 if key[0] else train.weight_decay, "lr": train.lr * scale}
        )["params"].append(p)
    groups = [groups[k] for k in sorted(groups)]  # decayed groups first, shallow layers first
    if train.optimizer == "lamb":
        return Lamb(groups, lr=train.lr, eps=1e-6)
    # The fused kernel (CPU and CUDA) updates every tensor in one pass; MPS lacks it in some torch versions.
    return torch.optim.AdamW(
        groups, lr=train.lr, betas=(0.9, 0.999), eps=1e-6, fused=not torch.backends.mps.is_available()
    )


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak LR after `step` optimizer steps: linear warm-up, then linear or cosine decay to 0
    at `total` (or constant)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress


def make_schedule(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int) -> LambdaLR:
    warmup = round(train.warmup_ratio * total_steps)
    return LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total_steps, train.schedule))
