"""Typed recipe sections, recipe loading and `key=value` overrides.

    cfg = load_recipe("recipes/demo-zh.yaml", ["train.lr=5e-4", "output_dir=runs/mine"], "pretrain")
    cfg.train.lr           # 0.0005, checked to be a float
    save_config(cfg, cfg.pretrain_dir)

A recipe is one YAML file holding one complete run; every command reads the sections it needs, as
COMMAND_SECTIONS says (`bertkit COMMAND --help` lists those keys). Unknown keys, values of the wrong type and
command-line overrides of keys the command does not read are one-line errors naming the key, where it came
from, and the nearest valid key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bertkit.atomic import write_text
from bertkit.errors import BertkitError

CONFIG_FILE = "bertkit.yaml"
RESOLVED_FILE = "resolved.yaml"  # what `auto` became: the recipe itself keeps what was asked


class Section(BaseModel):
    # Attribute docstrings become field descriptions: `bertkit COMMAND --help` lists them. No float may be
    # inf or NaN: `lr: .inf` or `1e999` would train without an error and save NaN weights.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value, info):
        # YAML 1.1 reads yes/no/on/off as booleans, which pydantic would take as 1 and 0: `lr: yes` is not 1.0.
        annotation = cls.model_fields[info.field_name].annotation
        kinds = set(get_args(annotation)) or {annotation}  # int | None → {int, None}; int → {int}
        if isinstance(value, bool) and kinds & {int, float} and bool not in kinds:
            raise ValueError("must be a number, not true/false (YAML reads yes/no/on/off as those)")
        return value


class RuleError(ValueError):
    """A rule between fields of one section. The template names the fields {0}, {1}, …, so that the error
    line can give their full keys (masking.mask_prob) once the section's place in the recipe is known."""

    def __init__(self, template: str, *keys: str):
        super().__init__(template.format(*keys))
        self.template, self.keys = template, keys


def _off_means(field: str, off: str | None):
    """A validator of a field with an 'off' value: YAML 1.1 reads `no`, `off` and `false` as False (and `null`
    and `~` as None), and a user who types one of them means `off`."""
    return field_validator(field, mode="before")(lambda cls, value: off if value is False or value is None else value)


def _checks_tasks(info: ValidationInfo) -> bool:
    """Whether to check finetune.task against the task registry: importing it imports torch and transformers'
    models (seconds), so only a command that reads finetune.task does (any, when no command is given)."""
    command = (info.context or {}).get("command")
    return command is None or reads(command, "finetune.task.type")


def _dir_name(value: str) -> str:
    """A value that becomes one component of an output path: '../x' or '..' would write outside the run's dir,
    '' or '.' into the parent's, and '.x' would be hidden."""
    if not value or value.startswith(".") or any(c in value for c in "/\\\0"):
        raise ValueError(
            "must be a plain directory name (no '/' or '\\', not empty, not starting with '.'), e.g. topic"
        )
    return value


class TokenizerConfig(Section):
    """`bertkit tokenize`: the WordPiece vocabulary and how text becomes tokens and words."""

    from_dir: Path | None = None
    """Reuse the tokenizer of this dir (a bertkit or Hugging Face BERT dir with vocab.txt/tokenizer.json)
    instead of training one."""
    vocab_size: int = Field(8000, gt=5)
    """Size of the trained vocabulary, its 5 special tokens ([PAD] [UNK] [CLS] [SEP] [MASK]) included."""
    min_frequency: int = Field(2, ge=1)
    """A merged word piece must occur this often to enter the vocabulary."""
    limit_alphabet: int | None = Field(None, ge=1)
    """Most single characters kept; None keeps them all (the `tokenizers` default of 1000 drops most Chinese
    characters to [UNK])."""
    lowercase: bool = True
    """Lower-case the text (BERT 'uncased'); Chinese is unaffected."""
    strip_accents: bool | None = None
    """Strip accents; None follows `lowercase`, as in BERT."""
    segmenter: Literal["rjieba", "jieba", "none"] = "rjieba"
    """Word segmenter for whole-word ids of Chinese text; 'none' makes every Chinese character its own word.
    English words are always found from `##` pieces."""
    _segmenter_off = _off_means("segmenter", "none")
    train_sample_mb: float | None = Field(1024, gt=0)
    """Learn the vocabulary from the corpus' first this many MB (a 30k vocabulary is settled long before a
    gigabyte, and training on 100 GB would take hours); null uses everything."""
    user_dict: Path | None = None
    """A jieba user dictionary (`word [freq] [tag]` per line) of domain words to keep whole."""
    add_words: list[str] = []
    """Words to add to the vocabulary (those it splits or misses) as tokens after its own: a released BERT's
    vocabulary (from_dir) extended for a domain; `bertkit pretrain` with model.init_from then starts each new
    embedding as the mean of the pieces' it replaces."""
    add_words_file: Path | None = None
    """A file of words to add, one per line (as add_words)."""
    add_frequent_words: int = Field(0, ge=0)
    """Also add the corpus' this many most frequent words (the segmenter's, 2+ characters, seen at least
    min_frequency times) that the vocabulary splits or misses."""


