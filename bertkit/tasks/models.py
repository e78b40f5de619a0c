"""The model of a task family that `bertkit finetune` trains and `bertkit eval` loads: the family's transformers
head on a pretrained BERT, or the BiLSTM baseline (finetune.model_type).

    model_type = MODEL_TYPES[cfg.finetune.model_type]
    model_dir = model_type.source(cfg)                      # the tokenizer's dir (and BERT's weights)
    model = model_type.build(cfg, task, tokenizer, model_dir, labels, settings)
    model = load_finetuned(cfg, task, out_dir, model_architectures(out_dir))   # whichever type it is
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from torch import nn

from bertkit.config import EvalRecipe, FinetuneRecipe
from bertkit.config.sections import TaskConfig, TrainConfig
from bertkit.errors import BertkitError
from bertkit.modeling.bilstm import HEADS, BiLSTMClassifier, is_bilstm, load_bilstm
from bertkit.modeling.model import check_model_dir, checkpoint_layers, load_model
from bertkit.tasks import TASKS
from bertkit.tasks.common import Task
from bertkit.tokenizer.train import has_tokenizer


class ModelType(Protocol):
    def source(self, cfg: FinetuneRecipe) -> Path:
        """The dir a fine-tuning run reads its tokenizer (and any weights) from."""

    def train_config(self, cfg: FinetuneRecipe) -> TrainConfig:
        """finetune.train as this model trains."""

    def describe(self, cfg: FinetuneRecipe, model_dir: Path) -> str:
        """What the run trains, to start its first line."""

    def build(self, cfg: FinetuneRecipe, task: Task, tokenizer, model_dir: Path, labels, settings: dict) -> nn.Module:
        """The model to train, `settings` (the family's, learned from the train file) in its config."""

    def loads_with(self, task: Task, task_cfg: TaskConfig) -> str:
        """The function that loads the model a run saves."""

    def load(self, cfg: EvalRecipe, task: Task, model_dir: Path, architectures: list[str]) -> nn.Module:
        """The fine-tuned model in `model_dir`, which must be of the family's head."""


class BertHead:
    """finetune.model_type=bert: the family's transformers head on a pretrained BERT."""

    def source(self, cfg: FinetuneRecipe) -> Path:
        return check_model_dir(cfg.finetune.model_dir or cfg.pretrain_dir)

    def train_config(self, cfg: FinetuneRecipe) -> TrainConfig:
        return cfg.finetune.train

    def describe(self, cfg: FinetuneRecipe, model_dir: Path) -> str:
        return f"fine-tuning {model_dir}"

    def build(self, cfg: FinetuneRecipe, task: Task, tokenizer, model_dir: Path, labels, settings: dict) -> nn.Module:
        cls = task.head(cfg.finetune.task)
        _check_head(model_dir, task, labels, cfg.finetune.task.type)
        p = cfg.finetune.dropout
        dropout = {} if p is None else {"hidden_dropout_prob": p, "attention_probs_dropout_prob": p}
        model = load_model(cls, model_dir, cfg.allow_pickle_weights, **task.model_kwargs(labels), **dropout)
        # Set after loading: from_pretrained passes keys its config class does not know to the model's __init__.
        model.config.update(settings)
        if cfg.finetune.train.gradient_checkpointing:
            checkpoint_layers(model)
        return model

    def loads_with(self, task: Task, task_cfg: TaskConfig) -> str:
        return f"{task.head(task_cfg).__name__}.from_pretrained"

    def load(self, cfg: EvalRecipe, task: Task, model_dir: Path, architectures: list[str]) -> nn.Module:
        heads = [c for c in (task.crf_class, task.model_class) if c is not None and c.__name__ in architectures]
        if not heads:
            raise BertkitError(
                f"{model_dir}: a {', '.join(architectures) or 'model of unknown architecture'}, not a "
                f"{task.model_class.__name__} for finetune.task.type={cfg.finetune.task.type}; set the recipe's "
                "task type"
            )
        return load_model(heads[0], model_dir, cfg.allow_pickle_weights)


def _check_head(model_dir: Path, task: Task, labels, task_type: str) -> None:
    """A dir with another task's fine-tuned head (a topic classifier given to NER) is refused, whatever its
    encoder: transformers matches head weights by name and shape, so it fails on a head of another size (its
    message points at a load report the user never sees) and, where the sizes agree, trains on from the old
    task's head and label order without a word. A pretrained BERT, or this family's head over these labels (to
    train on), passes."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    heads = {c.__name__ for t in TASKS.values() for c in (t.model_class, t.crf_class) if c is not None}
    found = next((a for a in config.get("architectures") or [] if a in heads), None)
    if found is None:
        return
    old = [str(name) for _, name in sorted((config.get("id2label") or {}).items(), key=lambda kv: int(kv[0]))]
    new = task.model_kwargs(labels)
    same_head = found in (task.model_class.__name__, getattr(task.crf_class, "__name__", None))
    wanted = list(new.get("id2label", {}).values()) or old  # QA and multiple choice have no label set
    if same_head and len(old) == new.get("num_labels", len(old)) and old == wanted:
        return
    shown = ", ".join(old[:5]) + (", …" if len(old) > 5 else "")
    raise BertkitError(
        f"{model_dir}: a fine-tuned {found} of {len(old)} labels ({shown}), not a pretrained BERT for "
        f"finetune.task.type={task_type}{' with these labels' if same_head else ''}; start from a pretrained BERT "
        "dir (bertkit pretrain's output, or a Hub BERT)"
    )


class BiLSTMBaseline:
    """finetune.model_type=bilstm: trained from scratch over BERT's vocabulary, with only its tokenizer."""

    def source(self, cfg: FinetuneRecipe) -> Path:
        """finetune.model_dir, any dir with a BERT tokenizer; unset, this recipe's pretrained model, or its
        `bertkit tokenize` output when not pretrained."""
        candidates = [cfg.finetune.model_dir] if cfg.finetune.model_dir else [cfg.pretrain_dir, cfg.tokenizer_dir]
        for directory in candidates:
            if has_tokenizer(directory):
                return Path(directory)
        raise BertkitError(
            f"{' or '.join(map(str, candidates))}: no tokenizer (vocab.txt or tokenizer.json); "
            "finetune.model_type=bilstm needs only that: set finetune.model_dir to a BERT dir or to a `bertkit "
            "tokenize` output's tokenizer/ dir"
        )

    def train_config(self, cfg: FinetuneRecipe) -> TrainConfig:
        # Trained from scratch: its own LR, not BERT's fine-tuning one (nor BERT's layer-wise decay).
        return cfg.finetune.train.model_copy(update={"lr": cfg.finetune.bilstm.lr, "layer_lr_decay": None})

    def describe(self, cfg: FinetuneRecipe, model_dir: Path) -> str:
        return (
            f"training a BiLSTM baseline (tokenizer of {model_dir}; lr {cfg.finetune.bilstm.lr:g} from "
            "finetune.bilstm.lr, not finetune.train.lr)"
        )

    def build(self, cfg: FinetuneRecipe, task: Task, tokenizer, model_dir: Path, labels, settings: dict) -> nn.Module:
        if task.bilstm_head is None:
            with_head = ", ".join(name for name, t in TASKS.items() if t.bilstm_head)
            raise BertkitError(
                f"finetune.model_type=bilstm is for {with_head}, not {cfg.finetune.task.type}; "
                "set finetune.model_type=bert"
            )
        if cfg.finetune.train.gradient_checkpointing:
            raise BertkitError(
                "finetune.train.gradient_checkpointing is for BERT encoders, not the BiLSTM baseline; set it to false"
            )
        id2label = task.model_kwargs(labels)["id2label"]
        return BiLSTMClassifier.build(
            len(tokenizer), tokenizer.pad_token_id, id2label, task.bilstm_head, cfg.finetune.bilstm, **settings
        )

    def loads_with(self, task: Task, task_cfg: TaskConfig) -> str:
        return f"{load_bilstm.__module__}.{load_bilstm.__name__}"

    def load(self, cfg: EvalRecipe, task: Task, model_dir: Path, architectures: list[str]) -> nn.Module:
        if task.bilstm_head is None or HEADS[task.bilstm_head] not in architectures:
            raise BertkitError(
                f"{model_dir}: a {', '.join(architectures)}, not a BiLSTM for finetune.task.type="
                f"{cfg.finetune.task.type}; set the recipe's task type"
            )
        return load_bilstm(model_dir)


MODEL_TYPES: dict[str, ModelType] = {"bert": BertHead(), "bilstm": BiLSTMBaseline()}


def load_finetuned(cfg: EvalRecipe, task: Task, model_dir: Path, architectures: list[str]) -> nn.Module:
    """The fine-tuned model in `model_dir` of the family `task` (a BERT head or the BiLSTM baseline), by the
    `architectures` of its config.json."""
    return MODEL_TYPES["bilstm" if is_bilstm(architectures) else "bert"].load(cfg, task, model_dir, architectures)
