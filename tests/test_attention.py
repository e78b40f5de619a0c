import pytest
import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from bertkit.modeling.attention import attention, varlen_attention

SEGMENTS = [[0] * 6 + [1] * 10, [0] * 16, [0] * 9 + [1] * 5 + [2] * 2]


def module() -> nn.Module:
    m = nn.Module()
    m.is_causal = False
    return m


def qkv(seed: int = 0):
    torch.manual_seed(seed)
    return [torch.randn(3, 4, 16, 8, requires_grad=True) for _ in range(3)]


def block_diagonal(segments: torch.Tensor) -> torch.Tensor:
    return (segments[:, :, None] == segments[:, None, :])[:, None]


def run(q, k, v, mask, via=attention, **kwargs):
    """Output and the gradients of q, k, v for a fixed random upstream gradient."""
    for t in (q, k, v):
        t.grad = None
    out, _ = via(module(), q, k, v, mask, scaling=8**-0.5, **kwargs)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)))
    return out.detach(), [t.grad.clone() for t in (q, k, v)]


@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
def test_attention_math_equals_sdpa(mask_kind):
    """With nothing dropped, the CPU training path (SDPA's reference math + this dropout) equals torch's SDPA."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 16, 8, requires_grad=True) for _ in range(3))
    mask = block_diagonal(torch.tensor(SEGMENTS))
    if mask_kind == "float":
        mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    elif mask_kind == "none":
        mask = None
    ours, _ = attention(module(), q, k, v, mask, dropout=1e-9, scaling=8**-0.5)  # rounds to no drop
    ours.sum().backward()
    ours_grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    stock, _ = sdpa_attention_forward(module(), q, k, v, mask, dropout=0.0, scaling=8**-0.5)
    stock.sum().backward()
    torch.testing.assert_close(ours, stock, atol=1e-6, rtol=1e-5)
    for a, b in zip(ours_grads, (q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def boundaries(segments: list[list[int]]) -> torch.Tensor:
    """cu_seq_lens over the flattened rows: where each run of equal segment ids starts, and the end."""
    flat = [(r, s) for r, row in enumerate(segments) for s in row]
    starts = [i for i in range(len(flat)) if i == 0 or flat[i] != flat[i - 1]]
    return torch.tensor([*starts, len(flat)], dtype=torch.int32)


def nested(module, q, k, v, mask, dropout=0.0, scaling=None, cu_seq_lens_q=None, **kwargs):
    """The GPU's varlen path (SDPA on nested tensors), run on the CPU."""
    return varlen_attention(q, k, v, cu_seq_lens_q, kwargs.get("max_length_q"), dropout, scaling), None


PATHS = {"cpu": attention, "nested": nested}


@pytest.mark.parametrize("path", PATHS)
def test_varlen_equals_block_diagonal_mask(path):
    """Sequences given by their boundaries (no mask) compute exactly what the block-diagonal mask does."""
    q, k, v = qkv()
    masked, masked_grads = run(q, k, v, block_diagonal(torch.tensor(SEGMENTS)))
    cu = boundaries(SEGMENTS)
    ours, ours_grads = run(
        q, k, v, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=16, max_length_k=16, via=PATHS[path]
    )
    assert ours.shape == (3, 16, 4, 8)  # transformers' (B, T, heads, D)
    torch.testing.assert_close(ours, masked, atol=1e-6, rtol=1e-5)
    for a, b in zip(ours_grads, masked_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("path", PATHS)
def test_varlen_under_bf16_autocast_matches_fp32(path):
    q, k, v = qkv()
    cu = boundaries(SEGMENTS)
    exact, _ = run(q, k, v, None, cu_seq_lens_q=cu, via=PATHS[path])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = run(
            *(t.detach().bfloat16().requires_grad_() for t in (q, k, v)), None, cu_seq_lens_q=cu, via=PATHS[path]
        )
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), exact, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("path", PATHS)
def test_varlen_dropout_is_applied_and_unbiased(path):
    """With dropout the output changes from draw to draw, and averages to the output without it; every
    sequence still sees only itself (a change in one sequence's values leaves the others alone)."""
    q, k, v = (t.detach() for t in qkv())
    cu = boundaries(SEGMENTS)

    def draw(values, dropout=0.5):
        return PATHS[path](module(), q, k, values, None, dropout=dropout, scaling=8**-0.5, cu_seq_lens_q=cu)[0]

    plain = draw(v, 0.0)
    torch.manual_seed(5)
    draws = torch.stack([draw(v) for _ in range(800)])
    assert not torch.equal(draws[0], draws[1])
    assert (draws.mean(0) - plain).abs().mean() < 0.05 * plain.abs().mean()
    changed = v.clone()
    changed[0, :, 6:] += 1.0  # the second sequence of row 0 only
    torch.manual_seed(6)
    a = draw(v)
    torch.manual_seed(6)
    b = draw(changed)
    assert torch.equal(a[0, :6], b[0, :6]) and torch.equal(a[1:], b[1:]) and not torch.equal(a[0, 6:], b[0, 6:])


def test_varlen_with_activation_checkpointing():
    """The CPU path's tensors can be saved by non-reentrant checkpointing (torch's nested fallback's cannot)."""
    from torch.utils.checkpoint import checkpoint

    q, k, v = qkv()
    cu = boundaries(SEGMENTS)
    expected, grads = run(q, k, v, None, cu_seq_lens_q=cu)

    def through_checkpoint(module, q, k, v, mask, **kwargs):
        return checkpoint(attention, module, q, k, v, mask, use_reentrant=False, **kwargs)

    out, checkpointed = run(q, k, v, None, cu_seq_lens_q=cu, via=through_checkpoint)
    torch.testing.assert_close(out, expected)
    for a, b in zip(checkpointed, grads, strict=True):
        torch.testing.assert_close(a, b)
