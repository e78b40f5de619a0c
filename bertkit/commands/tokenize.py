"""`bertkit tokenize`: raw corpus → WordPiece vocabulary + pretraining examples on disk, streamed and parallel.

    tokenizer_dir, dataset_dir = run_tokenize(load_recipe("recipes/demo-zh.yaml"))
    DatasetDict.load_from_disk(dataset_dir)["train"][0]   # input_ids, token_type_ids, word_ids, next_sentence_label

The corpus is read as a stream and cut into chunks of about `data.chunk_kb` (1 MB) of whole documents; worker
processes turn each chunk into examples (random-next segments come from other documents of the same chunk) and
the main process appends them to an Arrow file per split, saved at the end as a `datasets` DatasetDict. Each
chunk's randomness is seeded by its index, so the output is the same whatever `data.num_proc` is, and memory
does not grow with the corpus. Under `torchrun` / `accelerate launch` (several processes, many nodes) each rank
encodes a consecutive share of the chunks into its own Arrow shard (on a shared filesystem), and rank 0 saves
the shards in rank order: one process's output.

The dataset dir is self-contained: its tokenizer (dataset_dir/tokenizer), `bertkit_data.json` (what made it)
and `statistics.json`, so `bertkit pretrain` needs nothing else.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import os
import random
import shutil
import signal
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict, Features, Sequence, Value, concatenate_datasets
from datasets.arrow_writer import ArrowWriter
from datasets.utils.logging import disable_progress_bar
from transformers import PreTrainedTokenizerBase

from bertkit.atomic import atomic_dir, check_apart, check_output, write_text
from bertkit.config import TokenizeRecipe, save_config
from bertkit.data.corpus import ReadReport, Source, read_documents, resolve_files, total_bytes
from bertkit.data.dataset import METADATA_FILE, STATISTICS_FILE, TOKENIZER_SUBDIR
from bertkit.data.pretraining import BUILDERS, LABELLED, Sentence, Special, word_ids_from_starts
from bertkit.errors import BertkitError, DeferredSignals
from bertkit.progress import progress
from bertkit.textfile import split_lines
from bertkit.tokenizer.train import load_tokenizer, save_tokenizer, train_wordpiece
from bertkit.tokenizer.vocabulary import add_words, frequent_split_words
from bertkit.tokenizer.words import encode_with_words, segmenter
from bertkit.training.runtime import launch

SPLITS = ("train", "validation")
ENCODE_BATCH = 4000  # sentences per call into the Rust tokenizer
RANK_SHARDS = "rank-shards"  # where the ranks write their examples, inside the dataset dir until saved
WORD_STATS_SENTENCES = 200  # sentences per chunk sampled for the Chinese word statistics
COVERAGE_SENTENCES = 5000  # sentences sampled for the vocabulary coverage report
FREQUENT_WORDS_SENTENCES = 200_000  # sentences counted for tokenizer.add_frequent_words


def features(objective: str) -> Features:
    columns = {
        "input_ids": Sequence(Value("int32")),
        "token_type_ids": Sequence(Value("int8")),
        "word_ids": Sequence(Value("int16")),
    }
    if objective in LABELLED:
        columns["next_sentence_label"] = Value("int8")
    return Features(columns)


def split_documents(n: int, fraction: float, rng: random.Random) -> tuple[list[int], list[int]]:
    """Document indices for (train, validation); validation gets at least one document when asked for."""
    order = list(range(n))
    rng.shuffle(order)
    n_val = min(n - 1, max(1, round(n * fraction))) if fraction > 0 and n > 1 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def _is_cjk(char: str) -> bool:
    return "CJK" in unicodedata.name(char, "")


def chinese_word_counts(pieces: Iterable[str]) -> tuple[int, int]:
    """(Chinese words, of which multi-character) among segmenter pieces."""
    words = [p for p in pieces if _is_cjk(p[0])]
    return len(words), sum(len(p) > 1 for p in words)


# Per-process state of the encoding workers, set once by _init_worker.
_WORKER: dict = {}


def _init_worker(tokenizer, cfg: TokenizeRecipe) -> None:
    _WORKER["tokenizer"] = tokenizer  # forked workers get the parent's object as it is, no file to read
    _WORKER["cut"] = segmenter(cfg.tokenizer.segmenter, cfg.tokenizer.user_dict)
    _WORKER["cfg"] = cfg


@dataclass
class ChunkResult:
    tables: dict[str, pa.Table]  # split → examples
    stats: Counter
    size: int  # bytes of text read for the chunk


def _tokenize(documents: list[list[str]]) -> tuple[list[list[Sentence]], Counter]:
    tokenizer, cut = _WORKER["tokenizer"], _WORKER["cut"]
    flat = [s for doc in documents for s in doc]
    ids, starts = [], []
    for start in range(0, len(flat), ENCODE_BATCH):
        batch_ids, batch_starts = encode_with_words(tokenizer, flat[start : start + ENCODE_BATCH], cut)
        ids.extend(batch_ids)
        starts.extend(batch_starts)
    stats = Counter(documents=len(documents), sentences=len(flat))
    if cut is not None:
        zh_words, zh_multi = chinese_word_counts(p for s in flat[:WORD_STATS_SENTENCES] for p in cut(s))
        stats.update(zh_words=zh_words, zh_multi_char_words=zh_multi)
    out, k = [], 0
    for doc in documents:
        sentences = [Sentence(ids[k + j], starts[k + j]) for j in range(len(doc)) if ids[k + j]]
        k += len(doc)
        if sentences:
            out.append(sentences)
    return out, stats


def _list_column(rows: list[list[int]], lengths: np.ndarray, dtype) -> tuple[np.ndarray, pa.ListArray]:
    values = np.fromiter(chain.from_iterable(rows), dtype=dtype, count=int(lengths.sum()))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return values, pa.ListArray.from_arrays(offsets, values)


def _table(examples: list[dict], schema: Features) -> tuple[pa.Table, np.ndarray]:
    """Examples as an Arrow table (word-start flags become word ids), built from flat arrays; and the flat
    input ids (for statistics)."""
    lengths = np.fromiter((len(e["input_ids"]) for e in examples), dtype=np.int64, count=len(examples))
    ids, ids_column = _list_column([e["input_ids"] for e in examples], lengths, np.int32)
    _, types = _list_column([e["token_type_ids"] for e in examples], lengths, np.int8)
    starts, _ = _list_column([e["word_starts"] for e in examples], lengths, np.int8)
    offsets = types.offsets
    columns = {
        "input_ids": ids_column,
        "token_type_ids": types,
        "word_ids": pa.ListArray.from_arrays(offsets, word_ids_from_starts(starts, lengths).astype(np.int16)),
    }
    if "next_sentence_label" in schema:
        columns["next_sentence_label"] = pa.array([e["next_sentence_label"] for e in examples], type=pa.int8())
    return pa.Table.from_pydict(columns, schema=schema.arrow_schema), ids


def process_chunk(index: int, documents: list[list[str]], size: int) -> ChunkResult:
    """Examples of one chunk of documents; a pure function of (index, documents) and the config."""
    cfg = _WORKER["cfg"]
    data = cfg.data
    rng = random.Random(data.seed * 1_000_003 + index)
    tokenized, stats = _tokenize(documents)
    tokenizer = _WORKER["tokenizer"]
    special = Special(cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id)
    build, schema = BUILDERS[data.objective], features(data.objective)
    tables = {}
    for split, indices in zip(SPLITS, split_documents(len(tokenized), data.validation_fraction, rng), strict=True):
        docs = [tokenized[i] for i in indices]
        examples = []
        for _ in range(data.dupe_factor):
            examples.extend(build(docs, data.max_seq_length, data.short_seq_prob, rng, special))
        rng.shuffle(examples)
        tables[split], ids = _table(examples, schema)
        stats[f"{split}_documents"] += len(docs)
        stats[f"{split}_examples"] += len(examples)
        stats[f"{split}_tokens"] += len(ids)
        stats[f"{split}_unk"] += int((ids == tokenizer.unk_token_id).sum())
        if data.objective in LABELLED:
            stats[f"{split}_label_1"] += sum(e["next_sentence_label"] for e in examples)
    return ChunkResult(tables, stats, size)


def _chunks(
    documents: Iterator[list[str]], report: ReadReport, chunk_bytes: int
) -> Iterator[tuple[int, list[list[str]], int]]:
    """(index, documents, bytes) of about `chunk_bytes` each; at least two documents, so random-next has a
    choice."""
    chunk, start_bytes, index = [], 0, 0
    for document in documents:
        chunk.append(document)
        if report.bytes_read - start_bytes >= chunk_bytes and len(chunk) >= 2:
            yield index, chunk, report.bytes_read - start_bytes
            chunk, start_bytes, index = [], report.bytes_read, index + 1
    if chunk:
        yield index, chunk, report.bytes_read - start_bytes


def map_ordered(
    fn: Callable, items: Iterable[tuple], num_proc: int, initializer: Callable, initargs: tuple
) -> Iterator:
    """fn(*item) for every item, results in input order; with num_proc > 1 in forked worker processes, with
    at most 2 items per worker in flight so memory stays bounded."""
    if num_proc == 1:
        initializer(*initargs)
        for item in items:
            yield fn(*item)
        return
    # Each worker runs the Rust tokenizer single-threaded; forked children must not inherit its thread pool.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # A signal handled while os.fork runs its at-fork hooks would be swallowed ("Exception ignored"): it is only
    # noted until the workers exist, then raised inside `with pool`, which stops them.
    signals = DeferredSignals()
    try:
        pool = multiprocessing.get_context("fork").Pool(num_proc, _start_worker, (initializer, initargs, signals))
    except BaseException:
        signals.release()
        raise
    with pool:
        signals.release()
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, item))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _start_worker(initializer: Callable, initargs: tuple, signals: DeferredSignals) -> None:
    # The pool stops its workers with SIGTERM: they must not inherit the CLI's handler (errors.reported), and a
    # worker forked after a signal was noted is not needed.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if signals.noted:
        os._exit(0)
    initializer(*initargs)


def coverage(tokenizer, sentences: list[str]) -> dict:
    """UNK rate on sample sentences and the characters of the sample the vocabulary cannot represent."""
    backend = tokenizer.backend_tokenizer
    unk = tokenizer.unk_token_id
    encodings = backend.encode_batch(sentences, add_special_tokens=False)
    n_tokens = sum(len(e.ids) for e in encodings)
    n_unk = sum(e.ids.count(unk) for e in encodings)
    chars = Counter(c for s in sentences for c in s if not c.isspace())
    distinct = list(chars)
    dropped = {
        c: chars[c]
        for c, e in zip(distinct, backend.encode_batch(distinct, add_special_tokens=False), strict=True)
        if unk in e.ids
    }
    top = sorted(dropped.items(), key=lambda kv: -kv[1])[:20]
    return {
        "sample_sentences": len(sentences),
        "unk_rate": n_unk / max(1, n_tokens),
        "characters_seen": len(chars),
        "characters_dropped": len(dropped),
        "dropped_share": sum(dropped.values()) / max(1, sum(chars.values())),
        "most_frequent_dropped": "".join(c for c, _ in top),
    }


def _training_sentences(files: list[Path], cfg: TokenizeRecipe) -> Iterator[str]:
    """The sentences of the corpus' first `tokenizer.train_sample_mb` MB."""
    report = ReadReport()
    limit = cfg.tokenizer.train_sample_mb * 1e6 if cfg.tokenizer.train_sample_mb else float("inf")
    for document in read_documents(files, cfg.data, report):
        yield from document
        if report.bytes_read >= limit:
            return


