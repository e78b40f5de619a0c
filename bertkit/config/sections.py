"""The recipe's sections: typed models, one per concern, composed into each command's recipe (recipes.py).

    train = TrainConfig(lr=5e-4)          # checked: a float > 0, inf/NaN refused
    TaskConfig(type="regression", n_best=5)   # error: n_best is for question-answering

A section that several commands read in part is split into a base and the models that extend it: the corpus
keys (DataConfig) and the examples' dir (DataDirConfig), pretraining's evaluation (PretrainEvalConfig) and
`bertkit eval`'s (EvalConfig). Attribute docstrings are the keys' documentation: `bertkit COMMAND --help` and
docs/configuration.md are generated from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


def _dir_name(value: str) -> str:
    """A value that becomes one component of an output path: '../x' or '..' would write outside the run's dir,
    '' or '.' into the parent's, and '.x' would be hidden."""
    if not value or value.startswith(".") or any(c in value for c in "/\\\0"):
        raise ValueError(
            "must be a plain directory name (no '/' or '\\', not empty, not starting with '.'), e.g. topic"
        )
    return value


Precision = Literal["no", "bf16", "fp16", "auto"]


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

    @field_validator("add_words")
    @classmethod
    def _one_word_each(cls, words: list[str]) -> list[str]:
        # Text is split at whitespace before tokens are matched, so an entry holding a space could never match.
        for word in words:
            if any(c.isspace() for c in word.strip()):
                raise ValueError(f"{word!r} holds whitespace; a vocabulary entry is one word without spaces")
        return words


class DataDirConfig(Section):
    """Where the pretraining examples are (`bertkit eval` of a pretrained model reads them there)."""

    dataset_dir: Path | None = None
    """Where the examples are written/read; default `<output_dir>/data`."""


class PretrainDataConfig(DataDirConfig):
    """`bertkit pretrain`: the examples to train on."""

    more_dataset_dirs: list[Path] = []
    """Further tokenize outputs trained on together with dataset_dir (the same tokenizer, objective and
    max_seq_length): their splits are read where they are and joined, nothing copied."""


class DataConfig(DataDirConfig):
    """`bertkit tokenize`: the raw corpus and the sentence-pair pretraining examples made from it."""

    files: list[str] = []
    """Corpus files, glob patterns or directories (their .txt/.jsonl, .gz/.bz2/.xz too): one sentence per line, a
    blank line between documents. Also URLs fsspec opens (`s3://bucket/dir/*.txt.gz`, `hf://datasets/owner/name/
    path`, `gs://`, `https://`) and `datasets` data sets streamed by name (`hf:name[:config]:split`, a split cut as
    `train[:100000]`; one row a document, its text in text_field), and Parquet files (read the same way). A single
    path may be given as a plain string."""
    text_field: str = "text"
    """JSONL and Parquet files and data sets: the field holding a document's text."""
    encoding: str | None = None
    """Text files' encoding, a Python codec name (gb18030, big5, shift_jis, utf-16); default UTF-8. A byte-order
    mark (UTF-8, UTF-16, UTF-32) decides for its file whatever this says. A file that is mostly not in the
    encoding is refused with the encoding its start reads as."""
    split_sentences: bool = False
    """Split lines into sentences at Chinese 。！？； and English . ! ? (for text that is not one sentence per
    line)."""
    on_error: Literal["skip", "strict"] = "skip"
    """Lines that are not UTF-8, not valid JSON or longer than max_line_chars: `skip` counts them and reports the
    first; `strict` stops with file:line."""
    max_skipped_share: float = Field(0.05, ge=0, le=1)
    """on_error=skip skips at most this share of a file's lines (a data set's rows): more is refused, judged from
    the file's 1000th line on and at its end. Mostly bad lines mean a wrong encoding or format, not a few broken
    lines."""
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

    @field_validator("encoding")
    @classmethod
    def _text_encoding(cls, value):
        try:
            "a".encode(value or "utf-8")
        except LookupError:  # an unknown name, or a codec that is no text encoding (rot13, hex)
            raise ValueError("not a text encoding Python knows; give a codec name: gb18030, big5, utf-16") from None
        return value


