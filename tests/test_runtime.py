"""precision=auto: bf16 only where the hardware runs it fast, the choice printed; the recipe is left as given."""

import pytest
import torch

import bertkit.training.runtime as runtime
from bertkit.config.sections import TrainConfig
from bertkit.errors import BertkitError
from bertkit.training.runtime import cpu_flags, fast_bf16, launch


@pytest.mark.parametrize("reason, chosen, mixed", [("the CPU has AMX", "bf16", "bf16"), (None, "no", "no")])
def test_auto_precision_follows_the_hardware(monkeypatch, capsys, reason, chosen, mixed):
    monkeypatch.setattr(runtime, "fast_bf16", lambda: reason)
    train = TrainConfig(precision="auto")
    accelerator = runtime.make_accelerator(train.precision, "train.precision")
    assert accelerator.mixed_precision == mixed and train.precision == "auto"  # resolved.yaml keeps what ran
    assert runtime.run_state(accelerator)["precision"] == chosen
    said = capsys.readouterr().out
    assert (f"precision: bf16 (train.precision=auto: {reason})" if reason else "precision: fp32") in said


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU decides by its compute capability")
def test_a_cpus_answer_follows_its_flags():
    flags = cpu_flags()
    assert (fast_bf16() is not None) == ("amx_bf16" in flags or "avx512_bf16" in flags)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR and MASTER_PORT are not"),
        ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "localhost"}, "MASTER_PORT is not"),
        ({"WORLD_SIZE": "two"}, "not whole numbers"),
        ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "does not fit"),
    ],
)
def test_a_broken_launch_environment_is_one_line(monkeypatch, env, message):
    """WORLD_SIZE set by hand without torchrun's rendezvous: one error, not torch's traceback or a hang."""
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(BertkitError, match=message):
        launch()
    with pytest.raises(BertkitError, match=message):
        runtime.make_accelerator("no", "train.precision")


def test_a_plain_run_is_rank_0_of_1(monkeypatch):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launch() == (0, 1)