def _extended(tokenizer, files, cfg: TokenizeRecipe):
    """The tokenizer with tokenizer.add_words, add_words_file and add_frequent_words added
    (bertkit/tokenizer/vocabulary.py)."""
    t = cfg.tokenizer
    words = list(t.add_words)
    if t.add_words_file:
        try:
            lines = split_lines(t.add_words_file.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError) as e:
            raise BertkitError(
                f"{t.add_words_file}: cannot read tokenizer.add_words_file ({e}); give a UTF-8 file, one word per line"
            ) from None
        for n, word in enumerate(lines, 1):  # as add_words' check: a spaced entry could never match
            if any(c.isspace() for c in word.strip()):
                raise BertkitError(
                    f"{t.add_words_file}:{n}: {word.strip()!r} holds whitespace; a vocabulary entry is one word "
                    "without spaces, one a line"
                )
        words += lines
    if t.add_frequent_words:
        cut = segmenter(t.segmenter, t.user_dict)
        if cut is None:
            raise BertkitError(
                "tokenizer.add_frequent_words needs a segmenter to find words; set tokenizer.segmenter=rjieba"
            )
        sample = _sample(files, cfg, FREQUENT_WORDS_SENTENCES)
        words += frequent_split_words(tokenizer, sample, cut, t.add_frequent_words, t.min_frequency)
    if not words:
        return tokenizer
    extended = add_words(tokenizer, words)
    new = extended.convert_ids_to_tokens(list(range(len(tokenizer), len(extended))))
    shown = ", ".join(new[:10]) + (", …" if len(new) > 10 else "")
    print(f"vocabulary extended by {len(new)} words after its {len(tokenizer)} tokens: {shown}")
    return extended