class PositionsConfig(Section):
    """The longest input (tokenize gives the tokenizer this model_max_length)."""

    max_position_embeddings: int = Field(512, ge=1)
    """Longest input the model can take; data.max_seq_length must not exceed it."""


class ModelConfig(PositionsConfig):
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
    objective: Literal["mlm", "electra"] = "mlm"
    """What pretraining trains: `mlm` BERT's masked LM, plus NSP/SOP when the data carries pairs; `electra`
    ELECTRA's replaced-token detection (Clark et al. 2020): a small masked-LM generator, sharing the BERT's
    embeddings, fills the masked positions with tokens sampled from its predictions, and the BERT (the
    discriminator) learns from every token whether it was replaced. NSP/SOP labels are not used. The output is
    the discriminator as a plain BertModel, with the generator in generator/ (docs/pretraining.md)."""
    generator_size: float = Field(0.25, gt=0, le=1)
    """objective=electra: the generator's hidden size as a share of the BERT's (ELECTRA found 1/4 to 1/2 best),
    with max(1, H/64) heads, an FFN of 4H and as many layers. Not used when model.init_from (or the checkpoint
    resumed) has a generator: it goes on with that one."""
    discriminator_weight: float = Field(50.0, gt=0)
    """objective=electra: λ, the weight of the replaced-token-detection loss, added to the generator's MLM loss
    (50 in the paper)."""

    @model_validator(mode="after")
    def _electra_keys(self):
        # Read by the ELECTRA objective only: set under objective=mlm they would be silently ignored. Defaults
        # pass, so that a saved bertkit.yaml loads.
        for name in ("generator_size", "discriminator_weight"):
            if self.objective != "electra" and getattr(self, name) != type(self).model_fields[name].default:
                raise RuleError("{0} is for {1}=electra; remove it, or set {1}=electra", name, "objective")
        return self


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
    """Passes over the training data (a fraction stops mid-pass); ignored when `max_steps` is set."""
    clip_grad_norm: float | None = Field(1.0, gt=0)
    """Gradient norm clipping; null turns it off (a norm ≤ 0 would flip or zero every gradient)."""
    gradient_checkpointing: bool = False
    """Recompute each encoder layer's activations in the backward pass instead of keeping them (transformers'
    own checkpointing): activation memory falls to about one layer's, for a larger model or batch on the same
    machine, at about a third more compute; the gradients are the same (dropout masks are replayed)."""
    precision: Precision = "no"
    """Mixed precision (through Accelerate); fp16 needs a GPU (on a CPU, Accelerate would run fp32). `auto`: bf16
    where the hardware runs it fast (AMX or AVX512-BF16 CPUs, Ampere or newer GPUs), else no; the choice is
    printed and saved in the run's resolved.yaml."""
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
    saved in the run's resolved.yaml."""

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


FAMILIES = (
    "classification",
    "multi-label-classification",
    "regression",
    "token-classification",
    "question-answering",
    "multiple-choice",
)
Family = Literal[FAMILIES]  # bertkit.tasks.TASKS has one entry each (a test checks)


def _of(family: str | tuple[str, ...], default: Any, **constraints) -> Any:
    """A finetune.task key that only `family` (or these families) reads: set for another family it is an error,
    not ignored."""
    families = (family,) if isinstance(family, str) else family
    return Field(default, json_schema_extra={"families": list(families)}, **constraints)


class TaskColumnsConfig(Section):
    """A task's family, the columns its inputs come in, and their length."""

    type: Family = "classification"
    """classification (one text or a pair), multi-label-classification (a list of labels per text, or names
    joined by "|"), regression (a score for a pair), token-classification (a tag per word: BIO/BIOES entities
    or plain tags such as POS), question-answering (SQuAD/CMRC JSON), multiple-choice."""
    text_column: str = "text"
    """The text (classification, regression) or the context (multiple choice)."""
    text_pair_column: str | None = None
    """Second text of a sentence pair; unset for single sentences."""
    label_column: str = "label"
    """Class name, score (regression) or the right choice's index (multiple choice)."""
    max_seq_length: int = Field(128, ge=8)
    """Tokens per input; longer texts are truncated (classification) or cut into overlapping windows (tagging,
    question answering)."""
    truncation: Literal["head", "tail", "head+tail"] = _of(
        ("classification", "multi-label-classification", "regression"), "head"
    )
    """Which part of a text longer than max_seq_length is kept: its start, its end, or both (the first quarter
    and the end: the best cut on long reviews in Sun et al. 2019, "How to Fine-Tune BERT for Text
    Classification"). Single texts; a pair is cut longest first. predict and serve cut as the model was trained."""


