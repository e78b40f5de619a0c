"""A BiLSTM baseline with BERT's vocabulary, trained and scored by the same finetune/eval as BERT.

    model = BiLSTMClassifier.build(vocab_size, pad_id, id2label, head="sequence", cfg=cfg.model)
    model.save_pretrained(out_dir)              # config.json (architectures: BiLSTMFor…) + model.safetensors
    model = load_bilstm(out_dir)

Randomly initialised word-piece embeddings (no pretraining), a bidirectional LSTM, and either a sentence head
(max and mean pooling of the states → linear) or a per-token head. It returns what BertFor…Classification
returns (.loss, .logits), so fit() and the task evaluators treat both alike: "what pretraining buys" is BERT's
score minus this one's on identical data and metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from bertkit.config import ModelConfig
from bertkit.data.padding import IGNORE_INDEX
from bertkit.errors import BertkitError
from bertkit.model import UNREADABLE

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


class BiLSTMClassifier(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.config = Config(config)
        c = self.config
        self.embeddings = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=c.pad_token_id)
        self.lstm = nn.LSTM(
            c.embedding_dim,
            c.hidden_size,
            num_layers=c.num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(c.dropout)
        features = 2 * c.hidden_size * (1 if c.per_token else 2)  # both directions; max + mean for sentences
        self.classifier = nn.Linear(features, c.num_labels)

    @classmethod
    def build(
        cls,
        vocab_size: int,
        pad_token_id: int,
        id2label: dict[int, str],
        head: str,
        cfg: ModelConfig,
        **settings,
    ) -> BiLSTMClassifier:
        """A fresh model; `settings` (the task's, e.g. a tagger's tag_scheme) are stored in its config."""
        return cls(
            {
                "architectures": [HEADS[head]],
                "vocab_size": vocab_size,
                "pad_token_id": pad_token_id,
                "embedding_dim": cfg.bilstm_embedding_dim,
                "hidden_size": cfg.bilstm_hidden_size,
                "num_layers": cfg.bilstm_layers,
                "dropout": cfg.hidden_dropout_prob,
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

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        lengths = attention_mask.sum(1)  # (B,)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embeddings(input_ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, _ = self.lstm(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=input_ids.shape[1])
        states = self.dropout(states)  # (B, T, 2H)
        if self.config.per_token:
            logits = self.classifier(states)  # (B, T, C)
            loss = (
                None
                if labels is None
                else F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
            )
            return TokenClassifierOutput(loss=loss, logits=logits)
        real = attention_mask.bool()[..., None]
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


def load_bilstm(directory: Path) -> BiLSTMClassifier:
    directory = Path(directory)
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        config["id2label"] = {int(k): v for k, v in config["id2label"].items()}
        model = BiLSTMClassifier(config)
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
    except UNREADABLE as e:  # a truncated or foreign file; --debug shows the cause
        raise BertkitError(
            f"{directory}: cannot load the BiLSTM ({type(e).__name__}: {str(e).splitlines()[0][:200]}); check that "
            "its files are complete"
        ) from e
    return model