def _sample(files, cfg: TokenizeRecipe, n: int) -> list[str]:
    out = []
    for document in read_documents(files, cfg.data, ReadReport()):
        out.extend(document[: n - len(out)])
        if len(out) >= n:
            break
    return out


def statistics(totals: Counter, cfg: TokenizeRecipe, report: ReadReport, cover: dict) -> dict:
    stats: dict = {
        "megabytes": round(report.bytes_read / 1e6, 3),
        "documents": totals["documents"],
        "sentences": totals["sentences"],
    }
    for split in SPLITS:
        examples, tokens = totals[f"{split}_examples"], totals[f"{split}_tokens"]
        stats[split] = {
            "documents": totals[f"{split}_documents"],
            "examples": examples,
            "tokens": tokens,
            "mean_length": round(tokens / max(1, examples), 2),
            "padding_fraction": round(1 - tokens / max(1, examples * cfg.data.max_seq_length), 4),
            "unk_rate": round(totals[f"{split}_unk"] / max(1, tokens), 6),
        }
        if cfg.data.objective in LABELLED:
            stats[split]["label_1_share"] = round(totals[f"{split}_label_1"] / max(1, examples), 4)
    if totals["zh_words"]:
        stats["zh_multi_char_word_share"] = round(totals["zh_multi_char_words"] / totals["zh_words"], 4)
    stats["vocabulary_coverage"] = cover
    stats["skipped_lines"] = dict(report.skipped)
    stats["first_skipped"] = report.first_skipped
    return stats