class TaskFilesConfig(Section):
    """A task's name (its output dir) and its held-out files."""

    name: str = "task"
    """Names the output dir `<output_dir>/finetune/<name>`."""
    _name_is_dir = field_validator("name")(lambda cls, value: _dir_name(value))
    validation_file: Path | None = None
    """Dev file: evaluated during training, picks the best checkpoint."""
    test_file: Path | None = None
    """Held-out file that `bertkit eval` scores by default."""


class TaskDataConfig(TaskFilesConfig, TaskColumnsConfig):
    """The labelled files of a task and their columns (`bertkit export` scores int8 against fp32 with them)."""


class TaskReadingConfig(TaskColumnsConfig):
    """How every family reads its inputs and decodes its predictions (`bertkit predict` reads these)."""

    tokens_column: str = _of("token-classification", "tokens")
    """Token classification: the list of words (characters for Chinese)."""
    tags_column: str = _of("token-classification", "tags")
    """Token classification: one tag per word (BIO, BIOES, or plain tags such as POS)."""
    tag_scheme: Literal["auto", "BIO", "BIOES", "plain"] = _of("token-classification", "auto")
    """Token classification: how tags are read and scored. auto: from the train file's tags (BIOES when one has
    an E- or S- prefix, BIO when the others have B- or I-, plain when none but O has a prefix; a mix is an
    error). BIO/BIOES: entities, scored by entity F1 (seqeval). plain: every tag a class of its own, scored per
    word (accuracy, per-tag and micro/macro F1). Stored in the model's config.json as `tag_scheme`."""
    question_column: str = _of("multiple-choice", "question")
    """Multiple choice: the question joined to each candidate (optional)."""
    choices_column: str = _of("multiple-choice", "choices")
    """Multiple choice: the list of candidates."""
    stride: int = Field(32, ge=0)
    """Overlap in tokens between the windows of a long input (document stride)."""
    n_best: int = _of("question-answering", 20, ge=1)
    """Question answering: start and end candidates per window."""
    max_answer_length: int = _of("question-answering", 30, ge=1)
    """Question answering: longest answer in tokens."""
    allow_no_answer: bool | None = _of("question-answering", None)
    """Question answering: whether the model may answer "no answer" (""); unset: as learned from the training
    file (yes for SQuAD v2.0: it says "version": "v2.0" or has unanswerable questions), stored in the model's
    config.json."""
    null_score_diff_threshold: float = _of("question-answering", 0.0)
    """Question answering: "no answer" wins when the [CLS] score minus the best span's score exceeds this (as in
    transformers' run_qa); raise it for fewer "no answer"s."""

    @model_validator(mode="after")
    def _windows_advance(self):
        # Tagging and QA cut a long input into windows of max_seq_length tokens, up to 3 of them [CLS] [SEP]
        # [SEP]; tokenizers aborts (a Rust panic) when the overlap leaves no new token per window.
        windowed = self.type in ("token-classification", "question-answering")
        if windowed and self.stride >= self.max_seq_length - 3:
            raise RuleError(
                f"{{0}}={self.stride} leaves no room for new tokens in windows of {{1}}={self.max_seq_length}; "
                f"set {{0}} below {self.max_seq_length - 3}",
                "stride",
                "max_seq_length",
            )
        return self

    @model_validator(mode="after")
    def _family_keys(self):
        # Keys stay flat under finetune.task, but some are read by one family only: set for another, they would
        # be silently ignored. The default value is allowed, so that a saved bertkit.yaml loads.
        for name, field in type(self).model_fields.items():
            families = (field.json_schema_extra or {}).get("families")
            if (
                families
                and self.type not in families
                and name in self.model_fields_set
                and getattr(self, name) != field.default
            ):
                raise RuleError(
                    f"{{0}} is for {' or '.join(families)}, not {self.type}; remove it, or set {{1}}={families[0]}",
                    name,
                    "type",
                )
        return self


