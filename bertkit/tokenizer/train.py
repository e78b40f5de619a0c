"""Train, save and load a BERT WordPiece tokenizer.

    tok = train_wordpiece(lambda: sentences, cfg.tokenizer)   # a transformers BertTokenizer
    save_tokenizer(tok, out_dir)                       # tokenizer.json + vocab.txt + configs
    tok = load_tokenizer(out_dir)                      # also any Hugging Face BERT dir

The saved dir loads with `BertTokenizerFast.from_pretrained(dir)`; vocab.txt is written too because
transformers 5 omits it and google-research/bert, UER and NVIDIA tooling need it.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizer, PreTrainedTokenizerBase

from bertkit.config.sections import TokenizerConfig
from bertkit.errors import BertkitError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(
    sentences: Callable[[], Iterable[str]], cfg: TokenizerConfig, model_max_length: int = 512
) -> BertTokenizer:
    """WordPiece with BERT's normalisation: clean text, CJK characters split, optional lower-casing.

    `sentences` gives a fresh pass over the training text each call: it is read twice. The same text and
    settings give the same vocabulary in every process (tests/test_tokenize.py trains it in several)."""
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=cfg.strip_accents, lowercase=cfg.lowercase
    )
    alphabet, continued = _alphabet(sentences(), normalizer, cfg.limit_alphabet)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # The `tokenizers` trainer numbers the ## forms of characters in hash-map order, which changes per process
    # (huggingface/tokenizers #1794), and breaks ties between equally frequent merges by those numbers, so the
    # same corpus gave different vocabularies. Given as special tokens in sorted order, they have fixed numbers
    # before training starts, and so does every merge; the alphabet is given whole (its own limit breaks ties
    # between equally frequent characters in hash-map order too).
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=SPECIAL_TOKENS + continued,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(sentences(), trainer=trainer)
    # Rebuilt through transformers so the saved files carry BERT's own pipeline and tokenizer_class (the ##
    # forms above must not stay special tokens), in a readable order.
    learned = sorted(set(tok.get_vocab()) - set(SPECIAL_TOKENS), key=_vocab_order)
    return BertTokenizer(
        vocab={token: i for i, token in enumerate(SPECIAL_TOKENS + learned)},
        do_lower_case=cfg.lowercase,
        strip_accents=cfg.strip_accents,
        tokenize_chinese_chars=True,
        model_max_length=model_max_length,
    )


def _alphabet(sentences: Iterable[str], normalizer, limit: int | None) -> tuple[list[str], list[str]]:
    """The characters the trainer will keep (the `limit` most frequent; ties by code point), and the ## forms
    of those that occur inside a word (after another character of the word) — as BertPreTokenizer splits words:
    at whitespace, and around each punctuation character."""
    counts: Counter[str] = Counter()
    inside: set[str] = set()
    follows = re.compile(f"(?<=[^ {_punctuation()}])[^ {_punctuation()}]")
    for sentence in sentences:
        text = normalizer.normalize_str(sentence)  # clean_text leaves spaces as its only whitespace
        counts.update(text)
        inside.update(follows.findall(text))
    counts.pop(" ", None)
    kept = sorted(sorted(counts), key=lambda c: -counts[c])[:limit]
    return kept, [f"##{c}" for c in sorted(inside.intersection(kept))]


@functools.cache
def _punctuation() -> str:
    """A regex class body of what BertPreTokenizer isolates: ASCII punctuation and Unicode's P* categories."""
    chars = set(string.punctuation) | {
        chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")
    }
    return "".join(re.escape(c) for c in sorted(chars))


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
    # Released tokenizer.json files may fix padding and truncation (sentence-transformers' pad every text to 128):
    # bertkit encodes through the backend and packs, pads and truncates itself; transformers' own calls set
    # both afresh each time.
    tok.backend_tokenizer.no_padding()
    tok.backend_tokenizer.no_truncation()
    return tok
