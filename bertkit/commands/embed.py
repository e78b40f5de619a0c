"""`bertkit embed`: contextual embeddings of every text in a file.

    run_embed(load_recipe("recipes/demo-zh.yaml", ["embed.file=sentences.txt"], "embed"))  # embeddings.npy + index

Per sentence ([CLS], mean or max over its tokens) or per token (with the token strings and character offsets),
from one layer or the mean of several (0 = the embedding layer, L = the last; negative counts from the end).
Written as embeddings.npy plus index.jsonl. The features are bertkit/evaluation/features.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from bertkit.atomic import atomic_dir, check_apart, check_output, write_bytes, write_text
from bertkit.config import EmbedRecipe, save_config
from bertkit.errors import BertkitError
from bertkit.evaluation.features import embed_texts, load_encoder
from bertkit.tasks.common import column, read_rows
from bertkit.textfile import split_lines
from bertkit.training.runtime import run_state


def read_texts(path: Path, text_column: str) -> list[str]:
    """Texts of a plain file (one per non-empty line) or of a JSONL/JSON/CSV/TSV column."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".csv", ".tsv"):
        return [str(t) for t in column(read_rows(path), text_column, path, "embed.text_column")]
    if not path.is_file():
        raise BertkitError(f"{path}: no such file; check embed.file")
    try:
        # The output's rows match the file's lines: split_lines splits where the file's lines end, nothing else.
        texts = [line.strip() for line in split_lines(path.read_bytes().decode("utf-8")) if line.strip()]
    except UnicodeDecodeError:
        raise BertkitError(f"{path}: not UTF-8 text; convert the file to UTF-8") from None
    if not texts:
        raise BertkitError(f"{path}: holds no text; give one text per line, or a JSONL/CSV file with embed.text_column")
    return texts


def run_embed(cfg: EmbedRecipe) -> Path:
    """Embed every text of embed.file; the vectors and their index go to `<output_dir>/embed`."""
    out, model_dir, texts = setup(cfg)
    model, tokenizer, accelerator = load_encoder(model_dir, cfg.embed, cfg.allow_pickle_weights)
    e = cfg.embed
    with accelerator.autocast():
        vectors, index = embed_texts(model, tokenizer, texts, e.layers, e.pooling, e.max_seq_length, e.batch_size)
    for row in index:
        if "token" not in row:
            row["content"] = texts[row["text"]]
    return finish(cfg, out, vectors, index, run_state(accelerator), model_dir)


def setup(cfg: EmbedRecipe) -> tuple[Path, Path, list[str]]:
    """(output dir, model dir, the texts), checked before the model loads."""
    if cfg.embed.file is None:
        raise BertkitError("embed.file is not set; give a text file (one text per line) or a JSONL/CSV file")
    out = cfg.embed.output_dir or cfg.output_dir / "embed"
    model_dir = Path(cfg.embed.model_dir or cfg.pretrain_dir)
    check_apart({"embed.output_dir": out}, {"embed.model_dir": model_dir, "embed.file": cfg.embed.file})
    check_output(out, "embed.output_dir", cfg.overwrite)
    return out, model_dir, read_texts(cfg.embed.file, cfg.embed.text_column)


def finish(cfg: EmbedRecipe, out: Path, vectors, index: list[dict], resolved: dict, model_dir: Path) -> Path:
    """embeddings.npy and index.jsonl, written together or not at all."""
    buffer = io.BytesIO()
    np.save(buffer, vectors.astype(np.float32))
    with atomic_dir(out) as tmp:
        write_bytes(tmp / "embeddings.npy", buffer.getvalue())
        write_text(tmp / "index.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in index))
        save_config(cfg, tmp, resolved)
    what = "tokens" if cfg.embed.pooling == "none" else f"texts ({cfg.embed.pooling} pooling)"
    print(f"{vectors.shape[0]} {what} × {vectors.shape[1]} from layer(s) {cfg.embed.layers} of {model_dir}")
    print(f"embeddings: {out / 'embeddings.npy'}\nindex: {out / 'index.jsonl'}")
    return out