class TaskEvalConfig(TaskFilesConfig, TaskReadingConfig):
    """`bertkit eval`: the task's held-out files, read and scored as its family does."""


class TaskConfig(TaskEvalConfig):
    """`bertkit finetune`: the labelled data, its columns, and task-specific settings."""

    train_file: Path | None = None
    """JSONL, JSON, CSV or TSV with a header line (SQuAD JSON for question answering)."""
    crf: bool = _of("token-classification", False)
    """Token classification: a linear-chain CRF over the words' tags (learned transitions, Viterbi decoding),
    for BERT and the BiLSTM; the BERT model still loads in plain transformers as BertForTokenClassification."""
    crf_lr: float = _of("token-classification", 1e-2, gt=0)
    """Token classification with crf: the learning rate of the CRF's transition scores (they start at zero;
    at BERT's fine-tuning LR they would hardly move in a few epochs). Follows the same schedule."""
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
    dropout: float | None = Field(None, ge=0, lt=1)
    """BERT's hidden and attention dropout while fine-tuning (default: the model's config.json). A model pretrained
    without dropout (recipes/pretrain/laptop-hour.yaml, as in Cramming) saves 0 there; 0.1 is BERT's fine-tuning
    value."""
    task: TaskConfig = TaskConfig()
    train: TrainConfig = TrainConfig(lr=5e-5, epochs=3, batch_size=32, warmup_ratio=0.1)
    early_stopping_patience: int | None = Field(None, ge=1)
    """Stop when the dev metric has not improved for this many evaluations."""
    group_by_length: bool = True
    """Batches of inputs of similar length (shuffled, then sorted by length within groups of 50 batches, as
    transformers' LengthGroupedSampler): less padding, the same examples per epoch."""


class EvalTaskConfig(Section):
    """What `bertkit eval` reads of finetune: how the task's files are read and scored."""

    task: TaskEvalConfig = TaskEvalConfig()


class PredictTaskConfig(Section):
    """What `bertkit predict` reads of finetune: how the task's inputs are read and decoded."""

    task: TaskReadingConfig = TaskReadingConfig()


class ExportTaskConfig(Section):
    """What `bertkit export` reads of finetune: the task's dev file, to score the int8 model against fp32."""

    task: TaskDataConfig = TaskDataConfig()


class EvalBatchConfig(Section):
    """Batches of evaluation (fine-tuning's dev evaluations too)."""

    batch_size: int = Field(64, ge=1)


class PretrainEvalConfig(EvalBatchConfig):
    """Pretraining's evaluations: batches, and the seed of their masking."""

    seed: int = 0
    """Seed of the evaluation masking, so MLM numbers are comparable between runs."""
    masking_rate: float | None = Field(None, gt=0, lt=1)
    """Share of held-out tokens masked for the MLM scores, and for ELECTRA the tokens its generator replaces
    (default: masking.rate). A fixed rate (0.15) makes runs trained at different rates comparable: scored at
    30%, a text keeps less of itself to guess from."""


class EvalConfig(PretrainEvalConfig):
    """`bertkit eval`: which model on which data."""

    model_dir: Path | None = None
    """Model to evaluate; default the fine-tuned model of this recipe. A pretraining model (BertForPreTraining)
    is evaluated on MLM/NSP, a classifier on a labelled file."""
    file: Path | None = None
    """Labelled file for a classifier (default: task.test_file, else task.validation_file) or a dataset dir for
    a pretraining model (default: this recipe's dataset)."""
    split: str = "validation"
    """Split of a pretraining dataset dir to evaluate."""
    output_dir: Path | None = None
    """Where report.json and predictions go; default `<output_dir>/eval/<model dir name>`."""
    precision: Precision = "no"
    """Mixed precision of the forward passes: bf16 autocast, `auto` (bf16 where the hardware runs it fast), or no."""
    _precision_off = _off_means("precision", "no")