class DataConfig(Section):
    """`bertkit tokenize`: the raw corpus and the sentence-pair pretraining examples made from it."""

    files: list[str] = []
    """Corpus files, glob patterns or directories (their .txt/.jsonl, .gz/.bz2/.xz too): one sentence per line, a
    blank line between documents. Also URLs fsspec opens (`s3://bucket/dir/*.txt.gz`, `hf://datasets/owner/name/
    path`, `gs://`, `https://`) and `datasets` data sets streamed by name (`hf:name[:config]:split`, a split cut as
    `train[:100000]`; one row a document, its text in text_field). A single path may be given as a plain string."""
    text_field: str = "text"
    """JSONL files: the field holding a document's text."""
    split_sentences: bool = False
    """Split lines into sentences at Chinese 。！？； and English . ! ? (for text that is not one sentence per
    line)."""
    on_error: Literal["skip", "strict"] = "skip"
    """Lines that are not UTF-8, not valid JSON or longer than max_line_chars: `skip` counts them and reports the
    first; `strict` stops with file:line."""
    max_line_chars: int = Field(20000, ge=1)
    """Longer lines are bad input (see on_error)."""
    objective: Literal["nsp", "sop", "packed"] = "nsp"
    """Examples to build: `nsp` sentence pairs with random next (BERT), `sop` sentence order (ALBERT), `packed`
    full rows of consecutive text for MLM only (RoBERTa FULL-SENTENCES)."""
    max_seq_length: int = Field(128, ge=8)
    """Tokens per example, [CLS] and [SEP]s included."""
    short_seq_prob: float = Field(0.1, ge=0, le=1)
    """Share of examples given a random shorter target length, so the model sees short inputs too."""
    dupe_factor: int = Field(1, ge=1)
    """Pairings of the corpus with different random splits (useful for small corpora)."""
    validation_fraction: float = Field(0.05, ge=0, lt=1)
    """Share of documents held out for the validation split."""
    dataset_dir: Path | None = None
    """Where the examples are written/read; default `<output_dir>/data`."""
    more_dataset_dirs: list[Path] = []
    """`bertkit pretrain`: further tokenize outputs trained on together with dataset_dir (the same tokenizer,
    objective and max_seq_length): their splits are read where they are and joined, nothing copied."""
    chunk_kb: int = Field(1024, ge=1)
    """Text per work unit, in kB of whole documents: random-next segments come from the same chunk; worker
    processes and ranks share the chunks out, each seeded by its index."""
    num_proc: int | None = Field(None, ge=1)
    """Worker processes for encoding; default one per CPU core. The output is the same whatever the number."""
    seed: int = 12345
    """Seeds the document split and pair building."""

    @field_validator("files", mode="before")
    @classmethod
    def _one_path(cls, value):
        return [value] if isinstance(value, str) else value


class ModelConfig(Section):
    """`bertkit pretrain`: the BERT to train. A size preset, fields below override it."""

    size: Literal["tiny", "mini", "small", "medium", "base", "large"] = "tiny"
    """google-research/bert sizes: tiny L2/H128, mini L4/H256, small L4/H512, medium L8/H512, base L12/H768,
    large L24/H1024."""
    # Sizes are None (the preset's) or at least 1: 0 is no model, not "the preset's".
    num_hidden_layers: int | None = Field(None, ge=1)
    """Overrides the preset's layers."""
    hidden_size: int | None = Field(None, ge=1)
    """Overrides the preset's hidden size (heads = H/64 and FFN = 4H unless set)."""
    num_attention_heads: int | None = Field(None, ge=1)
    intermediate_size: int | None = Field(None, ge=1)
    max_position_embeddings: int = Field(512, ge=1)
    """Longest input the model can take; data.max_seq_length must not exceed it."""
    # A dropout probability of 1 zeroes every activation.
    hidden_dropout_prob: float = Field(0.1, ge=0, lt=1)
    attention_probs_dropout_prob: float = Field(0.1, ge=0, lt=1)
    init_from: Path | None = None
    """Continue pretraining from this Hugging Face BERT dir instead of a random init."""
    init: Literal["standard", "local"] = "standard"
    """A fresh model's weights: `standard` (transformers': all N(0, 0.02)) or `local`: sinusoidal position
    embeddings and attention weights under which every head starts out looking at nearby tokens
    (bertkit/modeling/initialization.py). `local` leaves the early plateau of a small BERT in hundreds of steps instead
    of thousands; the weights are ordinary BERT weights. Ignored with init_from."""


