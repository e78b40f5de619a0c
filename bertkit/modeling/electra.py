"""ELECTRA's replaced-token detection (Clark et al. 2020) as a pretraining objective, beside BERT's masked LM.

    objective = electra_objective(cfg.model, tokenizer)     # fresh or from model.init_from
    objective = electra_objective(cfg.model, tokenizer, restore=checkpoint)   # a checkpoint or output, as saved
    out = objective(**batch)         # the MLM collator's batch → {"loss", "mlm_loss", "rtd_loss", "rtd_logits", …}
    objective.save_pretrained(out)   # out: the discriminator (BertModel); out/generator; discriminator_head.safetensors

The batch is masked as for BERT (masking.*). The generator, a small masked LM (transformers' ElectraForMaskedLM)
that shares the discriminator's embeddings, predicts the masked positions; a token sampled from its prediction
replaces each of them in the original text; the discriminator (a BertModel with ELECTRA's two-layer head) tells
for every real token, [CLS] and [SEP] included as in google-research/electra, whether it was replaced (a sample
equal to the original counts as original). Loss = generator MLM + discriminator_weight × mean BCE. The
discriminator is the model to keep: saved as a plain BertModel, every BERT head fine-tunes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BertConfig, BertModel, ElectraConfig, ElectraForMaskedLM, PreTrainedTokenizerBase
from transformers.models.electra.modeling_electra import ElectraDiscriminatorPredictions

from bertkit.config.sections import ModelConfig
from bertkit.data.padding import IGNORE_INDEX
from bertkit.errors import BertkitError
from bertkit.modeling.initialization import local_attention_init
from bertkit.modeling.model import (
    UNREADABLE,
    bert_config,
    check_vocabulary,
    global_mean,
    load_for_pretraining,
    load_model,
    masked_lm,
    varlen_kwargs,
)

GENERATOR_SUBDIR = "generator"  # ElectraForMaskedLM.from_pretrained(<dir>/generator)
HEAD_FILE = "discriminator_head.safetensors"  # ElectraDiscriminatorPredictions' state dict


def is_electra(directory: Path) -> bool:
    """Whether `directory` holds an ELECTRA output (a pretrain dir or checkpoint): generator and head beside."""
    directory = Path(directory)
    return (directory / GENERATOR_SUBDIR / "config.json").is_file() and (directory / HEAD_FILE).is_file()


def generator_config(discriminator: BertConfig, share: float) -> ElectraConfig:
    """ELECTRA's generator for `discriminator`: hidden size `share` of its own, max(1, H/64) heads (H rounded to a
    multiple of them), FFN 4H, as many layers; embeddings of the discriminator's width, which it shares."""
    hidden = max(1, round(discriminator.hidden_size * share))
    heads = max(1, hidden // 64)
    hidden = round(hidden / heads) * heads
    d = discriminator
    return ElectraConfig(
        vocab_size=d.vocab_size,
        embedding_size=d.hidden_size,
        hidden_size=hidden,
        num_hidden_layers=d.num_hidden_layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        hidden_act=d.hidden_act,
        hidden_dropout_prob=d.hidden_dropout_prob,
        attention_probs_dropout_prob=d.attention_probs_dropout_prob,
        max_position_embeddings=d.max_position_embeddings,
        type_vocab_size=d.type_vocab_size,
        initializer_range=d.initializer_range,
        layer_norm_eps=d.layer_norm_eps,
        pad_token_id=d.pad_token_id,
        attn_implementation="sdpa",
    )


def share_embeddings(generator: ElectraForMaskedLM, discriminator: BertModel) -> ElectraForMaskedLM:
    """The generator reads the discriminator's embedding module itself (word, position and token-type embeddings
    and their LayerNorm, all tied in the paper; BertEmbeddings and ElectraEmbeddings take the same call), and its
    decoder is tied to those word embeddings again (tie_weights recomputes the tie from the module tree)."""
    generator.electra.embeddings = discriminator.embeddings
    generator.tie_weights()
    return generator


def discriminator_head(config: BertConfig) -> ElectraDiscriminatorPredictions:
    """ELECTRA's head: dense H→H, the activation, dense H→1; initialised as BERT's layers (N(0, 0.02), bias 0)."""
    head = ElectraDiscriminatorPredictions(config)
    for layer in (head.dense, head.dense_prediction):
        nn.init.normal_(layer.weight, std=config.initializer_range)
        nn.init.zeros_(layer.bias)
    return head


def sample(logits: torch.Tensor) -> torch.Tensor:
    """A token per row of `logits` (N, V) drawn from its softmax, by the Gumbel-max trick as google-research/electra
    samples, from torch's RNG (so a resumed run draws the same)."""
    uniform = torch.rand(logits.shape, device=logits.device)
    return (logits.float() - torch.log(-torch.log(uniform + 1e-9) + 1e-9)).argmax(-1)


class ElectraObjective(nn.Module):
    """Generator MLM + `discriminator_weight` × replaced-token detection on the MLM collator's batches.

    Under data parallelism (`global_sum`) both losses are means over the global batch (model.global_mean): the
    generator's over its masked tokens, the discriminator's over the real tokens. Every parameter takes part in
    every step (the discriminator has no pooler), so DDP needs no search for unused ones. `save_pretrained`
    writes the three parts; `encoder` is the discriminator, the BertModel that is kept.
    """

    def __init__(
        self,
        discriminator: BertModel,
        generator: ElectraForMaskedLM,
        head: ElectraDiscriminatorPredictions,
        discriminator_weight: float,
        global_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
        num_processes: int = 1,
    ):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.head = head
        self.discriminator_weight = discriminator_weight
        self.global_sum = global_sum
        self.num_processes = num_processes

    @property
    def config(self) -> BertConfig:
        return self.discriminator.config

    @property
    def encoder(self) -> BertModel:
        return self.discriminator

    def save_pretrained(self, directory: Path) -> None:
        directory = Path(directory)
        self.discriminator.save_pretrained(directory)
        self.generator.save_pretrained(directory / GENERATOR_SUBDIR)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, directory / HEAD_FILE)

    def forward(
        self,
        input_ids,
        token_type_ids,
        labels,
        attention_mask=None,
        next_sentence_label=None,  # ELECTRA has no sentence-pair task: the data's labels go unused
        position_ids=None,
        cls_positions=None,
        cu_seq_lens=None,
        max_length=None,
        num_tokens=None,
    ) -> dict:
        """A padded or packed batch, as PretrainingObjective takes it."""
        shared = {"attention_mask": attention_mask, "token_type_ids": token_type_ids, "position_ids": position_ids}
        generator = self.generator
        hidden = generator.electra(
            input_ids=input_ids, **shared, **varlen_kwargs(generator, cu_seq_lens, max_length)
        ).last_hidden_state  # (B, T, Hg)
        mlm_logits, mlm_labels, mlm_sum, count = masked_lm(
            hidden, labels, lambda h: generator.generator_lm_head(generator.generator_predictions(h))
        )
        mlm_loss = global_mean(mlm_sum, count, self.global_sum, self.num_processes)
        predicted = labels != IGNORE_INDEX  # (B, T)
        original = torch.where(predicted, labels, input_ids)
        corrupted = original.masked_scatter(predicted, sample(mlm_logits.detach()))  # no gradient through sampling
        real = original != self.discriminator.config.pad_token_id  # padding holds [PAD], packed rows too
        hidden = self.discriminator(
            input_ids=corrupted, **shared, **varlen_kwargs(self.discriminator, cu_seq_lens, max_length)
        ).last_hidden_state  # (B, T, H)
        rtd_logits = self.head(hidden[real])  # (M,): the real tokens only
        rtd_labels = (corrupted != original)[real]
        rtd_sum = F.binary_cross_entropy_with_logits(rtd_logits.float(), rtd_labels.float(), reduction="sum")
        rtd_loss = global_mean(rtd_sum, real.sum(), self.global_sum, self.num_processes)
        result = {
            "loss": mlm_loss + self.discriminator_weight * rtd_loss,
            "mlm_loss": mlm_loss,
            "mlm_logits": mlm_logits,
            "mlm_labels": mlm_labels,
            "mlm_sum": mlm_sum,
            "rtd_loss": rtd_loss,
            "rtd_logits": rtd_logits,
            "rtd_labels": rtd_labels,
            "rtd_mask": real,
        }
        if num_tokens is not None:
            result["num_tokens"] = num_tokens
        return result


