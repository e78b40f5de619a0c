"""The model card (README.md) that every model dir bertkit writes carries, so that `hf upload` publishes a
documented model: where it started, what it was trained on, with which recipe, how it scored, how to load it.

    write_model_card(directory, model, cfg, metrics={"f1": 0.80})
    add_test_scores(directory, "data/test.jsonl", report)   # after `bertkit eval`: None, or why the card was kept

The card ends in a seal: an HTML comment (hidden on the Hub) with the SHA-256 of the text above it. bertkit
rewrites a card only while the seal matches, so a card that the user wrote or edited is never replaced.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from pathlib import Path

from bertkit import __version__
from bertkit.atomic import is_ours, write_text
from bertkit.config import CONFIG_FILE, PretrainRecipe, Recipe
from bertkit.data.dataset import METADATA_FILE

# The Hub's pipeline tag of each head (what its widget and search use).
PIPELINE_TAGS = {
    "BertForPreTraining": "fill-mask",
    "BertModel": "feature-extraction",  # ELECTRA's discriminator: an encoder to fine-tune
    "BertForMaskedLM": "fill-mask",
    "BertForSequenceClassification": "text-classification",
    "BertForTokenClassification": "token-classification",
    "BertCrfForTokenClassification": "token-classification",
    "BertForQuestionAnswering": "question-answering",
    "BertForMultipleChoice": "multiple-choice",
    "BiLSTMForSequenceClassification": "text-classification",
    "BiLSTMForTokenClassification": "token-classification",
}
README = "README.md"
SEAL = re.compile(r"\n<!-- bertkit model card ([0-9a-f]{64})[^\n]*-->\n\Z")
TEST_HEADING = "## Scores (test set)"
# The test section, up to the next section: what a new `bertkit eval` replaces.
TEST_SECTION = re.compile(rf"^{re.escape(TEST_HEADING)}\n.*?(?=^## )", re.S | re.M)


def _start(cfg: Recipe, pretraining: bool) -> tuple[str, str | None]:
    """(what the model started from, in words; the Hub id of that, for the card's base_model)."""
    key = "model.init_from" if pretraining else "finetune.model_dir"
    pinned = cfg.hub_sources.get(key)
    if pinned:
        return f"`{pinned}` (Hugging Face Hub)", pinned.partition("@")[0]
    if pretraining:
        if cfg.model.init_from:
            return f"the weights of `{cfg.model.init_from}`", None
        return f"random initialisation (`model.size: {cfg.model.size}`, `model.init: {cfg.model.init}`)", None
    return f"`{cfg.finetune.model_dir or cfg.pretrain_dir}`", None


def _data(cfg: Recipe, pretraining: bool) -> list[str]:
    if pretraining:
        try:  # what `bertkit tokenize` recorded about the examples pretraining read
            meta = json.loads((cfg.dataset_dir / METADATA_FILE).read_text(encoding="utf-8"))
            files = ", ".join(f"`{f}`" for f in meta["files"])
            data = f"{files} ({meta['objective']}, sequences of {meta['max_seq_length']} tokens)"
        except (OSError, ValueError, KeyError, TypeError):
            data = f"`{cfg.dataset_dir}`"
        return [
            f"- Pretraining data: {data}",
            f"- Objective: {_objective(cfg)}",
            f"- Masking: {cfg.masking.rate:g} of the tokens, {'whole words' if cfg.masking.whole_word else 'tokens'}",
        ]
    task = cfg.finetune.task
    lines = [f"- Task: {task.type} (`{task.name}`), trained on `{task.train_file}`"]
    if task.validation_file:
        lines.append(f"- Model selection: the best dev score on `{task.validation_file}`")
    return lines


def _objective(cfg: PretrainRecipe) -> str:
    m = cfg.model
    if m.objective == "electra":
        return (
            "ELECTRA's replaced-token detection (Clark et al. 2020); this model is the discriminator, trained with "
            f"weight {m.discriminator_weight:g} beside a generator (`generator/`, hidden size {m.generator_size:g} "
            "of this one's, sharing its embeddings; its head in `discriminator_head.safetensors`; the mlm_* scores "
            "are the generator's)"
        )
    return "masked LM, plus next-sentence or sentence-order prediction when the data has sentence pairs"


ELECTRA_USE = [
    "",
    "Fine-tune it as any BERT (`BertForSequenceClassification.from_pretrained`: the pooler starts fresh, as ELECTRA's "
    'classifier heads do). The generator: `ElectraForMaskedLM.from_pretrained("<this dir>/generator")`.',
]


def _use(architecture: str) -> list[str]:
    if architecture.startswith("BiLSTM"):
        return [
            "```python",
            "from bertkit.modeling.bilstm import load_bilstm",
            "",
            'model = load_bilstm("<this dir>")',
            "```",
        ]
    loads = "BertForTokenClassification" if architecture == "BertCrfForTokenClassification" else architecture
    lines = [
        "```python",
        f"from transformers import AutoTokenizer, {loads}",
        "",
        'tokenizer = AutoTokenizer.from_pretrained("<this dir or repo>")',
        f'model = {loads}.from_pretrained("<this dir or repo>")',
        "```",
    ]
    if loads != architecture:
        lines += [
            "",
            "Plain transformers loads it without its CRF (each word's best tag on its own); `bertkit eval` decodes "
            "with the CRF (Viterbi), as it was trained.",
        ]
    return lines


def write_model_card(directory: Path, model, cfg: Recipe, metrics: dict | None = None) -> None:
    """README.md in `directory` for `model` as `cfg` trained it; `metrics`: its scores, when known."""
    c = model.config
    architecture = (getattr(c, "architectures", None) or [type(model).__name__])[0]
    pretraining = isinstance(cfg, PretrainRecipe)
    started, base = _start(cfg, pretraining)
    front = ["---", "library_name: transformers", "tags:", "- bert", "- bertkit"]
    if architecture in PIPELINE_TAGS:
        front.append(f"pipeline_tag: {PIPELINE_TAGS[architecture]}")
    if base:
        front.append(f"base_model: {base}")
    front.append("---")
    title = f"{cfg.output_dir.name}: pretrained BERT" if pretraining else f"{cfg.finetune.task.name}: {architecture}"
    if hasattr(c, "num_hidden_layers"):
        shape = f"L={c.num_hidden_layers}, H={c.hidden_size}, A={c.num_attention_heads}"
        what = f"A {architecture} ({shape}, vocabulary of {c.vocab_size})"
    else:
        what = f"A {architecture} (bertkit's baseline without pretraining)"
    body = [
        f"# {title}",
        "",
        f"{what}, trained with bertkit {__version__}.",
        "",
        f"- Started from: {started}",
        *_data(cfg, pretraining),
        f"- Recipe: `{CONFIG_FILE}` beside this card (every setting of the run)",
    ]
    scores = scalar_scores(metrics or {})
    if scores:
        body += ["", "## Scores" + (" (held-out pretraining data)" if pretraining else " (dev set)"), ""]
        body += _table(scores)
    body += ["", "## Use", "", *_use(architecture)]
    if pretraining and cfg.model.objective == "electra":
        body += ELECTRA_USE
    write_text(Path(directory) / README, _sealed("\n".join(front + body) + "\n"))


def scalar_scores(metrics: dict) -> dict[str, float]:
    """The scalar scores of a metrics dict or report (not counts, per-class tables or timings)."""
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def _table(scores: dict[str, float]) -> list[str]:
    return ["| metric | value |", "| --- | --- |", *(f"| {k} | {v:.4f} |" for k, v in scores.items())]


def _sealed(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{text}\n<!-- bertkit model card {digest}: bertkit updates it only while the text above is unedited -->\n"


def _unsealed(card: str) -> str | None:
    """The text of a card above its seal, or None when there is no seal or the text was edited."""
    seal = SEAL.search(card)
    if seal is None:
        return None
    text = card[: seal.start()]
    return text if hashlib.sha256(text.encode("utf-8")).hexdigest() == seal.group(1) else None


def add_test_scores(directory: Path, data: str, report: dict) -> str | None:
    """The scores of `report` (bertkit eval's, on the labelled file `data`) into the card of `directory` as its
    test scores, in place of earlier ones. None when done (or there is no card); else why the card was kept."""
    path = Path(directory) / README
    if not path.is_file():
        return None
    if not is_ours(directory) or path.is_symlink():
        return "the model dir was not written by bertkit"
    text = _unsealed(path.read_text(encoding="utf-8", errors="replace"))  # not UTF-8: not bertkit's
    if text is None or "\n## Use\n" not in text:
        return "edited since bertkit wrote it, or not bertkit's card"
    scores = scalar_scores(report)
    when = datetime.date.today().isoformat()
    section = [TEST_HEADING, "", f"`{data}` ({report['examples']} examples), `bertkit eval` of {when}:", ""]
    text = TEST_SECTION.sub("", text)
    at = text.index("\n## Use\n") + 1  # the test scores go after the dev scores
    write_text(path, _sealed(text[:at] + "\n".join([*section, *_table(scores), ""]) + "\n" + text[at:]))
    return None
