"""No two runs write one output at once: a run holds each output it writes (bertkit/atomic.py: claim) for its
whole life; a second run refuses, naming the holder; a killed run's lock is taken over."""

from __future__ import annotations

import subprocess
import sys
import time

from conftest import RECIPE, run_cli

SMALL = ["tokenizer.vocab_size=1500", "data.max_seq_length=64", "data.dupe_factor=1"]
TINY_MODEL = ["model.max_position_embeddings=64", "model.hidden_size=64", "model.num_hidden_layers=1"]
HOLD = "import sys, time; from bertkit.atomic import claim; claim(sys.argv[1], 'k'); print('held', flush=True); "
HOLD += "time.sleep(120)"


def _wait_for(path, seconds=60):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_held_output_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out / "tokenizer")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_cli("tokenize", RECIPE, f"output_dir={out}", *SMALL)
        assert result.exit_code == 2
        assert f"is being written by another bertkit run (pid {holder.pid}, since " in result.stderr
        assert not (out / "tokenizer").exists() and not (out / "data").exists()
    finally:
        holder.kill()  # SIGKILL: no release; the kernel drops the flock, the lock file stays behind
        holder.wait()
    assert (out / ".tokenizer.bertkit-lock").exists()
    result = run_cli("tokenize", RECIPE, f"output_dir={out}", *SMALL)
    assert result.exit_code == 0, result.output
    assert not list(out.glob(".*.bertkit-lock"))  # released (and removed) when the command ended


def test_two_concurrent_runs_into_one_dir_one_proceeds_the_other_names_it(tiny_run, tmp_path):
    data, _ = tiny_run
    out = tmp_path / "run"
    args = [sys.executable, "-m", "bertkit", "pretrain", str(RECIPE), f"output_dir={out}"]
    args += [f"data.dataset_dir={data / 'data'}", *TINY_MODEL, "train.max_steps=100000", "train.max_time_minutes=0.75"]
    args += ["train.eval_every=0", "train.save_every=0"]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(out / ".pretrain.bertkit-lock")
    second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert second.returncode == 2
    error = second.stderr.strip().splitlines()[-1]
    holder = f"is being written by another bertkit run (pid {first.pid}, since "
    assert error.startswith(f"error: output_dir: {out / 'pretrain'} {holder}")
    assert (out / "pretrain" / "model.safetensors").exists()
