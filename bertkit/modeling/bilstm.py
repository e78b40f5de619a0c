"""A BiLSTM baseline with BERT's vocabulary, trained and scored by the same finetune/eval as BERT.

    model = BiLSTMClassifier.build(vocab_size, pad_id, id2label, head="sequence", cfg=cfg.finetune.bilstm)
    model.save_pretrained(out_dir)              # config.json (architectures: BiLSTMFor…) + model.safetensors
    model = load_bilstm(out_dir)

Randomly initialised word-piece embeddings (no pretraining), a bidirectional LSTM, and either a sentence head
(max and mean pooling of the states → linear) or a per-token head (with a CRF when task.crf is set). It
returns what BertFor…Classification returns (.loss, .logits), so fit() and the task evaluators treat both alike:
"what pretraining buys" is BERT's score minus this one's on identical data and metrics.

The LSTM runs on the padded batch, not on a PackedSequence: packing skips the fused (oneDNN) CPU kernel and bf16
autocast, 2-3× slower a step. Each layer is two unidirectional LSTMs; the backward one reads every sequence
reversed within its own length (reverse_within_length), so it starts at the last real token, never at padding:
the states at real positions are those of nn.LSTM(bidirectional=True) on the packed batch, to rounding. Weights
saved by the earlier model (that one nn.LSTM) still load: load_bilstm renames them (from_bidirectional).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from bertkit.config.sections import BiLSTMConfig
from bertkit.data.padding import IGNORE_INDEX
from bertkit.errors import BertkitError
from bertkit.modeling.crf import CRF
from bertkit.modeling.model import UNREADABLE

# A task family's bilstm_head → the architecture saved in config.json.
HEADS = {"sequence": "BiLSTMForSequenceClassification", "token": "BiLSTMForTokenClassification"}


class Config(dict):
    """Attribute access to the saved config (num_labels, id2label, …) as transformers' configs offer it: a key
    that is not there is an AttributeError (getattr(config, key, default) works), not a silent None."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def reverse_within_length(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x` (B, T, D) with each row's first `lengths` positions reversed and its padding left in place, by the
    index of reverse_index(); applying it twice gives `x` back."""
    return x.gather(1, index[..., None].expand_as(x))


def reverse_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) source positions of reverse_within_length for a right-padded batch: length-1-t for t < length, t
    after. On the device of the mask: no host sync (packing needed the lengths on the CPU)."""
    lengths = attention_mask.sum(1, keepdim=True)  # (B, 1)
    t = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None]  # (1, T)
    return torch.where(t < lengths, lengths - 1 - t, t)


class BiLSTMClassifier(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.config = Config(config)
        c = self.config
        self.embeddings = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=c.pad_token_id)
        # Layer k of each direction; layer k>0 reads both directions of layer k-1 (as a bidirectional nn.LSTM).
        sizes = [c.embedding_dim] + [2 * c.hidden_size] * (c.num_layers - 1)
        self.forward_lstms = nn.ModuleList(nn.LSTM(n, c.hidden_size, batch_first=True) for n in sizes)
        self.backward_lstms = nn.ModuleList(nn.LSTM(n, c.hidden_size, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(c.dropout)
        features = 2 * c.hidden_size * (1 if c.per_token else 2)  # both directions; max + mean for sentences
        self.classifier = nn.Linear(features, c.num_labels)
        if c.get("crf"):  # a tagger with task.crf=true
            self.crf = CRF(c.num_labels)

    @classmethod
    def build(
        cls,
        vocab_size: int,
        pad_token_id: int,
        id2label: dict[int, str],
        head: str,
        cfg: BiLSTMConfig,
        **settings,
    ) -> BiLSTMClassifier:
        """A fresh model; `settings` (the task's, e.g. a tagger's tag_scheme) are stored in its config."""
        return cls(
            {
                "architectures": [HEADS[head]],
                "vocab_size": vocab_size,
                "pad_token_id": pad_token_id,
                "embedding_dim": cfg.embedding_dim,
                "hidden_size": cfg.hidden_size,
                "num_layers": cfg.layers,
                "dropout": cfg.dropout,
                "per_token": head == "token",
                "num_labels": len(id2label),
                "id2label": {int(k): v for k, v in id2label.items()},
                "label2id": {v: int(k) for k, v in id2label.items()},
                **settings,
            }
        )

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 2H) last-layer states, forward then backward direction, zero at padding (before the dropout of
        the heads). Inputs are right-padded, as bertkit's collators pad: real tokens first, so the forward
        direction has read only real tokens at each real position, and the backward one too once every row is
        reversed within its length."""
        index = reverse_index(attention_mask)
        states = self.embeddings(input_ids)  # (B, T, E)
        for k, (ahead, back) in enumerate(zip(self.forward_lstms, self.backward_lstms, strict=True)):
            if k:
                states = self.dropout(states)  # between layers, as nn.LSTM(dropout=…)
            forward_states, _ = ahead(states)  # (B, T, H)
            backward_states, _ = back(reverse_within_length(states, index))  # (B, T, H), rows reversed
            states = torch.cat([forward_states, reverse_within_length(backward_states, index)], dim=-1)
        # Past its length a row holds states of padding: zeroed, as pad_packed_sequence left them (a tagger's
        # logits there are its bias, never scored).
        return states * attention_mask[..., None].to(states.dtype)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        states = self.dropout(self.states(input_ids, attention_mask))  # (B, T, 2H)
        if self.config.per_token:
            logits = self.classifier(states)  # (B, T, C)
            if labels is None:
                loss = None
            elif hasattr(self, "crf"):
                loss = self.crf.loss(logits, labels)
            else:
                loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
            return TokenClassifierOutput(loss=loss, logits=logits)
        real = attention_mask.bool()[..., None]  # (B, T, 1)
        pooled = torch.cat(
            [states.masked_fill(~real, -1e4).amax(1), (states * real).sum(1) / real.sum(1).clamp(min=1)], dim=-1
        )  # (B, 4H)
        logits = self.classifier(pooled)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {**self.config, "id2label": {str(k): v for k, v in self.config.id2label.items()}}
        (directory / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))


def is_bilstm(architectures: list[str]) -> bool:
    return any(a in HEADS.values() for a in architectures)


def from_bidirectional(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved by the earlier model, one nn.LSTM(bidirectional=True) (`lstm.weight_ih_l1_reverse`), under
    the names of the per-layer, per-direction LSTMs (`backward_lstms.1.weight_ih_l0`): the same tensors."""
    renamed = {}
    for key, value in state.items():
        match = re.fullmatch(r"lstm\.(\w+)_l(\d+)(_reverse)?", key)
        if match:
            name, layer, reverse = match.groups()
            key = f"{'backward' if reverse else 'forward'}_lstms.{layer}.{name}_l0"
        renamed[key] = value
    return renamed


def load_bilstm(directory: Path) -> BiLSTMClassifier:
    directory = Path(directory)
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        config["id2label"] = {int(k): v for k, v in config["id2label"].items()}
        model = BiLSTMClassifier(config)
        model.load_state_dict(from_bidirectional(load_file(str(directory / "model.safetensors"))))
    except UNREADABLE as e:  # a truncated or foreign file; --debug shows the cause
        raise BertkitError(
            f"{directory}: cannot load the BiLSTM ({type(e).__name__}: {str(e).splitlines()[0][:200]}); check that "
            "its files are complete"
        ) from e
    return model