class MaskingConfig(Section):
    """`bertkit pretrain`: masked-LM corruption, drawn afresh for every batch (dynamic masking)."""

    rate: float = Field(0.15, gt=0, lt=1)
    """Share of (non-special) tokens to predict."""
    mask_prob: float = Field(0.8, ge=0, le=1)
    """Of the predicted tokens: share replaced by [MASK] ..."""
    random_prob: float = Field(0.1, ge=0, le=1)
    """... share replaced by a random token; the rest stay unchanged."""
    whole_word: bool = False
    """Mask all pieces of a word together (word ids from `bertkit tokenize`)."""
    max_predictions_per_seq: int | None = Field(None, ge=1)
    """At most this many masked tokens per sequence (google-research/bert used 20 at length 128); whole words
    (or spans) that would cross it are left unmasked."""
    span: Literal["off", "geometric", "ngram"] = "off"
    """Span masking: mask runs of consecutive whole words (tokens unless whole_word) until about `rate` of the
    tokens are picked, each run's length in words drawn from `geometric` (SpanBERT: span_p, span_max_length) or
    `ngram` (MacBERT: span_ngram_probs); runs never cross [CLS]/[SEP]. `off`: words picked one by one."""
    _span_off = _off_means("span", "off")
    span_p: float = Field(0.2, gt=0, le=1)
    """span=geometric: P(n words) ∝ p·(1 − p)^(n − 1) for n = 1 … span_max_length (SpanBERT's 0.2 and 10: mean
    3.8 words); 1 makes every span one word."""
    span_max_length: int = Field(10, ge=1, le=512)
    """span=geometric: longest span in words (at most 512); the distribution is cut there and renormalised."""
    span_ngram_probs: list[float] = Field([0.4, 0.3, 0.2, 0.1], min_length=1, max_length=512)
    """span=ngram: probabilities of spans of 1, 2, 3 … words (MacBERT: 40/30/20/10% for 1- to 4-grams); they
    must sum to 1."""

    @field_validator("span_ngram_probs")
    @classmethod
    def _a_distribution(cls, value: list[float]) -> list[float]:
        if any(x < 0 for x in value) or abs(sum(value) - 1) > 1e-3:
            raise ValueError("must be probabilities (each ≥ 0) of spans of 1, 2, 3 … words that sum to 1")
        return value

    @model_validator(mode="after")
    def _shares_fit(self):
        if self.mask_prob + self.random_prob > 1:
            raise RuleError(
                f"{{0}} + {{1}} = {self.mask_prob} + {self.random_prob} is over 1 (they are shares of the same "
                "predicted tokens); lower one of them",
                "mask_prob",
                "random_prob",
            )
        return self


class PhaseConfig(Section):
    """One phase of a multi-phase pretraining run (e.g. sequence 128, then 512)."""

    dataset_dir: Path
    """Examples of this phase (a `bertkit tokenize` output)."""
    max_steps: int = Field(ge=1)
    """Optimizer steps of this phase."""
    batch_size: int | None = Field(None, ge=1)
    """Examples per step per process; default train.batch_size."""


class TrainConfig(Section):
    """The optimisation loop, fit() in bertkit/training/loop.py: `finetune.train` of fine-tuning, and the base of
    pretraining's `train`."""

    batch_size: int = Field(32, ge=1)
    """Examples per step per process (before gradient accumulation)."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches summed into one optimizer step."""
    lr: float = Field(1e-4, gt=0)
    """Peak learning rate of AdamW."""
    weight_decay: float = Field(0.01, ge=0)
    """Decoupled weight decay (not applied to biases and LayerNorm)."""
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    """Share of the steps (of the time budget, with `max_time_minutes`) with a linear warm-up before the decay."""
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    """Learning-rate decay after the warm-up: linear or cosine to 0, or constant."""
    optimizer: Literal["adamw", "lamb"] = "adamw"
    """AdamW, or LAMB for very large batches."""
    layer_lr_decay: float | None = Field(None, gt=0, le=1)
    """Layer-wise LR decay (fine-tuning): encoder layer i of L gets lr × decay^(L − i), the embeddings
    lr × decay^(L + 1), the task head lr."""
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps; when unset, `epochs` passes over the data."""
    epochs: float = Field(1.0, gt=0)
    clip_grad_norm: float | None = Field(1.0, gt=0)
    """Gradient norm clipping; null turns it off (a norm ≤ 0 would flip or zero every gradient)."""
    gradient_checkpointing: bool = False
    """Recompute each encoder layer's activations in the backward pass instead of keeping them (transformers'
    own checkpointing): activation memory falls to about one layer's, for a larger model or batch on the same
    machine, at about a third more compute; the gradients are the same (dropout masks are replayed)."""
    precision: Literal["no", "bf16", "fp16", "auto"] = "no"
    """Mixed precision (through Accelerate); fp16 needs a GPU (on a CPU, Accelerate would run fp32). `auto`: bf16
    where the hardware runs it fast (AMX or AVX512-BF16 CPUs, Ampere or newer GPUs), else no; the choice is
    printed and saved in the run's bertkit.yaml."""
    _precision_off = _off_means("precision", "no")
    seed: int = Field(42, ge=0, lt=2**32)
    """Seeds model init, data order and masking (NumPy takes 0 to 2**32 − 1)."""
    log_every: int = Field(10, ge=1)
    """Steps between logged loss lines (metrics.jsonl)."""
    eval_every: int | None = Field(None, ge=0)
    """Steps between evaluations, and one at the end; 0: only at the end. Null: only at the end when
    pretraining, after each epoch when fine-tuning."""
    max_time_minutes: float | None = Field(None, gt=0)
    """A training-time budget: stop cleanly (evaluated, checkpoint and model saved) once the steps have taken
    this long; evaluation and checkpointing are not counted, and the time carries over a resume. The LR schedule
    then follows the budget: progress = max(step / max_steps, time / budget), so the warm-up is `warmup_ratio`
    of the budget and the decay reaches 0 when it is used up (or at max_steps, when they come first; set
    max_steps generously). Resuming with a larger budget trains on from where its schedule stands."""


