"""Nothing a user owns is ever replaced or deleted: every place a command writes, with and without overwrite.

A "user dir" full of files is put where a command would write; the command must refuse with one line, and every
file must still be there, byte-identical. bertkit's own earlier outputs are replaced only with overwrite=true,
and a failed rerun leaves them as they were.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import DATA, RECIPE, ROOT, run_cli

import bertkit.commands.finetune
from bertkit.atomic import MARKER
from bertkit.errors import BertkitError


def _user_dir(path):
    """A dir of a user's files (nested, binary and text); returns its snapshot."""
    (path / "nested").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n")
    (path / "nested" / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (path / "config.json").write_text('{"mine": true}\n')
    return _snapshot(path)


def _snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _refused(result, *expected):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


# (command, the key that sets the output, where the output lands relative to output_dir, extra overrides)
TARGETS = [
    ("tokenize", "output_dir", "tokenizer", []),
    ("tokenize", "output_dir", "data", []),
    ("tokenize", "data.dataset_dir", "mine", ["data.dataset_dir={out}/mine"]),
    ("pretrain", "output_dir", "pretrain", ["data.dataset_dir={run}/data"]),
    ("finetune", "finetune.task.name", "finetune/topic", ["finetune.model_dir={run}/pretrain"]),
    ("eval", "eval.output_dir", "eval/topic", ["eval.model_dir={run}/finetune/topic"]),
    ("eval", "eval.output_dir", "mine", ["eval.model_dir={run}/finetune/topic", "eval.output_dir={out}/mine"]),
    ("embed", "embed.output_dir", "embed", ["embed.model_dir={run}/pretrain", "embed.file={data}/zh/topic/dev.jsonl"]),
    (
        "probe",
        "probe.output_dir",
        "probe",
        [
            "embed.model_dir={run}/pretrain",
            "probe.train_file={data}/zh/topic/train.jsonl",
            "probe.test_file={data}/zh/topic/dev.jsonl",
        ],
    ),
    ("export", "export.output_dir", "export/topic", ["export.model_dir={run}/finetune/topic"]),
]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("command,key,where,extra", TARGETS, ids=[f"{t[0]}-{t[2]}" for t in TARGETS])
def test_a_user_dir_where_a_command_writes_is_never_touched(tiny_run, tmp_path, command, key, where, extra, overwrite):
    run, overrides = tiny_run
    out = tmp_path / "out"
    before = _user_dir(out / where)
    fill = {"{out}": str(out), "{run}": str(run), "{data}": str(DATA)}
    extra = [e for e in extra]
    for i, e in enumerate(extra):
        for k, v in fill.items():
            e = e.replace(k, v)
        extra[i] = e
    base = [o for o in overrides if not o.startswith("output_dir=")]
    result = run_cli(command, RECIPE, *base, f"output_dir={out}", *extra, f"overwrite={str(overwrite).lower()}")
    _refused(result, key, "not written by bertkit")
    assert _snapshot(out / where) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no stray temp dirs beside it


def test_output_dir_dot_in_a_copy_of_the_repo_keeps_its_data(tmp_path, monkeypatch):
    """The reported repro: `bertkit tokenize recipes/pretrain/cpu-debug.yaml output_dir=.` replaced data/."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "data", repo / "data")
    shutil.copytree(ROOT / "recipes", repo / "recipes")
    before = _snapshot(repo)
    monkeypatch.chdir(repo)
    for overwrite in ("false", "true"):
        result = run_cli("tokenize", "recipes/pretrain/cpu-debug.yaml", "output_dir=.", f"overwrite={overwrite}")
        _refused(result, "output_dir")  # the corpus lies inside data/, and data/ is not bertkit's
    assert _snapshot(repo) == before


@pytest.mark.parametrize(
    "command,overrides,expected",
    [
        ("export", ["export.model_dir={run}/finetune/topic", "export.output_dir={run}/finetune/topic"], "overlaps"),
        ("export", ["export.model_dir={run}/finetune/topic", "export.output_dir={run}/finetune"], "export.output_dir"),
        ("finetune", ["finetune.model_dir={out}/finetune/topic"], "overlaps"),
        ("tokenize", ["data.dataset_dir={data}"], "overlaps"),
        ("tokenize", ["data.dataset_dir={out}/tokenizer"], "overlaps"),
        ("pretrain", ["data.dataset_dir={out}/pretrain/data"], "overlaps"),
    ],
)
def test_an_output_never_overlaps_an_input(tiny_run, tmp_path, command, overrides, expected):
    run, base = tiny_run
    out = tmp_path / "out"
    (out / "finetune").mkdir(parents=True)
    shutil.copytree(run / "finetune" / "topic", out / "finetune" / "topic")
    shutil.copytree(run / "data", out / "pretrain" / "data")
    (out / "pretrain" / MARKER).write_text("")
    watched = [run / "finetune", DATA, out]
    before = [_snapshot(p) for p in watched]
    fill = {"{out}": str(out), "{run}": str(run), "{data}": str(DATA)}
    args = []
    for o in overrides:
        for k, v in fill.items():
            o = o.replace(k, v)
        args.append(o)
    base = [o for o in base if not o.startswith("output_dir=")]
    _refused(run_cli(command, RECIPE, *base, f"output_dir={out}", *args, "overwrite=true"), expected)
    assert [_snapshot(p) for p in watched] == before


@pytest.mark.slow
def test_reruns_replace_bertkit_outputs_only_with_overwrite(tiny_run, tmp_path):
    run, base = tiny_run
    out = tmp_path / "out"
    base = [o for o in base if not o.startswith("output_dir=")]
    args = [*base, f"output_dir={out}"]
    assert run_cli("tokenize", RECIPE, *args).exit_code == 0
    before = _snapshot(out)
    _refused(run_cli("tokenize", RECIPE, *args), "holds an earlier bertkit output", "overwrite=true")
    assert _snapshot(out) == before
    assert run_cli("tokenize", RECIPE, *args, "overwrite=true", "tokenizer.vocab_size=1400").exit_code == 0
    assert _snapshot(out) != before and (out / "data" / MARKER).is_file() and (out / "tokenizer" / MARKER).is_file()

    ft = [*args, f"finetune.model_dir={run / 'pretrain'}"]
    assert run_cli("finetune", RECIPE, *ft).exit_code == 0
    model = out / "finetune" / "topic"
    before = _snapshot(model)
    assert {"metrics.jsonl", "bertkit.yaml", "model.safetensors", MARKER} <= set(before)
    _refused(run_cli("finetune", RECIPE, *ft), "finetune.task.name", "overwrite=true")
    assert _snapshot(model) == before
    assert run_cli("finetune", RECIPE, *ft, "overwrite=true", "finetune.train.seed=7").exit_code == 0
    assert _snapshot(model)["model.safetensors"] != before["model.safetensors"]
    assert (model / "model.safetensors").stat().st_mode & 0o777 == (model / "config.json").stat().st_mode & 0o777


@pytest.mark.slow
def test_a_failed_finetune_rerun_leaves_the_earlier_model_config_and_metrics(tiny_run, tmp_path, monkeypatch):
    run, base = tiny_run
    out = tmp_path / "out"
    base = [o for o in base if not o.startswith("output_dir=")]
    ft = [*base, f"output_dir={out}", f"finetune.model_dir={run / 'pretrain'}"]
    assert run_cli("finetune", RECIPE, *ft).exit_code == 0
    model = out / "finetune" / "topic"
    before = _snapshot(model)
    real_fit = bertkit.commands.finetune.fit

    def failing_fit(*args, **kwargs):
        real_fit(*args, **kwargs)  # trains, saves its best model and metrics into the staging dir …
        raise BertkitError("disk trouble")  # … and then fails

    monkeypatch.setattr(bertkit.commands.finetune, "fit", failing_fit)
    _refused(run_cli("finetune", RECIPE, *ft, "overwrite=true", "finetune.train.lr=1e-3"), "disk trouble")
    assert _snapshot(model) == before
    assert sorted(p.name for p in model.parent.iterdir()) == ["topic"]  # the staging dir is gone


def _pretrain_args(run, out, *extra):
    model = ["model.max_position_embeddings=64", "model.hidden_size=64", "model.num_hidden_layers=1"]
    return ["pretrain", str(RECIPE), f"output_dir={out}", f"data.dataset_dir={run / 'data'}", *model, *extra]


@pytest.mark.slow
def test_a_pretrain_rerun_keeps_the_earlier_model_until_it_finishes(tiny_run, tmp_path):
    """Issue 26: `overwrite=true` deleted the finished model before training started. Now the rerun trains in a
    staging dir beside it; a failure (an error, SIGKILL) leaves the earlier output byte-identical; the killed run
    continues with train.resume=auto and replaces it when it finishes."""
    import subprocess
    import sys
    import time

    from bertkit.training.checkpoint import checkpoint_dirs

    run, _ = tiny_run
    out = tmp_path / "out"
    common = ["train.batch_size=8", "train.eval_every=0"]
    assert run_cli(*_pretrain_args(run, out, *common, "train.max_steps=4")).exit_code == 0
    model = out / "pretrain"
    before = _snapshot(model)
    assert {"model.safetensors", "config.json", "metrics.jsonl", "README.md"} <= set(before)

    diverging = ["overwrite=true", "train.lr=1e30", "train.max_steps=3", "train.save_every=1"]
    assert run_cli(*_pretrain_args(run, out, *common, *diverging)).exit_code == 2
    assert _snapshot(model) == before

    long = [*common, "overwrite=true", "train.max_steps=100000", "train.max_time_minutes=5", "train.save_every=5"]
    killed = subprocess.Popen([sys.executable, "-m", "bertkit", *_pretrain_args(run, out, *long)])
    staged = out / ".pretrain.next"
    deadline = time.monotonic() + 120
    while not any(int(d.name[5:]) >= 5 for d in checkpoint_dirs(staged / "checkpoints")):  # not the error's step-1
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.1)
    killed.kill()  # SIGKILL: no handler runs
    killed.wait()
    assert _snapshot(model) == before

    resumed = run_cli(*_pretrain_args(run, out, *long, "train.resume=auto", "train.max_time_minutes=0.01"))
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming from {staged / 'checkpoints'}" in resumed.output
    assert _snapshot(model)["model.safetensors"] != before["model.safetensors"] and not staged.exists()


KILLED = [t for t in TARGETS if t[2] != "mine" and t[0] != "pretrain"]  # pretrain: its own test above


@pytest.mark.slow
@pytest.mark.parametrize("command,key,where,extra", KILLED, ids=[f"{t[0]}-{t[2]}" for t in KILLED])
def test_a_rerun_killed_while_writing_keeps_the_earlier_output(tiny_run, tmp_path, command, key, where, extra):
    """SIGKILL (no handler runs) at the moment the rerun's new output is being written into its temporary
    sibling: the earlier output is byte-identical, and the next rerun replaces it."""
    import subprocess
    import sys
    import time

    from conftest import edited_recipe

    run, overrides = tiny_run
    out = tmp_path / "out"
    fill = {"{out}": str(out), "{run}": str(run), "{data}": str(DATA)}
    for k, v in fill.items():
        extra = [e.replace(k, v) for e in extra]
    recipe = edited_recipe(RECIPE, [o for o in overrides if not o.startswith("output_dir=")])
    args = [sys.executable, "-m", "bertkit", command, str(recipe), f"output_dir={out}", *extra]
    if command == "finetune":
        args.append("finetune.train.max_steps=4")  # the write, not the training, is under test
    assert subprocess.run(args, capture_output=True).returncode == 0
    target = out / where
    before = _snapshot(target)
    rerun = subprocess.Popen([*args, "overwrite=true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Any output's temporary sibling: tokenize publishes its tokenizer only after the data, in a moment.
    while rerun.poll() is None and not list(out.rglob(".*.tmp")):
        time.sleep(0.005)
    rerun.kill()
    assert rerun.wait() == -9, "the rerun ended before its new output was being written"
    assert _snapshot(target) == before
    assert subprocess.run([*args, "overwrite=true"], capture_output=True).returncode == 0
