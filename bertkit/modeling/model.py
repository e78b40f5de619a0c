"""Building and loading BERT, and the pretraining objective.

    model = build_pretraining_model(cfg.model, tokenizer)      # transformers.BertForPreTraining
    objective = PretrainingObjective(model)                    # forward(**batch) → {"loss", "mlm_loss", …}
    objective.model.save_pretrained(out)                       # the standard BertForPreTraining layout

The objective runs the MLM head only on the masked positions (as NVIDIA's BERT does): the vocabulary decoder
is most of the work of a small BERT's step, and the loss is the same as BertForPreTraining's. ELECTRA's objective
(bertkit/modeling/electra.py) is built from the same pieces: varlen_kwargs, global_mean, masked_lm.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import BertConfig, BertForPreTraining, BertModel, PreTrainedModel, PreTrainedTokenizerBase
from transformers import logging as hf_logging

from bertkit.config.sections import ModelConfig
from bertkit.data.padding import IGNORE_INDEX
from bertkit.errors import BertkitError
from bertkit.modeling.attention import VARLEN
from bertkit.modeling.initialization import local_attention_init

# (layers, hidden size) of google-research/bert's released sizes; heads = H/64, FFN = 4H.
SIZES = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}


def quiet_transformers() -> None:
    """Hide 'some weights were newly initialized' style warnings: bertkit says what it loads itself."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars on every save
    logging.getLogger("accelerate").setLevel(logging.ERROR)


def _or(value: int | None, preset: int) -> int:
    """The recipe's size, or the preset's when unset (`is None`: a 0 must not pass as unset)."""
    return preset if value is None else value