class PretrainTrainConfig(TrainConfig):
    """`bertkit pretrain`: the loop, plus what only pretraining has (fine-tuning keeps just its best model)."""

    save_every: int | None = Field(None, ge=0)
    """Steps between checkpoints in `checkpoints/step-N`, and one at the end; 0 or null: only at the end (the
    final model is always saved)."""
    keep_last: int = Field(2, ge=1)
    """Checkpoints kept."""
    pack_sequences: bool = True
    """Pack each batch's sequences into full rows, so no compute goes to padding (the loss is unchanged)."""
    packed_attention: Literal["auto", "mask", "varlen"] = "auto"
    """How packed sequences are kept apart: `mask` rows of data.max_seq_length tokens with a block-diagonal
    attention mask (fastest on a CPU); `varlen` all sequences in one row with their boundaries, attention within
    each through SDPA on nested tensors (a GPU's flash / memory-efficient kernels; on a CPU each sequence in
    turn, a little slower).
    `auto`: varlen on a CUDA GPU (unless train.gradient_checkpointing: untried there), else mask; the choice is
    saved in the run's bertkit.yaml."""

    phases: list[PhaseConfig] = []
    """Phases run one after another in one run, on their own data and batch size, with one optimizer, one step
    count and one LR schedule over all of them; empty = one phase on data.dataset_dir."""
    resume: str | None = None
    """Continue a run from a checkpoint: `auto` takes the newest in <output>/checkpoints (starting afresh if
    there is none), or give a checkpoint dir. Model, optimizer, scheduler, step, RNG states and the position in
    the data are restored, so the result equals an uninterrupted run."""
    _resume_off = _off_means("resume", None)

    @model_validator(mode="after")
    def _varlen_packs(self):
        if self.packed_attention == "varlen" and not self.pack_sequences:
            raise RuleError(
                "{0}=varlen keeps packed sequences apart, but {1}=false packs none; set {1}=true, or {0}=auto",
                "packed_attention",
                "pack_sequences",
            )
        return self


class TaskConfig(Section):
    """`bertkit finetune`: the labelled data, its columns, and task-specific settings."""

    type: str = "classification"
    """classification (one text or a pair), multi-label-classification (a list of labels per text, or names
    joined by "|"), regression (a score for a pair), token-classification (a tag per word: BIO/BIOES entities
    or plain tags such as POS), question-answering (SQuAD/CMRC JSON), multiple-choice."""

    @field_validator("type")
    @classmethod
    def _known_family(cls, value: str, info: ValidationInfo) -> str:
        if not _checks_tasks(info):
            return value
        from bertkit.tasks import TASKS  # here, not at the top: the task modules import this module

        if value not in TASKS:
            raise ValueError(f"must be one of {', '.join(TASKS)}")
        return value

    name: str = "task"
    """Names the output dir `<output_dir>/finetune/<name>`."""
    _name_is_dir = field_validator("name")(lambda cls, value: _dir_name(value))
    train_file: Path | None = None
    """JSONL, JSON, CSV or TSV with a header line (SQuAD JSON for question answering)."""
    validation_file: Path | None = None
    """Dev file: evaluated during training, picks the best checkpoint."""
    test_file: Path | None = None
    """Held-out file that `bertkit eval` scores by default."""
    text_column: str = "text"
    """The text (classification, regression) or the context (multiple choice)."""
    text_pair_column: str | None = None
    """Second text of a sentence pair; unset for single sentences."""
    label_column: str = "label"
    """Class name, score (regression) or the right choice's index (multiple choice)."""
    tokens_column: str = "tokens"
    """Token classification: the list of words (characters for Chinese)."""
    tags_column: str = "tags"
    """Token classification: one tag per word (BIO, BIOES, or plain tags such as POS)."""
    tag_scheme: Literal["auto", "BIO", "BIOES", "plain"] = "auto"
    """Token classification: how tags are read and scored. auto: from the train file's tags (BIOES when one has
    an E- or S- prefix, BIO when the others have B- or I-, plain when none but O has a prefix; a mix is an
    error). BIO/BIOES: entities, scored by entity F1 (seqeval). plain: every tag a class of its own, scored per
    word (accuracy, per-tag and micro/macro F1). Stored in the model's config.json as `tag_scheme`."""
    crf: bool = False
    """Token classification: a linear-chain CRF over the words' tags (learned transitions, Viterbi decoding),
    for BERT and the BiLSTM; the BERT model still loads in plain transformers as BertForTokenClassification."""
    crf_lr: float = Field(1e-2, gt=0)
    """Token classification with crf: the learning rate of the CRF's transition scores (they start at zero;
    at BERT's fine-tuning LR they would hardly move in a few epochs). Follows the same schedule."""
    question_column: str = "question"
    """Multiple choice: the question joined to each candidate (optional)."""
    choices_column: str = "choices"
    """Multiple choice: the list of candidates."""
    max_seq_length: int = Field(128, ge=8)
    """Tokens per input; longer texts are truncated (classification) or cut into overlapping windows (tagging,
    question answering)."""
    stride: int = Field(32, ge=0)
    """Overlap in tokens between the windows of a long input (document stride)."""
    n_best: int = Field(20, ge=1)
    """Question answering: start and end candidates per window."""
    max_answer_length: int = Field(30, ge=1)
    """Question answering: longest answer in tokens."""
    allow_no_answer: bool | None = None
    """Question answering: whether the model may answer "no answer" (""); unset: as learned from the training
    file (yes for SQuAD v2.0: it says "version": "v2.0" or has unanswerable questions), stored in the model's
    config.json."""
    null_score_diff_threshold: float = 0.0
    """Question answering: "no answer" wins when the [CLS] score minus the best span's score exceeds this (as in
    transformers' run_qa); raise it for fewer "no answer"s."""
    metric: str | None = None
    """Dev metric that selects the best checkpoint; default: accuracy (classification, multiple choice),
    pearson (regression), f1 (entity F1, answer F1; for plain tags the micro F1 over words, which is accuracy
    when the tag set has no O)."""


