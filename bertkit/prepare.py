"""`bertkit tokenize`: raw corpus → WordPiece vocabulary + sentence-pair examples on disk.

    tokenizer_dir, dataset_dir = run_tokenize(load_recipe("recipes/demo-zh.yaml"))
    DatasetDict.load_from_disk(dataset_dir)["train"][0]   # input_ids, token_type_ids, word_ids, next_sentence_label

The dataset dir is self-contained: it holds its tokenizer (dataset_dir/tokenizer) and `bertkit_data.json`
(what made it and its statistics), so `bertkit pretrain` needs nothing else.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, Sequence, Value
from datasets.utils.logging import disable_progress_bar

from bertkit.atomic import atomic_dir
from bertkit.config import RunConfig, save_config
from bertkit.data.corpus import read_documents, resolve_files
from bertkit.data.pretraining import Sentence, Special, build_nsp_examples
from bertkit.errors import BertkitError
from bertkit.progress import progress
from bertkit.tokenizer.train import load_tokenizer, save_tokenizer, train_wordpiece
from bertkit.tokenizer.words import encode_with_words

METADATA_FILE = "bertkit_data.json"
TOKENIZER_SUBDIR = "tokenizer"
FEATURES = Features(
    {
        "input_ids": Sequence(Value("int32")),
        "token_type_ids": Sequence(Value("int8")),
        "word_ids": Sequence(Value("int16")),
        "next_sentence_label": Value("int8"),
    }
)
ENCODE_BATCH = 1000  # sentences per call into the Rust tokenizer


def split_documents(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Document indices for (train, validation); validation gets at least one document when asked for."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = min(n - 1, max(1, round(n * fraction))) if fraction > 0 and n > 1 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def tokenize_documents(tokenizer, documents: list[list[str]], segmenter: str) -> list[list[Sentence]]:
    """Token ids and word ids of every sentence, documents kept apart; empty sentences dropped."""
    flat = [s for doc in documents for s in doc]
    ids, words = [], []
    with progress(total=len(flat), desc="encode", unit="sent", leave=False) as bar:
        for start in range(0, len(flat), ENCODE_BATCH):
            batch_ids, batch_words = encode_with_words(tokenizer, flat[start : start + ENCODE_BATCH], segmenter)
            ids.extend(batch_ids)
            words.extend(batch_words)
            bar.update(len(batch_ids))
    out, k = [], 0
    for doc in documents:
        sentences = [Sentence(ids[k + j], words[k + j]) for j in range(len(doc)) if ids[k + j]]
        k += len(doc)
        if sentences:
            out.append(sentences)
    return out


def build_split(documents: list[list[Sentence]], cfg: RunConfig, special: Special, seed: int) -> Dataset:
    rng = random.Random(seed)
    examples = []
    for _ in range(cfg.data.dupe_factor):
        examples.extend(build_nsp_examples(documents, cfg.data.max_seq_length, cfg.data.short_seq_prob, rng, special))
    rng.shuffle(examples)
    columns = {name: [e[name] for e in examples] for name in FEATURES}
    return Dataset.from_dict(columns, features=FEATURES)


def run_tokenize(cfg: RunConfig) -> tuple[Path, Path]:
    """Train (or reuse) the tokenizer, build train/validation examples, save both. Returns their dirs."""
    disable_progress_bar()  # bertkit shows its own progress; datasets' per-shard bars are noise here
    files = resolve_files(cfg.data.files)
    documents = list(read_documents(files))
    if not documents:
        raise BertkitError(
            f"{', '.join(map(str, files))}: corpus holds no text; "
            "expected one sentence per line, a blank line between documents"
        )
    if cfg.tokenizer.from_dir:
        tokenizer = load_tokenizer(cfg.tokenizer.from_dir)
    else:
        print(f"training a WordPiece vocabulary of {cfg.tokenizer.vocab_size} on {len(files)} file(s)")
        tokenizer = train_wordpiece(
            (s for doc in documents for s in doc), cfg.tokenizer, model_max_length=cfg.model.max_position_embeddings
        )
    with atomic_dir(cfg.tokenizer_dir) as tmp:
        save_tokenizer(tokenizer, tmp)
        save_config(cfg, tmp)

    tokenized = tokenize_documents(tokenizer, documents, cfg.tokenizer.segmenter)
    train_idx, val_idx = split_documents(len(tokenized), cfg.data.validation_fraction, cfg.data.seed)
    special = Special(cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id)
    splits = DatasetDict(
        {
            "train": build_split([tokenized[i] for i in train_idx], cfg, special, cfg.data.seed),
            "validation": build_split([tokenized[i] for i in val_idx], cfg, special, cfg.data.seed + 1),
        }
    )
    if len(splits["train"]) == 0:
        raise BertkitError(
            f"{', '.join(map(str, files))}: too little text to build one sentence pair; "
            "a document needs at least two sentences or the corpus two documents"
        )

    n_tokens = {name: sum(map(len, split["input_ids"])) for name, split in splits.items()}
    unk = tokenizer.unk_token_id
    n_unk = sum(row.count(unk) for row in splits["train"]["input_ids"])
    metadata = {
        "objective": "nsp",
        "max_seq_length": cfg.data.max_seq_length,
        "vocab_size": len(tokenizer),
        "segmenter": cfg.tokenizer.segmenter,
        "files": [str(f) for f in files],
        "documents": {"train": len(train_idx), "validation": len(val_idx)},
        "sentences": sum(len(d) for d in tokenized),
        "examples": {name: len(split) for name, split in splits.items()},
        "tokens": n_tokens,
        "mean_length": round(n_tokens["train"] / len(splits["train"]), 2),
        "unk_rate": round(n_unk / max(1, n_tokens["train"]), 6),
    }
    with atomic_dir(cfg.dataset_dir) as tmp:
        splits.save_to_disk(str(tmp))
        save_tokenizer(tokenizer, tmp / TOKENIZER_SUBDIR)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False), encoding="utf-8")
        save_config(cfg, tmp)
    print(
        f"{metadata['documents']['train'] + metadata['documents']['validation']} documents, "
        f"{metadata['sentences']} sentences → {metadata['examples']['train']} train / "
        f"{metadata['examples']['validation']} validation examples, mean length {metadata['mean_length']}, "
        f"UNK rate {metadata['unk_rate']:.2%}"
    )
    return cfg.tokenizer_dir, cfg.dataset_dir


def load_pretraining_data(dataset_dir: Path) -> tuple[DatasetDict, dict]:
    """The examples and metadata written by `run_tokenize`; one clear error if the dir is not one."""
    dataset_dir = Path(dataset_dir)
    meta_path = dataset_dir / METADATA_FILE
    if not meta_path.is_file():
        raise BertkitError(
            f"{dataset_dir}: no pretraining data here ({METADATA_FILE} missing); "
            "run `bertkit tokenize` with this recipe first"
        )
    return DatasetDict.load_from_disk(str(dataset_dir)), json.loads(meta_path.read_text(encoding="utf-8"))