class Ranks:
    """The processes of a tokenize run: one, or those of `torchrun` / `accelerate launch` (RANK, WORLD_SIZE),
    joined in a gloo process group. Rank 0 makes the tokenizer and publishes the output; every rank encodes its
    own share of the chunks into its own Arrow shard of the output, which must be on a shared filesystem."""

    def __init__(self):
        self.rank, self.world = launch()
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo")
            self.dist = dist

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, value):
        """Rank 0's `value`, on every rank."""
        if self.world == 1:
            return value
        box = [value]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def wait(self) -> None:
        """Until every rank is here (rank 0 after publishing the output)."""
        if self.world > 1:
            self.dist.barrier()

    def gather(self, value) -> list:
        """Every rank's `value`, in rank order."""
        if self.world == 1:
            return [value]
        out = [None] * self.world
        self.dist.all_gather_object(out, value)
        return out


def count_chunks(files, cfg: TokenizeRecipe, report: ReadReport) -> int:
    """The number of chunks _chunks cuts the corpus into (a read without encoding)."""
    return sum(1 for _ in _chunks(read_documents(files, cfg.data, report), report, cfg.data.chunk_kb * 1000))


def _shard_name(rank: int, world: int) -> str:
    return f"data-{rank:05d}-of-{world:05d}.arrow"


def save_examples(out: Path, per_rank: list[Counter]) -> None:
    """The ranks' shards of each split under out/RANK_SHARDS, in rank order, saved into `out` as one
    DatasetDict (what load_from_disk reads; as many Arrow files as ranks wrote examples), then removed.
    Empty shards and splits (validation_fraction=0) are left out: datasets cannot load an empty one."""
    world = len(per_rank)
    splits, num_shards = {}, {}
    for split in SPLITS:
        written = [r for r in range(world) if per_rank[r][f"{split}_examples"]]
        if written:
            shards = [Dataset.from_file(str(out / RANK_SHARDS / split / _shard_name(r, world))) for r in written]
            # Memory-mapped, read once by the save; concatenation fixes the format's columns, which a split of
            # one Arrow file leaves open (new columns that a `map` adds show too).
            splits[split] = concatenate_datasets(shards).with_format(None)
            num_shards[split] = len(written)
    DatasetDict(splits).save_to_disk(str(out), num_shards=num_shards)
    shutil.rmtree(out / RANK_SHARDS)