class BiLSTMConfig(Section):
    """`bertkit finetune` with finetune.model_type=bilstm: the BiLSTM baseline's shape and learning rate."""

    embedding_dim: int = Field(128, ge=1)
    hidden_size: int = Field(256, ge=1)
    """Per direction."""
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on the embeddings and the LSTM's outputs."""
    lr: float = Field(2e-3, gt=0)
    """Peak learning rate of the BiLSTM, used instead of finetune.train.lr (BERT's, typically 2e-5 to 5e-4):
    a network trained from scratch wants a far larger one."""


class FinetuneConfig(Section):
    """`bertkit finetune`: the model to start from, the task, and the loop."""

    model_dir: Path | None = None
    """Start from this BERT dir (bertkit pretrain output or any local Hugging Face BERT); default
    `<output_dir>/pretrain`."""
    model_type: Literal["bert", "bilstm"] = "bert"
    """`bilstm`: fine-tune a BiLSTM baseline (random embeddings over the same vocabulary, finetune.bilstm) instead
    of BERT, for classification and token classification — the same data, loop and metrics. It needs only a
    tokenizer: model_dir may be a BERT dir (its weights are not used) or a tokenizer dir (`bertkit tokenize`'s
    `<output_dir>/tokenizer`)."""
    bilstm: BiLSTMConfig = BiLSTMConfig()
    task: TaskConfig = TaskConfig()
    train: TrainConfig = TrainConfig(lr=5e-5, epochs=3, batch_size=32, warmup_ratio=0.1)
    early_stopping_patience: int | None = Field(None, ge=1)
    """Stop when the dev metric has not improved for this many evaluations."""
    group_by_length: bool = True
    """Batches of inputs of similar length (shuffled, then sorted by length within groups of 50 batches, as
    transformers' LengthGroupedSampler): less padding, the same examples per epoch."""

    @model_validator(mode="after")
    def _windows_advance(self):
        # Tagging and QA cut a long input into windows of max_seq_length tokens, up to 3 of them [CLS] [SEP]
        # [SEP]; tokenizers aborts (a Rust panic) when the overlap leaves no new token per window.
        windowed = self.task.type in ("token-classification", "question-answering")
        if windowed and self.task.stride >= self.task.max_seq_length - 3:
            raise RuleError(
                f"{{0}}={self.task.stride} leaves no room for new tokens in windows of {{1}}="
                f"{self.task.max_seq_length}; set {{0}} below {self.task.max_seq_length - 3}",
                "task.stride",
                "task.max_seq_length",
            )
        return self

    @model_validator(mode="after")
    def _family_keys(self, info: ValidationInfo):
        # Keys stay flat under finetune.task, but some are read by one family only (Task.fields): set for another,
        # they would be silently ignored. The default value is allowed, so that a saved bertkit.yaml loads.
        task = self.task
        if not task.model_fields_set - {"type"} or not _checks_tasks(info):
            return self
        from bertkit.tasks import TASKS  # here, not at the top: the task modules import this module

        for name, field in TaskConfig.model_fields.items():
            owners = [family for family, spec in TASKS.items() if name in spec.fields]
            if owners and task.type not in owners and getattr(task, name) != field.default:
                raise RuleError(
                    f"{{0}} is for {' and '.join(owners)}, not {task.type}; remove it, or set {{1}}={owners[0]}",
                    f"task.{name}",
                    "task.type",
                )
        return self


class EvalConfig(Section):
    """`bertkit eval`: which model on which data."""

    model_dir: Path | None = None
    """Model to evaluate; default the fine-tuned model of this recipe. A pretraining model (BertForPreTraining)
    is evaluated on MLM/NSP, a classifier on a labelled file."""
    file: Path | None = None
    """Labelled file for a classifier (default: task.test_file, else task.validation_file) or a dataset dir for
    a pretraining model (default: this recipe's dataset)."""
    split: str = "validation"
    """Split of a pretraining dataset dir to evaluate."""
    batch_size: int = Field(64, ge=1)
    output_dir: Path | None = None
    """Where report.json and predictions go; default `<output_dir>/eval/<model dir name>`."""
    seed: int = 0
    """Seed of the evaluation masking, so MLM numbers are comparable between runs."""
    precision: Literal["no", "bf16", "fp16", "auto"] = "no"
    """Mixed precision of the forward passes: bf16 autocast, `auto` (bf16 where the hardware runs it fast), or no."""
    _precision_off = _off_means("precision", "no")


