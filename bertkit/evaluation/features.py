"""Frozen features from every layer of a BERT: hidden states, pooling, per-text and per-word vectors.

    vectors, index = embed_texts(model, tokenizer, texts, layers=[-1], pooling="mean")   # (N, H)
    matrix = sentence_features(model, tokenizer, texts, cfg)                          # (layers + 1, N, H)

    model, tokenizer, accelerator = load_encoder(model_dir, cfg.embed, allow_pickle=False)

Layer 0 is the embedding layer, L the last; negative indices count from the end. Used by `bertkit embed` and by
the probe (bertkit/evaluation/probe.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import BertModel

from bertkit.config import Recipe
from bertkit.config.sections import EmbedConfig
from bertkit.errors import BertkitError
from bertkit.modeling.model import check_fits, load_model, quiet_transformers
from bertkit.progress import progress
from bertkit.tokenizer.train import load_tokenizer
from bertkit.training.runtime import make_accelerator


def load_encoder(model_dir: Path, embed: EmbedConfig, allow_pickle: bool):
    """The BertModel of `model_dir` on the accelerator's device, its tokenizer, and the accelerator, whose
    autocast() runs it in embed.precision (as eval runs in eval.precision)."""
    quiet_transformers()
    model, tokenizer = load_model(BertModel, model_dir, allow_pickle), load_tokenizer(model_dir)
    check_fits(model, tokenizer, model_dir, embed.max_seq_length, "embed.max_seq_length")
    accelerator = make_accelerator(embed.precision, "embed.precision")
    return model.to(accelerator.device), tokenizer, accelerator


@torch.no_grad()
def hidden_states(
    model: BertModel, tokenizer, texts: list[str] | list[list[str]], max_length: int | None, batch_size: int
):
    """Yield (positions of the batch's texts in `texts`, encoding, offsets, hidden states (layers + 1, B, T, H),
    attention mask) batch by batch, longest texts first (batches of similar length pad little); `texts` may be
    lists of words, `max_length` None is the model's positions."""
    model.eval()
    max_length = max_length or model.config.max_position_embeddings
    words = bool(texts) and isinstance(texts[0], list)
    size = [sum(map(len, t)) if words else len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -size[i])
    for start in progress(range(0, len(texts), batch_size), desc="embed", leave=False):
        positions = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in positions],
            is_split_into_words=words,
            truncation=True,
            max_length=max_length,
            padding=True,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping")
        out = model(**{k: v.to(model.device) for k, v in enc.items()}, output_hidden_states=True)
        yield positions, enc, offsets, torch.stack(out.hidden_states).float().cpu(), enc["attention_mask"]


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
    per_text: list = [None] * len(texts)  # each text's vector (pooled) or (token rows, token vectors)
    for positions, enc, offsets, states, mask in hidden_states(model, tokenizer, texts, max_length, batch_size):
        mixed = states[chosen].mean(0)  # (B, T, H)
        if pooling != "none":
            for position, vector in zip(positions, pool(mixed, mask, pooling).numpy(), strict=True):
                per_text[position] = vector[None]
            continue
        for b, position in enumerate(positions):
            tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][b][mask[b].bool()])
            rows = []
            for t, token in enumerate(tokens):
                start, end = offsets[b, t].tolist()
                rows.append({"text": position, "token": token, "start": start, "end": end})
            per_text[position] = (rows, mixed[b, : len(tokens)].numpy())
    if pooling != "none":
        return np.concatenate(per_text), [{"text": i} for i in range(len(texts))]
    return np.concatenate([v for _, v in per_text]), [row for rows, _ in per_text for row in rows]


def sentence_features(model, tokenizer, texts: list[str], cfg: Recipe) -> np.ndarray:
    """(layers + 1, N, H) pooled sentence features from every layer (mean unless embed.pooling says)."""
    pooling = cfg.embed.pooling if cfg.embed.pooling != "none" else "mean"
    batches = hidden_states(model, tokenizer, texts, cfg.embed.max_seq_length, cfg.embed.batch_size)
    positions, pooled = [], []
    for batch_positions, _, _, states, mask in batches:
        positions += batch_positions
        pooled.append(pool(states, mask, pooling).numpy())
    return np.concatenate(pooled, axis=1)[:, np.argsort(positions)]


def word_features(model, tokenizer, sentences: list[list[str]], cfg: Recipe) -> tuple[np.ndarray, list]:
    """(layers + 1, N words, H) from each word's first piece, and the (sentence, word) of every row: words cut
    off by embed.max_seq_length get no row."""
    per_sentence: list = [None] * len(sentences)  # each sentence's (word rows (layers + 1, W, H), word ids)
    batches = hidden_states(model, tokenizer, sentences, cfg.embed.max_seq_length, cfg.embed.batch_size)
    for positions, enc, _, states, _ in batches:
        for b, position in enumerate(positions):
            firsts = {}
            for t, w in enumerate(enc.word_ids(b)):
                if w is not None and w not in firsts:
                    firsts[w] = t
            per_sentence[position] = (states[:, b, list(firsts.values())], list(firsts))
    rows = torch.cat([r for r, _ in per_sentence], dim=1).numpy()
    return rows, [(n, w) for n, (_, ids) in enumerate(per_sentence) for w in ids]