@dataclass
class Setup:
    """What set-up decides and the encoding and the finish use."""

    ranks: Ranks
    files: list[Source]  # the corpus' files (local or remote) and data sets
    size: int | None  # bytes of the corpus; None: a data set is streamed, size unknown
    tokenizer: PreTrainedTokenizerBase
    cover: dict | None  # the vocabulary coverage report, rank 0's alone
    chunks: tuple[int, int | None]  # [first, stop) of the corpus' chunks that this rank encodes
    report: ReadReport | None  # with several ranks, rank 0's read of the whole corpus (each encodes a share)


def run_tokenize(cfg: TokenizeRecipe) -> tuple[Path, Path]:
    """Train (or reuse) the tokenizer, build train/validation examples, save both. Returns their dirs. Under
    torchrun / accelerate launch each process encodes its share of the chunks (Ranks); the output is the same
    as one process's."""
    run = setup(cfg)
    ranks = run.ranks
    # The tokenizer dir is published only once the examples are complete, so the two are replaced together.
    with atomic_dir(cfg.dataset_dir) if ranks.main else contextlib.nullcontext() as out:
        out = Path(ranks.share(str(out)))  # rank 0's temporary dir, where every rank writes its shard
        totals, read = encode(cfg, run, out)
        per_rank = ranks.gather(totals)  # each rank's statistics, its shards' example counts among them
        if ranks.main:
            report = read if run.report is None else run.report
            stats = finish(cfg, run, out, per_rank, report)
    ranks.wait()
    if ranks.main:
        _print_summary(stats, report)
    return cfg.tokenizer_dir, cfg.dataset_dir