class EmbedConfig(Section):
    """`bertkit embed` (and the features of `bertkit probe`)."""

    model_dir: Path | None = None
    """Any BERT dir; default `<output_dir>/pretrain`."""
    file: Path | None = None
    """A text file (one text per line), or a JSONL/JSON/CSV/TSV file with `text_column`."""
    text_column: str = "text"
    pooling: Literal["cls", "mean", "max", "none"] = "mean"
    """Per text: the [CLS] vector, the mean or max over its tokens; `none`: one vector per token (with offsets)."""
    _pooling_off = _off_means("pooling", "none")
    layers: list[int] = Field([-1], min_length=1)
    """Layers to take (0 = embeddings, -1 = last); several are averaged."""
    max_seq_length: int | None = Field(None, ge=8)
    """Tokens per text, [CLS] and [SEP] included; longer texts are truncated. At most the model's positions,
    which null takes."""
    batch_size: int = Field(32, ge=1)
    precision: Literal["no", "bf16", "fp16", "auto"] = "no"
    """Mixed precision of the forward passes: bf16 autocast, `auto` (bf16 where the hardware runs it fast), or no."""
    _precision_off = _off_means("precision", "no")
    output_dir: Path | None = None
    """Default `<output_dir>/embed`."""


class ProbeConfig(Section):
    """`bertkit probe`: a linear classifier per layer on frozen features of a labelled file."""

    train_file: Path | None = None
    """Labelled JSONL/JSON/CSV/TSV: the probe is fitted on it."""
    test_file: Path | None = None
    """Labelled file the probe is scored on."""
    level: Literal["sentence", "token"] = "sentence"
    """`sentence`: one label per text (mean-pooled features); `token`: `text_column` holds a list of words and
    `label_column` a list of labels of the same length (e.g. POS or NER tags), a word's feature is its first
    piece's."""
    text_column: str = "text"
    label_column: str = "label"
    during_pretraining: bool = False
    """Also probe the model at every pretraining evaluation (train.eval_every): eval/probe/layer_N in metrics.jsonl,
    and probe-during-pretraining.png of the score by layer over the steps."""
    output_dir: Path | None = None
    """Default `<output_dir>/probe`."""


class ExportConfig(Section):
    """`bertkit export`: ONNX with dynamic batch and sequence axes."""

    model_dir: Path | None = None
    """The BERT dir to export; default this recipe's fine-tuned model."""
    quantize: bool = False
    """Also write a dynamic int8 model (onnxruntime), timed against fp32 and scored on the task's dev file."""
    output_dir: Path | None = None
    """Default `<output_dir>/export/<model dir name>`."""


class ConvertConfig(Section):
    """`bertkit convert`: a google-research/bert TensorFlow release as a Hugging Face BERT dir."""

    checkpoint: Path | None = None
    """The release dir (bert_model.ckpt.index/.data-*, bert_config.json, vocab.txt), or a checkpoint prefix in
    it (…/model.ckpt-100000) when it holds several."""
    lowercase: bool | None = None
    """The tokenizer's lower-casing; None: from the release's name (cased_…/multi_cased_… keep case)."""
    output_dir: Path | None = None
    """Default `<output_dir>/converted`."""


