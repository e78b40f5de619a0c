"""The last line of `make bench`: the issue-16 figures from the three benches' JSON files, and the machine.

e2e_fp32=… e2e_bf16=…       bertkit pretrain ÷ the HF Trainer recipe, real tokens/s (bench_e2e.py; smaller size)
overhead_fp32=… overhead_bf16=…  bertkit's step time ÷ its own matmul time, BERT-mini (bench_train.py)
infer=…                     bertkit eval ÷ transformers' pipeline defaults, end to end (bench_infer.py)
serve=… serve_rps=… serve_p99_ms=…  bertkit serve batched ÷ unbatched requests/s, 32 clients (bench_serve.py)

Reads bench/results.json, results-e2e.json, results-infer.json and results-serve.json, or those in --reports DIR
(where the benches' --out wrote them).
"""

import argparse
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_infer import cpu_name  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reports", type=Path, default=BENCH, help="the dir of the benches' JSON files (their --out), default bench/"
    )
    reports = parser.parse_args().reports
    step = json.loads((reports / "results.json").read_text())
    e2e = json.loads((reports / "results-e2e.json").read_text())
    infer = json.loads((reports / "results-infer.json").read_text())
    serve = {r["runner"]: r for r in json.loads((reports / "results-serve.json").read_text())["rows"]}
    batched, unbatched = (next(r for n, r in serve.items() if n.endswith(k)) for k in (", batched", ", unbatched"))
    mini = {r["variant"]: r for r in step["rows"] if r["size"] == "mini"}
    overhead = {
        p: mini[f"bertkit-{p}"]["s_per_step"] / mini[f"bertkit-{p}"]["matmul_s_per_step"] for p in ("fp32", "bf16")
    }
    ratio = {p: min(r["ratio"] for r in e2e["rows"] if r["precision"] == p) for p in PRECISIONS}
    speedups = [r["speedup_wall"] for r in infer["rows"] if r["runner"] == "bertkit eval fp32"]
    machine = cpu_name()
    print(f"machine: {machine}")
    print(
        f"e2e_fp32={ratio['fp32']:.2f} e2e_bf16={ratio['bf16']:.2f} overhead_fp32={overhead['fp32']:.2f} "
        f"overhead_bf16={overhead['bf16']:.2f} infer={min(speedups):.2f} "
        f"serve={batched['requests_per_s'] / unbatched['requests_per_s']:.2f} serve_rps={batched['requests_per_s']} "
        f"serve_p99_ms={batched['p99_ms']} "
        f"cpu={'no-AMX' if 'no AMX' in machine else 'AMX'}"
    )


if __name__ == "__main__":
    main()
