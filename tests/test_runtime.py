"""train.precision=auto: bf16 only where the hardware runs it fast, the choice printed and kept in the config."""

import pytest
import torch

import bertkit.loop as loop
from bertkit.config import TrainConfig
from bertkit.runtime import cpu_flags, fast_bf16


@pytest.mark.parametrize("reason, chosen, mixed", [("the CPU has AMX", "bf16", "bf16"), (None, "no", "no")])
def test_auto_precision_follows_the_hardware(monkeypatch, capsys, reason, chosen, mixed):
    monkeypatch.setattr(loop, "fast_bf16", lambda: reason)
    train = TrainConfig(precision="auto")
    accelerator = loop.make_accelerator(train)
    assert train.precision == chosen and accelerator.mixed_precision == mixed  # saved as what ran
    said = capsys.readouterr().out
    assert (f"precision: bf16 (train.precision=auto: {reason})" if reason else "precision: fp32") in said


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU decides by its compute capability")
def test_a_cpus_answer_follows_its_flags():
    flags = cpu_flags()
    assert (fast_bf16() is not None) == ("amx_bf16" in flags or "avx512_bf16" in flags)
