"""A pretraining dataset on disk, as `bertkit tokenize` writes it and `bertkit pretrain` / `eval` read it.

    splits, meta = load_pretraining_data(Path("runs/demo-zh/data"))   # DatasetDict (train, validation), metadata
    tokenizer = load_tokenizer(dataset_dir / TOKENIZER_SUBDIR)

The dir is self-contained: the Arrow splits, its tokenizer (TOKENIZER_SUBDIR), METADATA_FILE (what made it:
objective, max_seq_length, vocabulary size, segmenter, files) and STATISTICS_FILE.
"""

from __future__ import annotations

import json
from pathlib import Path

from datasets import DatasetDict

from bertkit.data.pretraining import LABELLED
from bertkit.errors import BertkitError

METADATA_FILE = "bertkit_data.json"
STATISTICS_FILE = "statistics.json"
TOKENIZER_SUBDIR = "tokenizer"


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


def pair_objective(meta: dict) -> str | None:
    """The sentence-pair objective of a dataset's examples (nsp, sop), None for MLM only (packed)."""
    return meta["objective"] if meta["objective"] in LABELLED else None
