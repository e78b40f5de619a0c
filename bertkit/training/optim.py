"""Optimizers and learning-rate schedules.

optimizer = make_optimizer(model, cfg.train)              # AdamW or LAMB, no decay on biases/LayerNorm
scheduler = make_schedule(optimizer, cfg.train, total_steps=1000)   # warm-up, then linear/cosine decay
print(describe_schedule(cfg.train, total_steps=1000))    # "LR schedule (linear) over 1,000 steps (warm-up 10%)"

With `train.max_time_minutes` the schedule follows the time budget instead (BudgetLR): fit() tells it the
training time so far before each step, and its progress is max(step / total_steps, time / budget).
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from bertkit.config.sections import TrainConfig


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


def make_optimizer(
    model: torch.nn.Module, train: TrainConfig, own_lr: dict[str, float] | None = None
) -> torch.optim.Optimizer:
    """`own_lr`: parameter-name prefix → a learning rate of its own (a CRF's few scores start at zero and must
    travel far in a few hundred steps: at BERT's fine-tuning LR they would barely move)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    num_layers = getattr(getattr(model, "config", None), "num_hidden_layers", 0)
    groups: dict[tuple[bool, int, float], dict] = {}
    for n, p in named:
        depth = layer_depth(n, num_layers) if train.layer_lr_decay else 0
        scale = train.layer_lr_decay ** (num_layers + 1 - depth) if train.layer_lr_decay else 1.0
        own = next((lr for prefix, lr in (own_lr or {}).items() if n.startswith(prefix)), 0.0)
        key = (no_decay(n, p), depth, own)
        groups.setdefault(
            key, {"params": [], "weight_decay": 0.0 if key[0] else train.weight_decay, "lr": own or train.lr * scale}
        )["params"].append(p)
    groups = [groups[k] for k in sorted(groups)]  # decayed groups first, shallow layers first
    if train.optimizer == "lamb":
        return Lamb(groups, lr=train.lr, eps=1e-6)
    # The fused kernel (CPU and CUDA) updates every tensor in one pass; MPS lacks it in some torch versions.
    return torch.optim.AdamW(
        groups, lr=train.lr, betas=(0.9, 0.999), eps=1e-6, fused=not torch.backends.mps.is_available()
    )


def lr_factor(step: float, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak LR after `step` optimizer steps: linear warm-up, then linear or cosine decay to 0
    at `total` (or constant). `step` may be fractional: a position on the schedule (see schedule_position)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress


def schedule_position(step: int, seconds: float, total_steps: int, budget_seconds: float) -> float:
    """Where a time-budgeted schedule stands, in steps: progress = max(step / total_steps, seconds /
    budget_seconds), times total_steps. Whichever budget runs out first ends the schedule: warm-up is
    `warmup_ratio` of the time (or of the steps, when they go faster), and the decay reaches 0 when the time is
    used up (or at the last step)."""
    return max(step, seconds / budget_seconds * total_steps)


class BudgetLR(LambdaLR):
    """A LambdaLR over a time budget as well as a step count: fit() sets `seconds`, the training time so far
    (the same on every process), before each step(), and the factor is lr_factor at schedule_position.

    `seconds` is in state_dict (and fit() sets it anew before every step); the budget, step count and shape
    are not (they come from the recipe, as a LambdaLR's lambda does), so a run may be resumed with a larger
    `max_time_minutes`: the LR then continues from where the schedule over the new budget stands."""

    def __init__(self, optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int):
        self.seconds = 0.0
        budget_seconds = train.max_time_minutes * 60
        warmup = round(train.warmup_ratio * total_steps)

        def factor(step: int) -> float:  # a function, not a bound method: LambdaLR.state_dict skips it
            position = schedule_position(step, self.seconds, total_steps, budget_seconds)
            return lr_factor(position, warmup, total_steps, train.schedule)

        super().__init__(optimizer, factor)


def make_schedule(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int) -> LambdaLR:
    """Warm-up and decay over `total_steps`, or over `train.max_time_minutes` when it is set (BudgetLR)."""
    if train.max_time_minutes:
        return BudgetLR(optimizer, train, total_steps)
    warmup = round(train.warmup_ratio * total_steps)
    return LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total_steps, train.schedule))


def describe_schedule(train: TrainConfig, total_steps: int, seconds: float = 0.0) -> str:
    """One line saying what the LR schedule follows, e.g. "LR schedule (linear) over the 30-minute budget
    (warm-up 5%; or over 100,000 steps if they come first)"; `seconds`: training time already done (resume)."""
    warmup = f"warm-up {train.warmup_ratio * 100:g}%"
    if not train.max_time_minutes:
        return f"LR schedule ({train.schedule}) over {total_steps:,} steps ({warmup})"
    used = f", {seconds / 60:.1f} minutes of it used" if seconds else ""
    return (
        f"LR schedule ({train.schedule}) over the {train.max_time_minutes:g}-minute budget ({warmup}; or over "
        f"{total_steps:,} steps if they come first){used}"
    )