class RunConfig(Section):
    """One recipe: every command reads the sections it needs."""

    output_dir: Path = Path("runs/default")
    """Root of the run's outputs."""
    overwrite: bool = False
    """Replace an earlier bertkit output in the command's output dir (`pretrain`: start afresh in a dir holding
    another run's checkpoints, which are deleted); a dir bertkit did not write is never replaced."""
    allow_pickle_weights: bool = False
    """Load a pytorch_model.bin that holds more than tensors with Python's full unpickler, which can run code. By
    default a .bin loads through torch's weights-only unpickler (tensors and plain containers, no code) and a
    file that needs more is refused; safetensors are always preferred."""
    # Recipe key → "repo@commit" of each model/tokenizer key given as a Hub id (bertkit/hub.py): save_config
    # writes these instead of the local cache paths they were resolved to.
    _hub_sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def hub_sources(self) -> dict[str, str]:
        return self._hub_sources

    tokenizer: TokenizerConfig = TokenizerConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    masking: MaskingConfig = MaskingConfig()
    train: PretrainTrainConfig = PretrainTrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    eval: EvalConfig = EvalConfig()
    embed: EmbedConfig = EmbedConfig()
    probe: ProbeConfig = ProbeConfig()
    export: ExportConfig = ExportConfig()
    convert: ConvertConfig = ConvertConfig()

    # Where each stage writes; each can be overridden by an explicit path in its section.
    @property
    def tokenizer_dir(self) -> Path:
        return self.output_dir / "tokenizer"

    @property
    def dataset_dir(self) -> Path:
        return self.data.dataset_dir or self.output_dir / "data"

    @property
    def pretrain_dir(self) -> Path:
        return self.output_dir / "pretrain"

    @property
    def finetune_dir(self) -> Path:
        return self.output_dir / "finetune" / self.finetune.task.name


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key (not section) under `model`, in field order: `train.lr`, `finetune.task.type`, …"""
    keys = []
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            keys += _leaf_keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _is_section(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _annotation(key: str):
    """The type of the RunConfig key or section `key` (dotted); None when there is no such key."""
    annotation: Any = RunConfig
    for part in key.split("."):
        if not _is_section(annotation) or part not in annotation.model_fields:
            return None
        annotation = annotation.model_fields[part].annotation
    return annotation


def _all_but(section: str, model: type[Section], *unread: str) -> tuple[str, ...]:
    return tuple(f"{section}.{name}" for name in model.model_fields if name not in unread)


_FEATURES = (
    "embed.pooling",
    "embed.max_seq_length",
    "embed.batch_size",
    "embed.precision",
)  # of the probe's frozen features
_OUTPUTS = ("output_dir", "overwrite", "allow_pickle_weights")
_EXPORT_TASK = (
    "type",
    "name",
    "validation_file",
    "test_file",
    "text_column",
    "text_pair_column",
    "label_column",
    "max_seq_length",
)

# The recipe sections and keys each command reads (from what its run_* function reads): `bertkit COMMAND --help`
# lists them, and a command-line override of anything else is an error. A recipe file may hold sections that
# other commands read: one recipe serves them all.
COMMAND_SECTIONS: dict[str, tuple[str, ...]] = {
    "tokenize": (
        "output_dir",
        "overwrite",
        "tokenizer",
        *_all_but("data", DataConfig, "more_dataset_dirs"),
        "model.max_position_embeddings",
    ),
    "pretrain": (
        *_OUTPUTS,
        "data.dataset_dir",
        "data.more_dataset_dirs",
        "model",
        "masking",
        "train",
        "eval.batch_size",
        "eval.seed",
        *_all_but("probe", ProbeConfig, "output_dir"),  # with probe.during_pretraining
        *_FEATURES,
    ),
    "finetune": (
        *_OUTPUTS,
        "finetune",
        "eval.batch_size",
    ),
    "eval": (
        *_OUTPUTS,
        "eval",
        *_all_but(
            "finetune.task", TaskConfig, "train_file", "metric", "crf", "crf_lr"
        ),  # name: eval.model_dir's default
        "data.dataset_dir",  # of a pretraining model
        "masking",
    ),
    "embed": (*_OUTPUTS, "embed"),
    "probe": (
        *_OUTPUTS,
        *_all_but("probe", ProbeConfig, "during_pretraining"),
        "embed.model_dir",
        *_FEATURES,
    ),
    # The task's files and columns score an int8 classifier (export.quantize); name: export.model_dir's default.
    "export": (*_OUTPUTS, "export", *(f"finetune.task.{key}" for key in _EXPORT_TASK)),
    "convert": ("output_dir", "overwrite", "convert"),
}


def reads(command: str, key: str) -> bool:
    """Whether `bertkit COMMAND` reads the key, or some key of the section, `key` (dotted: train.lr, train)."""
    return _read(COMMAND_SECTIONS[command], key)


def _read(entries: tuple[str, ...], key: str) -> bool:
    # `key` is, lies in, or holds one of the entries.
    return any(key == e or key.startswith(e + ".") or e.startswith(key + ".") for e in entries)


def _spelled_out(entries) -> list[str]:
    """The RunConfig keys that are, or lie in a section that is, one of the entries; in RunConfig order."""
    return [key for key in _leaf_keys(RunConfig) if any(key == e or key.startswith(e + ".") for e in entries)]


def command_keys(command: str) -> list[str]:
    """Every key `command` reads: its COMMAND_SECTIONS with the sections spelled out."""
    return _spelled_out(COMMAND_SECTIONS[command])


def describe(keys: list[str]) -> str:
    """Each of the given RunConfig keys with its default and description, one line each; a section stands for
    its keys."""
    defaults = RunConfig()
    lines = []
    for key in _spelled_out(keys):
        *sections, name = key.split(".")
        section = defaults
        for part in sections:
            section = getattr(section, part)
        doc = " ".join((type(section).model_fields[name].description or "").split())
        lines.append(f"{key} = {getattr(section, name)!s}" + (f": {doc}" if doc else ""))
    return "\n".join(lines)


def _overridden_keys(key: str, value: Any) -> list[str]:
    """The keys an override sets: `masking={rate: 0.2}` sets masking.rate."""
    if isinstance(value, dict) and value and _is_section(_annotation(key)):
        return [k for name, v in value.items() for k in _overridden_keys(f"{key}.{name}", v)]
    return [key]


def _not_read(command: str, key: str) -> str:
    """The error line of an override of `key`, which `command` does not read."""
    entries, parts = COMMAND_SECTIONS[command], key.split(".")
    # The outermost part of the key the command reads nothing of: `train.*`, or the key itself.
    unread = next(".".join(parts[:n]) for n in range(1, len(parts) + 1) if not _read(entries, ".".join(parts[:n])))
    what = f"{unread}.*" if _is_section(_annotation(unread)) else unread
    keys = command_keys(command)
    # The same key in a section the command does read: train.lr → finetune.train.lr, eval.batch_size → embed.…
    for n in range(len(parts), 0, -1):
        tail = ".".join(parts[-n:])
        close = [k for k in keys if k.endswith("." + tail)]
        if 0 < len(close) <= 3:
            return f"{command} does not read {what}; did you mean {' or '.join(close)}?"
        if close:
            break
    section = unread.rpartition(".")[0]
    some = [k for k in keys if k.startswith(section + ".")] if section else []
    if 0 < len(some) <= 4:  # a few keys of the section are read (eval: train.precision)
        return f"{command} does not read {what}; of {section}.* it reads only {', '.join(some)}"
    return f"{command} does not read {what}; it reads {', '.join(dict.fromkeys(k.split('.')[0] for k in keys))}"


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, where PyYAML silently keeps the last."""

    def construct_mapping(self, node, deep=False):
        first: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: later keys override on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                earlier = first.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if earlier is not key_node:
                line = earlier.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}', first on line {line}; keep one", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=5e-4` → (["train", "lr"], 0.0005). The value is YAML, so lists and null work too."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise BertkitError(f"override '{text}' is not key=value; write e.g. train.lr=5e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _set(tree: dict, path: list[str], value: Any, origin: str) -> None:
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise BertkitError(
                f"{origin}: '{'.'.join(path[: i + 1])}' is a value, not a section; "
                "write the override as section.key=value"
            )
        node = child
    node[path[-1]] = value


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys of the section at `loc` (for 'did you mean')."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            break
        model = field.annotation
    return list(model.model_fields)