class FeaturesConfig(Section):
    """Frozen features of a BERT's layers (`bertkit embed`, `bertkit probe`, and pretraining's probe)."""

    pooling: Literal["cls", "mean", "max", "none"] = "mean"
    """Per text: the [CLS] vector, the mean or max over its tokens; `none`: one vector per token (with offsets)."""
    _pooling_off = _off_means("pooling", "none")
    max_seq_length: int | None = Field(None, ge=8)
    """Tokens per text, [CLS] and [SEP] included; longer texts are truncated. At most the model's positions,
    which null takes."""
    batch_size: int = Field(32, ge=1)


class EncoderConfig(FeaturesConfig):
    """A BERT encoder whose frozen features are taken (`bertkit embed`, `bertkit probe`)."""

    model_dir: Path | None = None
    """Any BERT dir; default `<output_dir>/pretrain`."""
    precision: Precision = "no"
    """Mixed precision of the forward passes: bf16 autocast, `auto` (bf16 where the hardware runs it fast), or no."""
    _precision_off = _off_means("precision", "no")


class EmbedConfig(EncoderConfig):
    """`bertkit embed`: contextual embeddings of every text of a file."""

    file: Path | None = None
    """A text file (one text per line), or a JSONL/JSON/CSV/TSV file with `text_column`."""
    text_column: str = "text"
    layers: list[int] = Field([-1], min_length=1)
    """Layers to take (0 = embeddings, -1 = last); several are averaged."""
    output_dir: Path | None = None
    """Default `<output_dir>/embed`."""


class ProbeDataConfig(Section):
    """A layer-wise probe's labelled files: a linear classifier per layer on frozen features."""

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


class PretrainProbeConfig(ProbeDataConfig):
    """`bertkit pretrain`: the probe run at every pretraining evaluation, when asked."""

    during_pretraining: bool = False
    """Also probe the model at every pretraining evaluation (train.eval_every): eval/probe/layer_N in metrics.jsonl,
    and probe-during-pretraining.png of the score by layer over the steps."""


class ProbeConfig(ProbeDataConfig):
    """`bertkit probe`: a linear classifier per layer on frozen features of a labelled file."""

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


class PredictConfig(Section):
    """`bertkit predict`: a fine-tuned model on new text."""

    backend: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    """What runs the model: `torch` (its weights, in `precision`), `onnx` / `onnx-int8` (model.onnx /
    model.int8.onnx of a `bertkit export` dir, through onnxruntime on the CPU). auto: torch when the dir has
    weights, else onnx."""
    batch_size: int = Field(64, ge=1)
    precision: Precision = "no"
    """Mixed precision of the forward passes: bf16 autocast, `auto` (bf16 where the hardware runs it fast), or no."""
    _precision_off = _off_means("precision", "no")
    top_k: int | None = Field(None, ge=1)
    """Classification: also list the k most probable classes (`top_k`), best first."""


class ServeConfig(Section):
    """`bertkit serve`: the HTTP server, its batching of concurrent requests and its limits."""

    host: str = "127.0.0.1"
    """The address to listen on; 0.0.0.0 serves every network the machine is on."""
    port: int = Field(8000, ge=0, le=65535)
    """The port (0: any free one, printed at start)."""
    max_batch_size: int = Field(32, ge=1)
    """Most examples in one forward pass, gathered from concurrent requests."""
    max_wait_ms: float = Field(5.0, ge=0)
    """How long a request waits for others to share its forward pass (0: never waits)."""
    max_inputs: int = Field(64, ge=1)
    """Most inputs in one request; more is a 413 error."""
    max_text_chars: int = Field(20_000, ge=1)
    """Longest text (in characters) of one input's field; longer is a 413 error."""
    max_request_bytes: int = Field(1_000_000, ge=1)
    """Largest request body; larger is a 413 error."""


class PushConfig(Section):
    """`bertkit push`: how a model dir is published on the Hub."""

    private: bool = False
    """Create the repo as private (an existing repo keeps its visibility)."""
    checkpoints: bool = False
    """Also upload checkpoints/ (optimizer, scheduler and RNG states for resuming) and TensorBoard logs."""
    commit_message: str | None = None
    """The commit's message; default "Upload <dir name> with bertkit"."""