def bert_config(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> BertConfig:
    layers, hidden = SIZES[cfg.size]
    hidden = _or(cfg.hidden_size, hidden)
    heads = _or(cfg.num_attention_heads, max(1, hidden // 64))
    if hidden % heads:
        raise BertkitError(
            f"model.hidden_size={hidden} is not divisible by model.num_attention_heads={heads}; "
            "set model.num_attention_heads to a divisor of it"
        )
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=_or(cfg.num_hidden_layers, layers),
        num_attention_heads=heads,
        intermediate_size=_or(cfg.intermediate_size, 4 * hidden),
        max_position_embeddings=cfg.max_position_embeddings,
        hidden_dropout_prob=cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="sdpa",
    )


def model_architectures(directory: Path) -> list[str]:
    """The `architectures` of a model dir's config.json (which head it was saved with), [] when unknown."""
    try:
        config = json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BertkitError(f"{directory}/config.json: unreadable ({e}); check the model dir") from e
    return list(config.get("architectures") or []) if isinstance(config, dict) else []


def check_model_dir(directory: Path) -> Path:
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise BertkitError(
            f"{directory}: not a model dir (no config.json); give a bertkit output or a local Hugging Face BERT dir"
        )
    return directory


# What a damaged or foreign file raises while it is read (not bertkit's own bugs: those keep their traceback).
UNREADABLE = (OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError, SafetensorError)

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def load_model(cls: type[PreTrainedModel], directory: Path, allow_pickle: bool = False, **kwargs) -> PreTrainedModel:
    """`cls.from_pretrained(directory)`, never with remote code: safetensors when the dir has them, else
    pytorch_model.bin through torch's weights-only unpickler (tensors and plain containers: no code runs), or
    Python's full one with `allow_pickle`. Failures are one clear error naming the dir."""
    directory = check_model_dir(directory)
    safe = any((directory / name).is_file() for name in SAFE_WEIGHTS)
    pickled = any((directory / name).is_file() for name in PICKLE_WEIGHTS)
    if not safe and not pickled:
        raise BertkitError(
            f"{directory}: no model weights (model.safetensors or pytorch_model.bin) in this dir; point the recipe "
            "at a dir that save_pretrained wrote"
        )
    kwargs.setdefault("attn_implementation", "sdpa")
    try:
        return cls.from_pretrained(
            str(directory), use_safetensors=safe, weights_only=not allow_pickle, trust_remote_code=False, **kwargs
        )
    except pickle.UnpicklingError as e:  # the weights-only unpickler met something that is not a tensor
        raise BertkitError(
            f"{directory}: pytorch_model.bin holds more than tensors (loading it could run code), so it was not "
            "loaded; convert it to safetensors where you trust it, or set allow_pickle_weights=true if you trust "
            "its source"
        ) from e
    except UNREADABLE as e:  # a truncated file, a foreign architecture: say which dir; --debug shows the cause
        raise BertkitError(
            f"{directory}: cannot load the model ({type(e).__name__}: {str(e).splitlines()[0][:200]}); check that "
            "its files are complete and that it is a BERT"
        ) from e


def check_vocabulary(model, tokenizer: PreTrainedTokenizerBase, model_dir: Path) -> None:
    """The data's tokenizer must be the model's: same size, and the same tokens where the dir has a vocab."""
    fix = f"tokenize with tokenizer.from_dir={model_dir}"
    if model.config.vocab_size != len(tokenizer):
        raise BertkitError(
            f"{model_dir}: model vocabulary ({model.config.vocab_size}) differs from the data's "
            f"tokenizer ({len(tokenizer)} tokens); {fix}"
        )
    from bertkit.tokenizer.train import has_tokenizer, load_tokenizer

    if has_tokenizer(model_dir):
        if load_tokenizer(model_dir).get_vocab() != tokenizer.get_vocab():
            raise BertkitError(f"{model_dir}: the model's vocabulary differs from the data's tokenizer; {fix}")


def check_fits(
    model, tokenizer: PreTrainedTokenizerBase, model_dir: Path, max_seq_length: int | None = None, key: str = ""
) -> None:
    """The tokenizer's ids must index the model's embeddings, and inputs of `max_seq_length` tokens (recipe key
    `key`) must fit its position embeddings: otherwise torch fails with an index error deep in the forward.
    None checks the vocabulary only; a BiLSTM has no positions."""
    if len(tokenizer) > model.config.vocab_size:
        raise BertkitError(
            f"{model_dir}: its tokenizer has {len(tokenizer)} tokens but the model only {model.config.vocab_size} "
            "embeddings; put the tokenizer the model was trained with in the dir"
        )
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and max_seq_length and max_seq_length > positions:
        raise BertkitError(
            f"{key}={max_seq_length} exceeds the model's {positions} positions ({model_dir}); set {key} to "
            f"{positions} or less"
        )


def load_for_pretraining(
    cls: type[PreTrainedModel],
    directory: Path,
    tokenizer: PreTrainedTokenizerBase,
    allow_pickle: bool = False,
    **kwargs,
) -> PreTrainedModel:
    """`cls` from `directory` to continue pretraining on data of `tokenizer`: the dir's vocabulary, or that
    vocabulary with tokens added after it (tokenizer.add_words… at tokenize time: the embeddings grow)."""
    from bertkit.tokenizer.train import has_tokenizer, load_tokenizer
    from bertkit.tokenizer.vocabulary import extend_embeddings, extends

    model = load_model(cls, directory, allow_pickle, **kwargs)
    released = load_tokenizer(directory) if has_tokenizer(directory) else None
    if released is not None and extends(released, tokenizer):
        added = extend_embeddings(model, released, tokenizer)
        print(f"{directory}: {added} tokens added to its vocabulary, each starting as its pieces' mean")
        return model
    check_vocabulary(model, tokenizer, directory)
    return model


def build_pretraining_model(
    cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, allow_pickle: bool = False
) -> BertForPreTraining:
    """A fresh BERT of the recipe's size, or `init_from` for continued pretraining."""
    if cfg.init_from:
        return load_for_pretraining(BertForPreTraining, cfg.init_from, tokenizer, allow_pickle)
    model = BertForPreTraining(bert_config(cfg, tokenizer))
    if cfg.init == "local":
        local_attention_init(model)
    return model


def varlen_kwargs(model: PreTrainedModel, cu_seq_lens, max_length) -> dict:
    """The attention keywords of a varlen packed batch (none for a padded or 4D-masked one); the model must run
    an attention implementation that keeps the row's sequences apart by them."""
    if cu_seq_lens is None:
        return {}
    implementation = model.config._attn_implementation
    if implementation not in VARLEN:  # any other would let the row's sequences see each other
        raise BertkitError(
            f"varlen packed batches need a varlen attention implementation ({', '.join(sorted(VARLEN))}), "
            f"the model has {implementation!r}; call bertkit.modeling.dropout.use_fast_dropout(model) first"
        )
    return {
        "cu_seq_lens_q": cu_seq_lens,
        "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": max_length,
        "max_length_k": max_length,
    }


def global_mean(
    total: torch.Tensor,
    count: torch.Tensor,
    global_sum: Callable[[torch.Tensor], torch.Tensor] | None,
    num_processes: int,
) -> torch.Tensor:
    """`total` over the `count` of the global batch: under data parallelism (`global_sum`), each process' share
    scaled so that the processes' average, which DDP takes, is the mean over every process' items."""
    if global_sum is not None:
        count = global_sum(count.detach()).float() / num_processes
    # A sum over the count rather than a mean: the same value, and 0 (not NaN) when there is nothing.
    return total / count.clamp(min=1)


def masked_lm(
    hidden: torch.Tensor, labels: torch.Tensor, decoder: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (N, V), labels (N,), summed cross-entropy, N) of the N predicted positions of `hidden` (B, T, H):
    only they reach the vocabulary `decoder`."""
    predicted = labels != IGNORE_INDEX  # (B, T)
    logits = decoder(hidden[predicted])  # (N, V)
    targets = labels[predicted]
    return logits, targets, F.cross_entropy(logits.float(), targets, reduction="sum"), predicted.sum()


class PretrainingObjective(nn.Module):
    """MLM (+ NSP/SOP when the batch has next_sentence_label) on a BertForPreTraining, loss as transformers'.

    `global_sum`, given under data parallelism, sums a tensor over processes: the MLM loss is then the mean
    over every masked token of the global batch (global_mean), the same loss and gradient as one process with
    the whole batch. `encoder` is the model's BertModel.
    """

    def __init__(
        self,
        model: BertForPreTraining,
        global_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
        num_processes: int = 1,
    ):
        super().__init__()
        self.model = model
        self.global_sum = global_sum
        self.num_processes = num_processes

    @property
    def config(self) -> BertConfig:
        return self.model.config

    @property
    def encoder(self) -> BertModel:
        return self.model.bert

    def forward(
        self,
        input_ids,
        token_type_ids,
        labels,
        attention_mask=None,
        next_sentence_label=None,
        position_ids=None,
        cls_positions=None,
        cu_seq_lens=None,
        max_length=None,
        num_tokens=None,
    ) -> dict:
        """A padded batch, or a packed one (bertkit/data/packing.py: restarting position_ids, cls_positions
        (N, 2) of each sequence's [CLS], a 4D block-diagonal attention_mask or varlen cu_seq_lens, and its
        real tokens num_tokens, passed on in the result: fit() counts throughput in them, which the packed
        batch's mask no longer says)."""
        out = self.model.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            **varlen_kwargs(self.model, cu_seq_lens, max_length),
        )
        mlm_logits, mlm_labels, mlm_sum, count = masked_lm(out.last_hidden_state, labels, self.model.cls.predictions)
        mlm_loss = global_mean(mlm_sum, count, self.global_sum, self.num_processes)
        result = {"mlm_loss": mlm_loss, "mlm_logits": mlm_logits, "mlm_labels": mlm_labels, "mlm_sum": mlm_sum}
        loss = mlm_loss
        if next_sentence_label is not None:
            pooled = out.pooler_output
            if cls_positions is not None:  # packed: each sequence's own [CLS], through the same pooler
                pooler = self.model.bert.pooler
                cls = out.last_hidden_state[cls_positions[:, 0], cls_positions[:, 1]]  # (N, H)
                pooled = pooler.activation(pooler.dense(cls))
            nsp_logits = self.model.cls.seq_relationship(pooled)  # (N, 2)
            nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label.long())
            loss = loss + nsp_loss
            result |= {"nsp_loss": nsp_loss, "nsp_logits": nsp_logits, "nsp_labels": next_sentence_label}
        result["loss"] = loss
        if num_tokens is not None:
            result["num_tokens"] = num_tokens
        return result


def checkpoint_layers(model: PreTrainedModel) -> None:
    """train.gradient_checkpointing: transformers' own, non-reentrant (works with frozen inputs and keeps the
    RNG state, so recomputed dropout draws the same masks)."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
