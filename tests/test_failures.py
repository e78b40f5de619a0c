"""Failure cases through the CLI: one clear line, the right exit code, and nothing lost or half-written.

(A real SIGKILL followed by resume is in test_pretrain.py: the resumed weights equal an uninterrupted run's.)
"""

import errno
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch
from conftest import DATA, RECIPE, ROOT, SMALL, edited_recipe, recipe_edits, run_cli
from safetensors.torch import load_file
from typer.testing import CliRunner

import bertkit.commands.pretrain
import bertkit.modeling.model
import bertkit.training.checkpoint
from bertkit.atomic import atomic_dir, atomic_file
from bertkit.cli import app
from bertkit.config import RECIPES, load_recipe
from bertkit.errors import BertkitError, reported

SMALL = [*SMALL, *recipe_edits(["train.batch_size=8"])]


def _errors(result) -> list[str]:
    """The message lines of stderr (progress bars share it)."""
    return [line for line in result.stderr.splitlines() if line.startswith(("error: ", "stopped: "))]


def _one_line_error(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    lines = _errors(result)
    assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("failures")
    assert run_cli("tokenize", RECIPE, f"output_dir={out}", *SMALL).exit_code == 0
    return out


def _pretrain(out, data, *extra):
    return run_cli("pretrain", RECIPE, f"output_dir={out}", f"data.dataset_dir={data / 'data'}", *SMALL, *extra)


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_and_exits_cleanly(run, tmp_path, signum, code):
    cmd = [
        sys.executable,
        "-m",
        "bertkit",
        "pretrain",
        str(edited_recipe(RECIPE, SMALL)),
        f"output_dir={tmp_path}",
        f"data.dataset_dir={run / 'data'}",
        "train.max_steps=2000",
        "train.save_every=10",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "pretrain" / "checkpoints" / "step-10"
    deadline = time.time() + 120
    while not first.is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    message = [line for line in stderr.splitlines() if line.startswith("stopped: ")]
    assert len(message) == 1 and signal.Signals(signum).name in message[0] and "train.resume=auto" in message[0]
    step = int(message[0].split(" at step ")[1].split()[0])
    assert (tmp_path / "pretrain" / "checkpoints" / f"step-{step}" / "training_state.pt").is_file()
    assert (tmp_path / "pretrain" / "model.safetensors").is_file()
    result = _pretrain(tmp_path, run, f"train.max_steps={step + 2}", "train.resume=auto")
    assert result.exit_code == 0 and f"at step {step}" in result.output


def test_full_disk_during_a_checkpoint_keeps_the_last_good_one(run, tmp_path, monkeypatch):
    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        if "step-4" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(bertkit.training.checkpoint.torch, "save", save)
    message = _one_line_error(_pretrain(tmp_path, run, "train.max_steps=6", "train.save_every=2"))
    assert "no space left on device" in message and "checkpoints are intact" in message
    checkpoints = tmp_path / "pretrain" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-2"]  # no half-written step-4, no temp dir
    monkeypatch.setattr(bertkit.training.checkpoint.torch, "save", real_save)
    result = _pretrain(tmp_path, run, "train.max_steps=6", "train.save_every=2", "train.resume=auto")
    assert result.exit_code == 0 and "at step 2" in result.output


def test_nan_loss_stops_before_writing_nan_weights(run, tmp_path, monkeypatch):
    forward = bertkit.modeling.model.PretrainingObjective.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        calls["n"] += 1
        if self.training and calls["n"] >= 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(bertkit.modeling.model.PretrainingObjective, "forward", poisoned)
    message = _one_line_error(_pretrain(tmp_path, run, "train.max_steps=8", "train.save_every=2"))
    assert "NaN or infinite by step 3" in message  # the third step's loss
    checkpoints = tmp_path / "pretrain" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["step-2"]  # from before the NaN, and finite
    weights = load_file(checkpoints / "step-2" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (tmp_path / "pretrain" / "model.safetensors").exists()


def test_corrupt_checkpoint_and_model_are_clear_errors(run, tmp_path):
    assert _pretrain(tmp_path, run, "train.max_steps=2", "train.save_every=1").exit_code == 0
    state = tmp_path / "pretrain" / "checkpoints" / "step-2" / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    message = _one_line_error(_pretrain(tmp_path, run, "train.max_steps=4", "train.resume=auto"))
    assert "step-2: checkpoint is unreadable" in message
    weights = tmp_path / "pretrain" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    message = _one_line_error(
        run_cli(
            "eval",
            RECIPE,
            f"output_dir={tmp_path}",
            f"data.dataset_dir={run / 'data'}",
            f"eval.model_dir={tmp_path / 'pretrain'}",
        )
    )
    assert "cannot load the model" in message


def test_a_bin_of_tensors_loads_through_the_weights_only_unpickler(run, tmp_path):
    """Older checkpoints on the Hub are pytorch_model.bin only: they load by default, without the full unpickler
    (a .bin that needs it is refused: tests/test_hub.py)."""
    from transformers import BertForPreTraining

    assert _pretrain(tmp_path, run, "train.max_steps=1").exit_code == 0
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    model = BertForPreTraining.from_pretrained(tmp_path / "pretrain")
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (pickled / name).write_bytes((tmp_path / "pretrain" / name).read_bytes())
    args = ["finetune", RECIPE, f"output_dir={tmp_path}", f"finetune.model_dir={pickled}", "finetune.train.epochs=1"]
    assert run_cli(*args).exit_code == 0


@pytest.mark.slow
def test_output_dir_holding_another_run(run, tmp_path):
    assert _pretrain(tmp_path, run, "train.max_steps=1").exit_code == 0
    message = _one_line_error(_pretrain(tmp_path, run, "train.max_steps=1"))
    assert "holds checkpoints of an earlier run (up to step-1)" in message
    assert _pretrain(tmp_path, run, "train.max_steps=2", "overwrite=true").exit_code == 0
    assert [p.name for p in (tmp_path / "pretrain" / "checkpoints").iterdir()] == ["step-2"]


def test_task_mistakes(run, tmp_path):
    base = ["finetune", RECIPE, f"output_dir={tmp_path}", f"finetune.model_dir={run / 'pretrain'}"]
    if not (run / "pretrain").exists():
        assert _pretrain(run, run, "train.max_steps=1").exit_code == 0
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"text": "新闻", "label": "体育"}\n{"text": "天气", "label": "天气"}\n', encoding="utf-8")
    message = _one_line_error(run_cli(*base, f"finetune.task.validation_file={dev}"))
    assert "dev.jsonl: label(s) '天气' not seen in training" in message
    message = _one_line_error(run_cli(*base, "finetune.task.max_seq_length=1000"))
    assert "exceeds the model's 64 positions" in message
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "a", "label": "b"}\n\xff\xfe\n')
    assert "not UTF-8" in _one_line_error(run_cli(*base, f"finetune.task.train_file={bad}"))


def test_fuzzed_corpus_bytes_never_crash_tokenize(tmp_path):
    rng = random.Random(0)
    runner = CliRunner()
    for case in range(12):
        corpus = tmp_path / f"c{case}.txt"
        chunks = [
            bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))),
            "中文句子。\n\n".encode() * rng.randint(0, 5),
            b"\n" * rng.randint(0, 3),
        ]
        rng.shuffle(chunks)
        corpus.write_bytes(b"".join(chunks))
        result = runner.invoke(
            app,
            [
                "tokenize",
                str(edited_recipe(RECIPE, SMALL)),
                f"output_dir={tmp_path / str(case)}",
                f"data.files={corpus}",
                "tokenizer.vocab_size=100",
                "data.num_proc=1",
                f"data.on_error={rng.choice(['skip', 'strict'])}",
            ],
        )
        assert result.exit_code in (0, 2), result.output
        assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
        if result.exit_code == 2:
            assert len(_errors(result)) == 1


