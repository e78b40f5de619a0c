"""`bertkit embed` and `bertkit probe`: what a BERT's layers hold.

    run_embed(load_recipe("recipes/demo-zh.yaml", ["embed.file=sentences.txt"]))   # embeddings.npy + index.jsonl
    run_probe(load_recipe("recipes/demo-zh.yaml", ["probe.train_file=…", "probe.test_file=…"]))

embed: contextual embeddings of every text in a file, per sentence ([CLS], mean or max over its tokens) or per
token (with the token strings and character offsets), from one layer or the mean of several (0 = the
embedding layer, L = the last; negative counts from the end). Written as embeddings.npy plus index.jsonl.

probe: for each layer, a logistic regression on frozen features of a labelled file — mean-pooled per sentence,
or per word (its first piece) for word labels such as POS tags — scored on a held-out file: a table,
probe.json and a plot of the score by layer, to check for yourself what Jawahar et al. (2019) found: surface
features low, syntax in the middle, semantics high. The features are bertkit/features.py, the probe
bertkit/probe.py (which pretraining also runs, with `probe.during_pretraining`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from transformers import BertModel

from bertkit.atomic import atomic_dir, check_apart, check_output, write_bytes, write_text
from bertkit.config import RunConfig, save_config
from bertkit.errors import BertkitError
from bertkit.features import embed_texts
from bertkit.loop import make_accelerator
from bertkit.model import check_fits, load_model, quiet_transformers
from bertkit.plots import plot_layers
from bertkit.probe import probe_model, read_probe_data, require_probe_files
from bertkit.tasks.common import column, read_rows
from bertkit.tokenizer.train import load_tokenizer


def read_texts(path: Path, text_column: str) -> list[str]:
    """Texts of a plain file (one per non-empty line) or of a JSONL/JSON/CSV/TSV column."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".csv", ".tsv"):
        return [str(t) for t in column(read_rows(path), text_column, path, "embed.text_column")]
    if not path.is_file():
        raise BertkitError(f"{path}: no such file; check embed.file")
    try:
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise BertkitError(f"{path}: not UTF-8 text; convert the file to UTF-8") from None
    if not texts:
        raise BertkitError(f"{path}: holds no text; give one text per line, or a JSONL/CSV file with embed.text_column")
    return texts


def _model(cfg: RunConfig):
    """The model on the accelerator's device, its tokenizer and dir, and the recipe's precision (train.precision:
    bf16 autocast, or auto) to run it in, as eval does."""
    quiet_transformers()
    model_dir = Path(cfg.embed.model_dir or cfg.pretrain_dir)
    model, tokenizer = load_model(BertModel, model_dir, cfg.allow_pickle_weights), load_tokenizer(model_dir)
    check_fits(model, tokenizer, model_dir, cfg.embed.max_seq_length, "embed.max_seq_length")
    accelerator = make_accelerator(cfg.train)
    return model.to(accelerator.device), tokenizer, model_dir, accelerator.autocast()


def _check_output(cfg: RunConfig, out: Path, key: str, inputs: dict) -> None:
    check_apart({key: out}, {"embed.model_dir": cfg.embed.model_dir or cfg.pretrain_dir, **inputs})
    check_output(out, key, cfg.overwrite)


def run_embed(cfg: RunConfig) -> Path:
    if cfg.embed.file is None:
        raise BertkitError("embed.file is not set; give a text file (one text per line) or a JSONL/CSV file")
    out = cfg.embed.output_dir or cfg.output_dir / "embed"
    _check_output(cfg, out, "embed.output_dir", {"embed.file": cfg.embed.file})
    model, tokenizer, model_dir, precision = _model(cfg)
    texts = read_texts(cfg.embed.file, cfg.embed.text_column)
    with precision:
        vectors, index = embed_texts(
            model, tokenizer, texts, cfg.embed.layers, cfg.embed.pooling, cfg.embed.max_seq_length, cfg.embed.batch_size
        )
    for row in index:
        if "token" not in row:
            row["content"] = texts[row["text"]]
    buffer = io.BytesIO()
    np.save(buffer, vectors.astype(np.float32))
    with atomic_dir(out) as tmp:
        write_bytes(tmp / "embeddings.npy", buffer.getvalue())
        write_text(tmp / "index.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in index))
        save_config(cfg, tmp)
    what = "tokens" if cfg.embed.pooling == "none" else f"texts ({cfg.embed.pooling} pooling)"
    print(f"{vectors.shape[0]} {what} × {vectors.shape[1]} from layer(s) {cfg.embed.layers} of {model_dir}")
    print(f"embeddings: {out / 'embeddings.npy'}\nindex: {out / 'index.jsonl'}")
    return out


def run_probe(cfg: RunConfig) -> dict:
    probe = cfg.probe
    require_probe_files(probe)
    out = probe.output_dir or cfg.output_dir / "probe"
    files = {"probe.train_file": probe.train_file, "probe.test_file": probe.test_file}
    data = read_probe_data(probe)  # a mistake in the files shows before the model loads
    _check_output(cfg, out, "probe.output_dir", files)
    model, tokenizer, model_dir, precision = _model(cfg)
    with precision:
        scored = probe_model(model, tokenizer, cfg, data)
    report = {
        "model": str(model_dir),
        "train": str(probe.train_file),
        "test": str(probe.test_file),
        "level": probe.level,
        **scored,
    }
    scores, majority = report["accuracy_by_layer"], report["majority_baseline"]
    with atomic_dir(out) as tmp:
        write_text(tmp / "probe.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        title = f"linear probe ({probe.level}): {Path(probe.train_file).name}"
        plot_layers(scores, majority, tmp / "probe.png", title)
        save_config(cfg, tmp)
    print(f"\nlayer  accuracy   (majority class {majority:.4f})")
    for layer, score in enumerate(scores):
        print(f"{layer:>5}  {score:.4f}" + ("   ← embeddings" if layer == 0 else ""))
    print(f"\nreport: {out / 'probe.json'}\nplot: {out / 'probe.png'}")
    return report
