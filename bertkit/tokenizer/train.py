"""Train, save and load a BERT WordPiece tokenizer.

    tok = train_wordpiece(sentences, cfg.tokenizer)   # a transformers BertTokenizer
    save_tokenizer(tok, out_dir)                       # tokenizer.json + vocab.txt + configs
    tok = load_tokenizer(out_dir)                      # also any Hugging Face BERT dir

The saved dir loads with `BertTokenizerFast.from_pretrained(dir)`; vocab.txt is written too because
transformers 5 omits it and google-research/bert, UER and NVIDIA tooling need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizer, PreTrainedTokenizerBase

from bertkit.config.sections import TokenizerConfig
from bertkit.errors import BertkitError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(sentences: Iterable[str], cfg: TokenizerConfig, model_max_length: int = 512) -> BertTokenizer:
    """WordPiece with BERT's normalisation: clean text, CJK characters split, optional lower-casing."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=cfg.strip_accents, lowercase=cfg.lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    limit = {} if cfg.limit_alphabet is None else {"limit_alphabet": cfg.limit_alphabet}  # absent = no limit
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=SPECIAL_TOKENS,
        continuing_subword_prefix="##",
        show_progress=False,
        **limit,
    )
    tok.train_from_iterator(sentences, trainer=trainer)
    # The trainer numbers tokens in hash-map order, which changes from run to run: a sorted order gives the
    # same corpus the same ids (up to ties between equally frequent merges at the end of training, which the
    # trainer also breaks in hash-map order). Rebuilt through transformers so the saved files carry BERT's own
    # pipeline and tokenizer_class.
    learned = sorted(set(tok.get_vocab()) - set(SPECIAL_TOKENS), key=_vocab_order)
    return BertTokenizer(
        vocab={token: i for i, token in enumerate(SPECIAL_TOKENS + learned)},
        do_lower_case=cfg.lowercase,
        strip_accents=cfg.strip_accents,
        tokenize_chinese_chars=True,
        model_max_length=model_max_length,
    )


def _vocab_order(token: str) -> tuple:
    """Single characters, then their ## forms, then longer pieces; alphabetical within each group."""
    piece = token.removeprefix("##")
    return (len(piece) > 1, token.startswith("##"), token)


def save_tokenizer(tok: PreTrainedTokenizerBase, directory: Path) -> None:
    tok.save_pretrained(directory)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (Path(directory) / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in vocab), encoding="utf-8")


def has_tokenizer(directory: Path) -> bool:
    """Whether a dir holds a BERT tokenizer (tokenizer.json or vocab.txt)."""
    return any((Path(directory) / name).is_file() for name in ("tokenizer.json", "vocab.txt"))


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """Load a BERT tokenizer from a local dir; one clear error if there is none."""
    directory = Path(directory)
    if not has_tokenizer(directory):
        raise BertkitError(
            f"{directory}: no tokenizer here (tokenizer.json or vocab.txt); "
            "run `bertkit tokenize` first or point tokenizer.from_dir at a BERT dir"
        )
    # BertTokenizer, not AutoTokenizer: the latter imports torch, a second of start-up for every command.
    tok = BertTokenizer.from_pretrained(str(directory))
    missing = [t for t in ("cls_token", "sep_token", "mask_token", "pad_token") if getattr(tok, t) is None]
    if missing:
        raise BertkitError(f"{directory}: tokenizer lacks {', '.join(missing)}; it is not a BERT tokenizer")
    return tok