def test_fuzzed_recipe_values_are_clean_errors(tmp_path):
    rng = random.Random(1)
    keys = [
        "train.lr",
        "train.max_steps",
        "data.files",
        "model.size",
        "masking.rate",
        "tokenizer.vocab_size",
        "finetune.task.type",
        "train.phases",
        "output_dir",
        "data.objective",
        "nonsense",
        "train",
    ]
    values = ["-1", "0", "1e999", "null", "[]", "{}", "[1, 2]", "{a: 1}", "'x'", "true", "3.5", "nan", "~", "]["]
    recipe = tmp_path / "r.yaml"
    for _ in range(300):
        overrides = [f"{rng.choice(keys)}={rng.choice(values)}" for _ in range(rng.randint(1, 3))]
        recipe.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))))
        for path in (None, recipe):
            try:
                load_recipe(path, overrides, rng.choice(list(RECIPES)))
            except BertkitError as e:
                assert "\n" not in str(e)


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run_cli("tokenize", RECIPE, "--debug", f"output_dir={tmp_path}", "data.files=missing.txt")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and result.stderr.rstrip().endswith(
        "error: missing.txt: no such file; check data.files in the recipe"
    )


@pytest.mark.slow
def test_resume_with_another_batch_size_accumulation_or_seed_is_refused(run, tmp_path):
    assert _pretrain(tmp_path, run, "train.max_steps=4", "train.save_every=2", "train.keep_last=5").exit_code == 0
    shutil.rmtree(tmp_path / "pretrain" / "checkpoints" / "step-4")
    for change, key in [
        ("train.batch_size=4", "data.dataset_dir batch size"),
        ("train.grad_accum=2", "train.grad_accum"),
        ("train.seed=1", "train.seed"),
    ]:
        message = _one_line_error(_pretrain(tmp_path, run, "train.max_steps=4", "train.resume=auto", change))
        assert f"saved with {key} = " in message and "step-2" in message
    assert _pretrain(tmp_path, run, "train.max_steps=4", "train.resume=auto").exit_code == 0