def electra_objective(
    cfg: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    allow_pickle: bool = False,
    restore: Path | None = None,
    global_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
    num_processes: int = 1,
) -> ElectraObjective:
    """The three parts as `restore` (an ELECTRA checkpoint or output) holds them, else from `cfg.init_from` (an
    ELECTRA output: all three; any other BERT: its encoder as the discriminator, a fresh generator and head),
    else fresh of cfg's size."""
    if restore is not None:
        source = Path(restore)
        discriminator = load_model(BertModel, source, allow_pickle, add_pooling_layer=False)
        check_vocabulary(discriminator, tokenizer, source)
    elif cfg.init_from is not None:
        source = Path(cfg.init_from)
        discriminator = load_for_pretraining(BertModel, source, tokenizer, allow_pickle, add_pooling_layer=False)
    else:
        source = None
        discriminator = BertModel(bert_config(cfg, tokenizer), add_pooling_layer=False)
        if cfg.init == "local":
            local_attention_init(discriminator)
    if source is not None and is_electra(source):
        generator, head = load_generator_and_head(source, discriminator, allow_pickle)
    else:
        generator = ElectraForMaskedLM(generator_config(discriminator.config, cfg.generator_size))
        head = discriminator_head(discriminator.config)
    generator = share_embeddings(generator, discriminator)
    return ElectraObjective(discriminator, generator, head, cfg.discriminator_weight, global_sum, num_processes)


def load_generator_and_head(
    directory: Path, discriminator: BertModel, allow_pickle: bool = False
) -> tuple[ElectraForMaskedLM, ElectraDiscriminatorPredictions]:
    """The generator and head saved beside `directory`'s discriminator."""
    generator = load_model(ElectraForMaskedLM, directory / GENERATOR_SUBDIR, allow_pickle)
    if generator.config.vocab_size != discriminator.config.vocab_size:
        raise BertkitError(
            f"{directory}: the generator's vocabulary ({generator.config.vocab_size}) differs from the data's "
            f"({discriminator.config.vocab_size}); an ELECTRA output continues on its own vocabulary only: tokenize "
            f"with tokenizer.from_dir={directory}, or continue from its discriminator alone (a copy of the dir "
            f"without {GENERATOR_SUBDIR}/)"
        )
    head = discriminator_head(discriminator.config)
    try:
        head.load_state_dict(load_file(directory / HEAD_FILE))
    except UNREADABLE as e:
        raise BertkitError(
            f"{directory / HEAD_FILE}: cannot load the discriminator head ({type(e).__name__}); check that the "
            "file is complete and of this model's size"
        ) from e
    return generator, head
