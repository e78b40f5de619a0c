"""`bertkit embed` and `bertkit probe`: what a BERT's layers hold.

    vectors, index = embed_texts(model, tokenizer, texts, layers=[-1], pooling="mean")   # (N, H)
    scores = probe_layers(train_features, y_train, test_features, y_test)                 # accuracy per layer

embed: contextual embeddings of every text in a file, per sentence ([CLS], mean or max over its tokens) or per
token (with the token strings and character offsets), from one layer or the mean of several (0 = the
embedding layer, L = the last; negative counts from the end). Written as embeddings.npy plus index.jsonl.

probe: for each layer, a logistic regression on frozen features of a labelled file — mean-pooled per sentence,
or per word (its first piece) for word labels such as POS tags — scored on a held-out file: a table,
probe.json and a plot of the score by layer, to check for yourself what Jawahar et al. (2019) found: surface
features low, syntax in the middle, semantics high. `probe.during_pretraining` runs the same probe at every
pretraining evaluation, to watch the layers learn.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from transformers import BertModel

from bertkit.atomic import atomic_dir, check_apart, check_output, write_bytes, write_text
from bertkit.config import ProbeConfig, RunConfig, save_config
from bertkit.errors import BertkitError
from bertkit.model import check_fits, load_model, quiet_transformers
from bertkit.plots import plot_layers
from bertkit.progress import progress
from bertkit.tasks.common import check_labels, column, label_set, read_rows
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


@torch.no_grad()
def hidden_states(
    model: BertModel, tokenizer, texts: list[str] | list[list[str]], max_length: int | None, batch_size: int
):
    """Yield (encoding of the batch, offsets, hidden states (layers + 1, B, T, H), attention mask) batch by batch;
    `texts` may be lists of words, `max_length` None is the model's positions."""
    model.eval()
    max_length = max_length or model.config.max_position_embeddings
    words = bool(texts) and isinstance(texts[0], list)
    for start in progress(range(0, len(texts), batch_size), desc="embed", leave=False):
        enc = tokenizer(
            texts[start : start + batch_size],
            is_split_into_words=words,
            truncation=True,
            max_length=max_length,
            padding=True,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping")
        out = model(**{k: v.to(model.device) for k, v in enc.items()}, output_hidden_states=True)
        yield enc, offsets, torch.stack(out.hidden_states).float().cpu(), enc["attention_mask"]


def pool(states: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(…, B, T, H) → (…, B, H): the [CLS] vector, or the mean / max over real tokens."""
    if pooling == "cls":
        return states[..., 0, :]
    real = mask.bool()[..., None]  # (B, T, 1)
    if pooling == "max":
        return states.masked_fill(~real, float("-inf")).amax(-2)
    return (states * real).sum(-2) / real.sum(-2).clamp(min=1)


def layer_indices(layers: list[int], num_layers: int) -> list[int]:
    """embed.layers as sorted indices into the hidden states: 0 the embeddings … num_layers the last layer,
    negative counting from the end."""
    n = num_layers + 1
    if not layers or not all(-n <= layer < n for layer in layers):
        raise BertkitError(
            f"embed.layers={layers}: the model has {num_layers} layer{'s' * (num_layers != 1)}; give indices from 0 "
            f"(the embeddings) to {num_layers}, or -{n} to -1 from the end"
        )
    return sorted({layer % n for layer in layers})


def embed_texts(
    model,
    tokenizer,
    texts: list[str],
    layers: list[int],
    pooling: str,
    max_length: int | None = None,
    batch_size: int = 32,
) -> tuple[np.ndarray, list[dict]]:
    """Embeddings and their index rows: per text (pooling cls/mean/max) or per token (pooling none)."""
    chosen = layer_indices(layers, model.config.num_hidden_layers)
    vectors, index = [], []
    for enc, offsets, states, mask in hidden_states(model, tokenizer, texts, max_length, batch_size):
        mixed = states[chosen].mean(0)  # (B, T, H)
        if pooling != "none":
            vectors.append(pool(mixed, mask, pooling).numpy())
            continue
        base = len({row["text"] for row in index})
        for b in range(len(mask)):
            tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][b][mask[b].bool()])
            for t, token in enumerate(tokens):
                start, end = offsets[b, t].tolist()
                index.append({"text": base + b, "token": token, "start": start, "end": end})
            vectors.append(mixed[b, : len(tokens)].numpy())
    if pooling != "none":
        index = [{"text": i} for i in range(len(texts))]
    return np.concatenate(vectors), index


def probe_layers(train: np.ndarray, y_train: list, test: np.ndarray, y_test: list, max_iter: int = 1000) -> list[float]:
    """Held-out accuracy of a logistic regression per layer.

    Args:
        train, test: (layers, N, H) frozen features.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    for layer in range(len(train)):
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
        classifier.fit(train[layer], y_train)
        scores.append(float(classifier.score(test[layer], y_test)))
    return scores


def sentence_features(model, tokenizer, texts: list[str], cfg: RunConfig) -> np.ndarray:
    """(layers + 1, N, H) pooled sentence features from every layer (mean unless embed.pooling says)."""
    pooling = cfg.embed.pooling if cfg.embed.pooling != "none" else "mean"
    batches = hidden_states(model, tokenizer, texts, cfg.embed.max_seq_length, cfg.embed.batch_size)
    return np.concatenate([pool(states, mask, pooling).numpy() for _, _, states, mask in batches], axis=1)


def word_features(model, tokenizer, sentences: list[list[str]], cfg: RunConfig) -> tuple[np.ndarray, list]:
    """(layers + 1, N words, H) from each word's first piece, and the (sentence, word) of every row: words cut
    off by embed.max_seq_length get no row."""
    rows, where, base = [], [], 0
    for enc, _, states, _ in hidden_states(model, tokenizer, sentences, cfg.embed.max_seq_length, cfg.embed.batch_size):
        for b in range(states.shape[1]):
            firsts = {}
            for t, w in enumerate(enc.word_ids(b)):
                if w is not None and w not in firsts:
                    firsts[w] = t
            rows.append(states[:, b, list(firsts.values())])
            where += [(base + b, w) for w in firsts]
        base += states.shape[1]
    return torch.cat(rows, dim=1).numpy(), where


def read_probe_file(path: Path, probe: ProbeConfig) -> tuple[list, list]:
    """Texts (or word lists) and their labels (or label lists) of a labelled file."""
    rows = read_rows(path)
    texts = column(rows, probe.text_column, path, "probe.text_column")
    labels = column(rows, probe.label_column, path, "probe.label_column")
    if probe.level == "sentence":
        return [str(t) for t in texts], [str(y) for y in labels]
    for n, (words, tags) in enumerate(zip(texts, labels, strict=True), 1):
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
            raise BertkitError(
                f"{path}: row {n}: probe.level=token needs a list of words in '{probe.text_column}' and as many "
                f"labels in '{probe.label_column}'"
            )
    return [[str(w) for w in words] for words in texts], [[str(t) for t in tags] for tags in labels]


def require_probe_files(probe: ProbeConfig, who: str = "bertkit probe") -> None:
    if probe.train_file is None or probe.test_file is None:
        raise BertkitError(f"{who} needs probe.train_file and probe.test_file (labelled JSONL/CSV/TSV files)")


def read_probe_data(probe: ProbeConfig) -> dict:
    """{"train": (texts, labels), "test": …} of the probe's files, checked before any feature is computed: the
    train file must hold two labels at least, and the test file no label the train file lacks."""
    data = {"train": read_probe_file(probe.train_file, probe), "test": read_probe_file(probe.test_file, probe)}

    def every(labels: list) -> list:
        return labels if probe.level == "sentence" else [t for tags in labels for t in tags]

    known = label_set(every(data["train"][1]))
    if len(known) < 2:
        raise BertkitError(
            f"{probe.train_file}: only label(s) {', '.join(map(repr, known)) or 'none'} in "
            f"'{probe.label_column}'; a probe needs two classes at least (check probe.label_column)"
        )
    check_labels(every(data["test"][1]), {name: i for i, name in enumerate(known)}, probe.test_file)
    return data


def probe_model(model, tokenizer, cfg: RunConfig, data: dict | None = None) -> dict:
    """The probe's scores by layer for a BertModel; `data` holds the files' read_probe_data, read here when
    empty (pretraining passes one dict to every call, so the files are read once)."""
    probe = cfg.probe
    data = data if data is not None else {}
    if not data:
        data.update(read_probe_data(probe))
    features = {}
    for name, (texts, labels) in data.items():
        if probe.level == "sentence":
            features[name] = (sentence_features(model, tokenizer, texts, cfg), labels)
        else:
            matrix, where = word_features(model, tokenizer, texts, cfg)
            features[name] = (matrix, [labels[s][w] for s, w in where])
    train_y, test_y = features["train"][1], features["test"][1]
    scores = probe_layers(features["train"][0], train_y, features["test"][0], test_y)
    majority = max(test_y.count(y) for y in set(test_y)) / len(test_y)
    return {"majority_baseline": majority, "accuracy_by_layer": scores, "best_layer": int(np.argmax(scores))}


def _model(cfg: RunConfig):
    quiet_transformers()
    model_dir = Path(cfg.embed.model_dir or cfg.pretrain_dir)
    model, tokenizer = load_model(BertModel, model_dir, cfg.allow_pickle_weights), load_tokenizer(model_dir)
    check_fits(model, tokenizer, model_dir, cfg.embed.max_seq_length, "embed.max_seq_length")
    return model, tokenizer, model_dir


def _check_output(cfg: RunConfig, out: Path, key: str, inputs: dict) -> None:
    check_apart({key: out}, {"embed.model_dir": cfg.embed.model_dir or cfg.pretrain_dir, **inputs})
    check_output(out, key, cfg.overwrite)


def run_embed(cfg: RunConfig) -> Path:
    if cfg.embed.file is None:
        raise BertkitError("embed.file is not set; give a text file (one text per line) or a JSONL/CSV file")
    out = cfg.embed.output_dir or cfg.output_dir / "embed"
    _check_output(cfg, out, "embed.output_dir", {"embed.file": cfg.embed.file})
    model, tokenizer, model_dir = _model(cfg)
    texts = read_texts(cfg.embed.file, cfg.embed.text_column)
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
    model, tokenizer, model_dir = _model(cfg)
    report = {
        "model": str(model_dir),
        "train": str(probe.train_file),
        "test": str(probe.test_file),
        "level": probe.level,
        **probe_model(model, tokenizer, cfg, data),
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