def test_non_finite_weights_never_reach_a_checkpoint(run, tmp_path, monkeypatch):
    """The update of step 4 makes a weight NaN; every loss so far was finite: what is saved is checked, not only
    the loss."""
    real = bertkit.commands.pretrain.make_optimizer
    calls = {"n": 0}

    def poisoning(model, cfg):
        optimizer = real(model, cfg)
        step = optimizer.step

        def poisoned_step(*args, **kwargs):
            out = step(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] == 4:
                with torch.no_grad():
                    model.model.bert.embeddings.word_embeddings.weight[0] = float("nan")
            return out

        optimizer.step = poisoned_step
        return optimizer

    monkeypatch.setattr(bertkit.commands.pretrain, "make_optimizer", poisoning)
    message = _one_line_error(_pretrain(tmp_path, run, "train.max_steps=6", "train.save_every=2"))
    assert "step-4: the weights became NaN or infinite (bert.embeddings.word_embeddings.weight)" in message
    checkpoints = tmp_path / "pretrain" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["step-2"]
    assert not (tmp_path / "pretrain" / "model.safetensors").exists()


def test_torch_save_failing_on_a_full_disk_is_one_line(run, tmp_path, monkeypatch):
    """torch.save reports a failed write as a RuntimeError that does not name ENOSPC."""

    def save(obj, path, *args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/3: "
            "file write failed"
        )

    monkeypatch.setattr(bertkit.training.checkpoint.torch, "save", save)
    message = _one_line_error(_pretrain(tmp_path, run, "train.max_steps=2", "train.save_every=2"))
    assert "no space left on device (or over the file size limit)" in message
    assert list((tmp_path / "pretrain" / "checkpoints").iterdir()) == []


@pytest.mark.slow
def test_a_file_size_limit_during_a_save_is_one_line(run, tmp_path):
    """A real `ulimit -f`: the writers fail with EFBIG, nothing half-written is left."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    cmd = [sys.executable, "-m", "bertkit", "pretrain", str(RECIPE), f"output_dir={tmp_path}"]
    cmd += [f"data.dataset_dir={run / 'data'}", "train.max_steps=2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "over the file size limit" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert list((tmp_path / "pretrain" / "checkpoints").iterdir()) == []


def _terminate_when(cmd, appeared, cwd=ROOT):
    """Run cmd, send SIGTERM once appeared() is true; returns (exit code, stderr)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not appeared() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.mark.slow
def test_sigterm_during_tokenize_leaves_nothing_behind(tmp_path):
    corpus = tmp_path / "corpus.txt"
    text = (DATA / "zh" / "corpus-a.txt").read_text(encoding="utf-8")
    corpus.write_text(text * 40, encoding="utf-8")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bertkit", "tokenize", str(RECIPE), f"output_dir={out}", f"data.files={corpus}"]
    cmd += ["tokenizer.vocab_size=300", "data.num_proc=2"]
    code, stderr = _terminate_when(cmd, lambda: out.is_dir() and any(out.glob(".data.*.tmp")))
    assert code == 143, stderr[-2000:]
    assert "stopped: SIGTERM" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("make", ["mkdtemp", "mkstemp"])
def test_a_signal_right_after_a_temporary_output_is_made_leaves_nothing(tmp_path, monkeypatch, make):
    """The kill tests' SIGTERM can land between making the temporary sibling and arming its clean-up (seen under
    load: a `.data.*.tmp` left behind); bertkit holds the signal until the clean-up is armed."""
    real = getattr(tempfile, make)

    def make_then_sigterm(*args, **kwargs):
        made = real(*args, **kwargs)
        signal.raise_signal(signal.SIGTERM)  # its handler runs at the next bytecode: here, before any try
        return made

    monkeypatch.setattr(tempfile, make, make_then_sigterm)
    writer = atomic_dir(tmp_path / "out") if make == "mkdtemp" else atomic_file(tmp_path / "out.txt")
    with pytest.raises(SystemExit) as stopped, reported(), writer:
        pytest.fail("the body runs after the signal")
    assert stopped.value.code == 143
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are back


@pytest.mark.slow
def test_sigterm_during_finetune_before_the_first_evaluation_saves_nothing(run, tmp_path):
    if not (run / "pretrain").exists():
        assert _pretrain(run, run, "train.max_steps=1").exit_code == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bertkit", "finetune", str(RECIPE), f"output_dir={out}"]
    cmd += [f"finetune.model_dir={run / 'pretrain'}", "finetune.train.epochs=50", "finetune.train.log_every=1"]
    staged = out / "finetune"
    code, stderr = _terminate_when(cmd, lambda: staged.is_dir() and any(p.read_text() for p in staged.rglob("*.jsonl")))
    assert code == 143, stderr[-2000:]
    message = [line for line in stderr.splitlines() if line.startswith("stopped: ")]
    assert len(message) == 1 and "before the first dev evaluation; no model was saved" in message[0], stderr[-2000:]
    assert not staged.exists()  # nor the dir it would have gone to
