"""`make bench-data`: the whole `bertkit tokenize` stage against the tokenizer's own batch encoding.

For English and Chinese separately: generate a corpus of --mb MB from the shipped sample sentences (documents
of 4–12 random sentences), time the raw throughput of BertTokenizerFast batch-encoding its lines (what any
pipeline must at least pay), then run `bertkit tokenize` on it as a subprocess (vocabulary training, coverage
report, whole-word ids, NSP pairs, Arrow files) and measure its wall time and the peak resident memory of its
whole process tree. Prints a table, writes bench/results-data.json (--out), and ends with
`ratio_en=X.XX ratio_zh=Y.YY peak_rss_mb=N …` (ratio = bertkit MB/s ÷ raw MB/s, for building the examples
from a given vocabulary, as google-research/bert's create_pretraining_data.py takes a vocab file; the
`_with_vocab` ratios include training the vocabulary on the same corpus). Peak memory is the proportional set
size (PSS) of bertkit's whole process tree, so pages that forked workers share are counted once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {"en": ["data/en/corpus.txt"], "zh": ["data/zh/corpus-a.txt", "data/zh/corpus-b.txt"]}


def generate(lang: str, mb: float, path: Path, seed: int = 0) -> None:
    sentences = [s for f in SAMPLES[lang] for s in (ROOT / f).read_text(encoding="utf-8").splitlines() if s.strip()]
    rng = random.Random(seed)
    target, size = mb * 1e6, 0
    with open(path, "w", encoding="utf-8") as out:
        while size < target:
            doc = "\n".join(rng.choice(sentences) for _ in range(rng.randint(4, 12))) + "\n\n"
            out.write(doc)
            size += len(doc.encode())


def raw_encoding_mb_s(tokenizer_dir: Path, corpus: Path, max_mb: float) -> float:
    """MB/s of BertTokenizerFast(batch of 1000 lines) over the first max_mb of the corpus, all cores."""
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(tokenizer_dir)
    lines, size = [], 0
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(line.rstrip("\n"))
                size += len(line.encode())
                if size >= max_mb * 1e6:
                    break
    start = time.perf_counter()
    for i in range(0, len(lines), 1000):
        tok(lines[i : i + 1000])
    return size / 1e6 / (time.perf_counter() - start)


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and all its descendants: forked workers share pages with their
    parent, which a sum of RSS would count once per process."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024


def run_tokenize(lang: str, corpus: Path, out: Path, num_proc: int, *extra: str) -> tuple[float, float]:
    """(wall seconds, peak memory of the process tree in MB) of `bertkit tokenize` on the corpus."""
    recipe = ROOT / "recipes" / ("demo-zh.yaml" if lang == "zh" else "demo-en.yaml")
    cmd = [
        sys.executable,
        "-m",
        "bertkit",
        "tokenize",
        str(recipe),
        f"output_dir={out}",
        f"data.files={corpus}",
        "data.dupe_factor=1",
        f"data.num_proc={num_proc}",
        "tokenizer.vocab_size=21128",
        "overwrite=true",  # the second run (and a rerun of the bench) replaces the first's output
        *extra,
    ]
    peak = 0.0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, tree_pss_mb(proc.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    watcher.join()
    if proc.returncode:
        sys.exit(f"bertkit tokenize failed:\n{output}")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50, help="corpus size per language")
    parser.add_argument("--raw-mb", type=float, default=20, help="corpus MB that the raw encoding baseline times")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count())
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-data.json", help="the JSON report")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = {}
    for lang in ("en", "zh"):
        corpus = args.work / f"corpus-{lang}.txt"
        if not corpus.exists() or corpus.stat().st_size < args.mb * 1e6:
            generate(lang, args.mb, corpus)
        mb = corpus.stat().st_size / 1e6
        # With vocabulary training, then the examples alone from that vocabulary (as create_pretraining_data.py
        # takes a vocab file): the raw encoding baseline is the bound of the second.
        full_s, full_peak = run_tokenize(lang, corpus, args.work / lang, args.num_proc)
        vocab = args.work / f"vocab-{lang}"
        shutil.rmtree(vocab, ignore_errors=True)
        shutil.copytree(args.work / lang / "tokenizer", vocab)
        seconds, peak = run_tokenize(lang, corpus, args.work / lang, args.num_proc, f"tokenizer.from_dir={vocab}")
        raw = raw_encoding_mb_s(vocab, corpus, args.raw_mb)
        stats = json.loads((args.work / lang / "data" / "statistics.json").read_text())
        rows[lang] = {
            "corpus_mb": round(mb, 1),
            "with_vocab_training_s": round(full_s, 1),
            "bertkit_s": round(seconds, 1),
            "bertkit_mb_s": round(mb / seconds, 3),
            "raw_encode_mb_s": round(raw, 3),
            "ratio": round(mb / seconds / raw, 3),
            "ratio_with_vocab_training": round(mb / full_s / raw, 3),
            "peak_memory_mb": round(max(peak, full_peak)),
            "examples": stats["train"]["examples"] + stats["validation"]["examples"],
            "tokens": stats["train"]["tokens"] + stats["validation"]["tokens"],
        }
    print(f"\nbertkit tokenize vs BertTokenizerFast batch encoding, {args.num_proc} processes, {os.cpu_count()} cores")
    header = ["lang", "MB", "+vocab s", "examples s", "MB/s", "raw MB/s", "ratio", "ratio+vocab", "peak MB", "examples"]
    print("  ".join(f"{h:>11}" for h in header))
    for lang, r in rows.items():
        values = [
            lang,
            r["corpus_mb"],
            r["with_vocab_training_s"],
            r["bertkit_s"],
            r["bertkit_mb_s"],
            r["raw_encode_mb_s"],
            r["ratio"],
            r["ratio_with_vocab_training"],
            r["peak_memory_mb"],
            r["examples"],
        ]
        print("  ".join(f"{v:>11}" for v in values))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    peak = max(r["peak_memory_mb"] for r in rows.values())
    print(
        f"ratio_en={rows['en']['ratio']:.2f} ratio_zh={rows['zh']['ratio']:.2f} peak_rss_mb={peak} "
        f"ratio_en_with_vocab={rows['en']['ratio_with_vocab_training']:.2f} "
        f"ratio_zh_with_vocab={rows['zh']['ratio_with_vocab_training']:.2f}"
    )


if __name__ == "__main__":
    main()