def _one_line(err: ValidationError, source: str, overridden: set[str]) -> str:
    e = err.errors()[0]
    loc = [str(p) for p in e["loc"]]
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""

    def origin(*keys: str) -> str:
        # The command line when it set one of the keys or a section holding it (`masking={rate: 2}`).
        sections = {".".join(k.split(".")[:n]) for k in keys for n in range(1, k.count(".") + 2)}
        return "command line" if sections & overridden else source

    rule = e.get("ctx", {}).get("error")
    if isinstance(rule, RuleError):
        keys = [".".join([*loc, k]) for k in rule.keys]
        return f"{origin(*keys)}: {rule.template.format(*keys)}{more}"
    key = ".".join(loc)
    if e["type"] == "extra_forbidden":
        valid = _fields_at(RunConfig, e["loc"][:-1])
        close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1, cutoff=0.5)
        hint = (
            f"did you mean '{'.'.join([*map(str, e['loc'][:-1]), close[0]])}'?"
            if close
            else (f"valid keys here: {', '.join(valid)}")
        )
        return f"{origin(key)}: unknown key '{key}'; {hint}"
    message = e["msg"].removeprefix("Value error, ")  # a field validator's own words
    return f"{origin(key)}: {key}: {message}, got {e.get('input')!r}{more}"


def load_recipe(path: Path | str | None, overrides: list[str] | None = None, command: str | None = None) -> RunConfig:
    """Read a recipe, apply `key=value` overrides, and validate the result. With `command`, an override of a key
    the command does not read (COMMAND_SECTIONS) is an error: `bertkit finetune … train.lr=1e-3` would be
    ignored, as finetune reads finetune.train.lr."""
    if command is not None and command not in COMMAND_SECTIONS:
        raise ValueError(f"unknown command {command!r}; one of {', '.join(COMMAND_SECTIONS)}")
    tree: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise BertkitError(f"{path}: recipe not found; pass a YAML file such as recipes/demo-zh.yaml")
        try:
            tree = yaml.load(path.read_text(encoding="utf-8"), Loader=_RecipeLoader) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            where = getattr(e, "problem_mark", None)
            line = f" line {where.line + 1}" if where else ""
            problem = " ".join(str(getattr(e, "problem", None) or e).split())
            raise BertkitError(f"{path}{line}: not valid YAML ({problem})") from None
        if not isinstance(tree, dict):
            raise BertkitError(f"{path}: a recipe must be a mapping of sections (model:, data:, train:, …)")
    overridden = set()
    for text in overrides or []:
        keys, value = parse_override(text)
        for key in _overridden_keys(".".join(keys), value) if command else []:
            # An unknown key is left to validation, which names the nearest valid one.
            if _annotation(key) is not None and not reads(command, key):
                raise BertkitError(f"command line: {_not_read(command, key)}")
        _set(tree, keys, value, "command line")
        overridden.add(".".join(keys))
    try:
        return RunConfig.model_validate(tree, context={"command": command})
    except ValidationError as e:
        raise BertkitError(_one_line(e, source, overridden)) from None


def save_config(cfg: RunConfig, directory: Path, resolved: dict | None = None) -> Path:
    """Write the effective config next to a command's outputs, and what its `auto` values became on this
    machine (`resolved`, bertkit.training.runtime.run_state) as resolved.yaml beside it."""
    if resolved:
        write_text(directory / RESOLVED_FILE, yaml.safe_dump(resolved, sort_keys=False))
    out = directory / CONFIG_FILE
    tree = cfg.model_dump(mode="json")
    for key, pinned in cfg.hub_sources.items():
        section, name = key.split(".")
        tree[section][name] = pinned
    write_text(out, yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    return out