def setup(cfg: TokenizeRecipe) -> Setup:
    """The checks, the tokenizer (made by rank 0, shared with the others) and this rank's share of the chunks."""
    disable_progress_bar()  # bertkit shows its own progress; datasets' per-shard bars are noise here
    ranks = Ranks()
    files = resolve_files(cfg.data.files)
    dataset_key = "data.dataset_dir" if cfg.data.dataset_dir else "output_dir"
    check_apart(
        {"output_dir": cfg.tokenizer_dir, dataset_key: cfg.dataset_dir},
        {"tokenizer.from_dir": cfg.tokenizer.from_dir, "tokenizer.user_dict": cfg.tokenizer.user_dict}
        | {f"data.files ({f})": f for f in files if isinstance(f, Path)},
    )
    check_output(cfg.tokenizer_dir, "output_dir", cfg.overwrite)
    check_output(cfg.dataset_dir, dataset_key, cfg.overwrite)
    size = total_bytes(files)
    if next(read_documents(files, cfg.data), None) is None:
        raise BertkitError(
            f"{', '.join(map(str, files))}: corpus holds no text; "
            "expected one sentence per line, a blank line between documents"
        )
    tokenizer = cover = n_chunks = report = None
    if ranks.main:
        tokenizer = _tokenizer(files, size, cfg)
        cover = coverage(tokenizer, _sample(files, cfg, COVERAGE_SENTENCES))
        if ranks.world > 1:
            # Several ranks take consecutive runs of chunks, so that their shards in rank order are one
            # process's output: they need the count first.
            report = ReadReport()
            n_chunks = count_chunks(files, cfg, report)
    tokenizer, n_chunks = ranks.share((tokenizer, n_chunks))
    chunks = (
        (0, None)
        if n_chunks is None
        else (n_chunks * ranks.rank // ranks.world, n_chunks * (ranks.rank + 1) // ranks.world)
    )
    return Setup(ranks, files, size, tokenizer, cover, chunks, report)


def encode(cfg: TokenizeRecipe, run: Setup, out: Path) -> tuple[Counter, ReadReport]:
    """This rank's share of the chunks, encoded by worker processes into its Arrow shard of each split under
    out/RANK_SHARDS; its statistics, and its read of the corpus."""
    ranks = run.ranks
    schema = features(cfg.data.objective)
    writers = {}
    for split in SPLITS:
        (out / RANK_SHARDS / split).mkdir(parents=True, exist_ok=True)
        path = out / RANK_SHARDS / split / _shard_name(ranks.rank, ranks.world)
        writers[split] = ArrowWriter(features=schema, path=str(path))
    read = ReadReport()
    chunks = _chunks(read_documents(run.files, cfg.data, read), read, cfg.data.chunk_kb * 1000)
    chunks = itertools.islice(chunks, *run.chunks)
    num_proc = cfg.data.num_proc or os.cpu_count() or 1
    totals = Counter()
    # Compressed input reads more bytes than its size on disk: the total is only a guide there.
    bar = progress(
        total=run.size, unit="B", unit_scale=True, unit_divisor=1000, desc="tokenize", disable=not ranks.main
    )
    worker_args = (run.tokenizer, cfg)
    # closing(): on an error or a signal the workers stop before the temporary dir they read is removed.
    with contextlib.closing(map_ordered(process_chunk, chunks, num_proc, _init_worker, worker_args)) as results:
        for result in results:
            for split, table in result.tables.items():
                writers[split].write_table(table)
            totals.update(result.stats)
            bar.update(result.size)
            bar.set_postfix(examples=totals["train_examples"] + totals["validation_examples"])
    bar.close()
    for writer in writers.values():
        writer.finalize()
    return totals, read


def finish(cfg: TokenizeRecipe, run: Setup, out: Path, per_rank: list[Counter], report: ReadReport) -> dict:
    """Rank 0, once every rank has encoded its share: the examples saved as one dataset beside the tokenizer,
    metadata and statistics in `out`, and the tokenizer dir published. Returns the statistics."""
    totals = sum(per_rank, Counter())
    if totals["train_examples"] == 0:
        raise BertkitError(
            f"{', '.join(map(str, run.files))}: too little text to build one example; "
            "a document needs at least two sentences or the corpus two documents"
        )
    save_examples(out, per_rank)
    save_tokenizer(run.tokenizer, out / TOKENIZER_SUBDIR)
    stats = statistics(totals, cfg, report, run.cover)
    metadata = {
        "objective": cfg.data.objective,
        "max_seq_length": cfg.data.max_seq_length,
        "vocab_size": len(run.tokenizer),
        "segmenter": cfg.tokenizer.segmenter,
        "user_dict": str(cfg.tokenizer.user_dict) if cfg.tokenizer.user_dict else None,
        "word_ids": "per token: tokens of one whole word share an id (0.. in order); -1 on special tokens",
        "files": [str(f) for f in run.files],
    }
    write_text(out / METADATA_FILE, json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    write_text(out / STATISTICS_FILE, json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    save_config(cfg, out)
    with atomic_dir(cfg.tokenizer_dir) as tmp:
        save_tokenizer(run.tokenizer, tmp)
        save_config(cfg, tmp)
    return stats


def _tokenizer(files, size: int | None, cfg: TokenizeRecipe):
    """The run's tokenizer: tokenizer.from_dir's or one trained on the corpus, extended as the recipe says."""
    if cfg.tokenizer.from_dir:
        tokenizer = load_tokenizer(cfg.tokenizer.from_dir)
        # A vocab.txt-only dir (many releases) gives transformers' "no limit" (1e30): the model's positions are.
        if tokenizer.model_max_length > 1e9:
            tokenizer.model_max_length = cfg.model.max_position_embeddings
    else:
        mb = min(size / 1e6 if size is not None else float("inf"), cfg.tokenizer.train_sample_mb or float("inf"))
        amount = f"{mb:.1f} MB" if mb < float("inf") else "all"
        print(f"training a WordPiece vocabulary of {cfg.tokenizer.vocab_size} on {amount} of {len(files)} source(s)")
        tokenizer = train_wordpiece(
            lambda: _training_sentences(files, cfg), cfg.tokenizer, model_max_length=cfg.model.max_position_embeddings
        )
    return _extended(tokenizer, files, cfg)


def _print_summary(stats: dict, report: ReadReport) -> None:
    train, val, cover = stats["train"], stats["validation"], stats["vocabulary_coverage"]
    print(
        f"{stats['documents']} documents, {stats['sentences']} sentences, {stats['megabytes']} MB → "
        f"{train['examples']} train / {val['examples']} validation examples, mean length {train['mean_length']}, "
        f"UNK rate {train['unk_rate']:.3%}"
    )
    dropped = cover["most_frequent_dropped"]
    print(
        f"vocabulary coverage: UNK rate {cover['unk_rate']:.3%} on {cover['sample_sentences']} sample sentences, "
        f"{cover['characters_dropped']} of {cover['characters_seen']} characters not representable"
        + (f" (most frequent: {dropped})" if dropped else "")
    )
    if report.summary():
        print(report.summary())
