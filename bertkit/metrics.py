"""Evaluation metrics as pure functions, and the printed table.

    classification_metrics(gold=[0, 1, 1], pred=[0, 1, 0], labels=["neg", "pos"])
    # {"accuracy": 0.667, "macro_f1": 0.667, "micro_f1": 0.667, "mcc": 0.5, "per_class": {"neg": {...}, ...}}
    regression_metrics(gold=[1.0, 2.0, 3.0], pred=[1.1, 1.9, 3.2])
    # {"pearson": 0.991, "spearman": 1.0, "mse": 0.02}
    entity_metrics(gold=[["B-PER", "I-PER", "O"]], pred=[["I-PER", "I-PER", "O"]])
    # {"precision": 1.0, ..., "strict_f1": 0.0, "per_type": {"PER": {...}}}
    tag_metrics(gold=[["DT", "NN"]], pred=[["DT", "VB"]], labels=["DT", "NN", "VB"])
    # {"accuracy": 0.5, "precision": 0.5, ..., "f1": 0.5, "macro_f1": 0.333, "per_tag": {"DT": {...}, ...}}
    squad_metrics(predictions={"q1": "the Eiffel Tower"}, references={"q1": ["Eiffel Tower"]}, version_2=False)
    # {"exact_match": 100.0, "f1": 100.0}   (SQuAD v1.1 rules; v2.0, the default, also scores unanswerable ones)
    cmrc_metrics(predictions={"q1": "北京。"}, references={"q1": ["北京"]})
    # {"exact_match": 100.0, "f1": 100.0}

Definitions follow scikit-learn (F1 of a class with no predictions and no gold is 0), scipy, seqeval and the
official SQuAD and CMRC2018 evaluation scripts.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter

# scipy, scikit-learn and seqeval are imported where they are used: together 1.6 s of every command's start-up.
_SEQEVAL_SCHEMES = ("BIO", "BIOES")

_SQUAD_PUNCTUATION = frozenset(string.punctuation)
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")

# The official CMRC2018 list, one character at a time: it has no ASCII "." or "," and no "‘", and its "……" entry,
# two characters long, never matches one.
_CMRC_PUNCTUATION = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
_CMRC_HANZI = re.compile(r"([\u4e00-\u9fa5])")
# Stands in for nltk.word_tokenize, which the official script runs on the text between Chinese characters (nltk and
# its punkt data are not at hand): the punctuation it splits off, its Treebank rules for a final period, commas not
# before a digit and ellipses included, is split off here too. Apostrophes and quotes are not handled as it does.
_CMRC_SPLIT = re.compile(r'\.{2,}|\.(?=[\])}>"\']*\s*$)|,(?!\d)|[;@#$%&?!()\[\]{}<>"]')


def classification_metrics(gold: list[int], pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro/micro F1, Matthews correlation and per-class precision, recall, F1 and support."""
    from sklearn.metrics import accuracy_score, matthews_corrcoef, precision_recall_fscore_support

    ids = list(range(len(labels)))
    p, r, f, support = precision_recall_fscore_support(gold, pred, labels=ids, zero_division=0)
    _, _, macro_f1, _ = precision_recall_fscore_support(gold, pred, labels=ids, average="macro", zero_division=0)
    _, _, micro_f1, _ = precision_recall_fscore_support(gold, pred, labels=ids, average="micro", zero_division=0)
    # With one label on both sides MCC is undefined: 0, which scikit-learn also returns, but with a warning.
    mcc = matthews_corrcoef(gold, pred) if len(set(gold) | set(pred)) > 1 else 0.0
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(macro_f1),
        "micro_f1": float(micro_f1),
        "mcc": float(mcc),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, name in enumerate(labels)
        },
    }


def pretraining_metrics(
    mlm_loss_sum: float, mlm_correct: int, mlm_count: int, pair_correct: int, pair_count: int, pair: str = "nsp"
) -> dict:
    """MLM accuracy and perplexity (exp of the mean cross-entropy over masked tokens), and the accuracy of the
    sentence-pair task `pair` (nsp or sop) when it was scored."""
    out = {
        "mlm_accuracy": mlm_correct / max(1, mlm_count),
        "mlm_perplexity": math.exp(min(mlm_loss_sum / max(1, mlm_count), 700.0)),
        "mlm_loss": mlm_loss_sum / max(1, mlm_count),
        "masked_tokens": mlm_count,
    }
    if pair_count:
        out |= {f"{pair}_accuracy": pair_correct / pair_count, "examples": pair_count}
    return out


def rtd_metrics(loss_sum: float, correct: int, tokens: int, replaced: int, flagged: int, caught: int) -> dict:
    """ELECTRA's discriminator on `tokens` real tokens, `replaced` of them by the generator: accuracy, mean BCE,
    and precision/recall/F1 of the replaced class (`flagged` tokens called replaced, `caught` of them rightly).
    The share replaced is the accuracy of calling every token original."""
    precision, recall = caught / max(1, flagged), caught / max(1, replaced)
    return {
        "rtd_accuracy": correct / max(1, tokens),
        "rtd_f1": 2 * precision * recall / (precision + recall) if caught else 0.0,
        "rtd_precision": precision,
        "rtd_recall": recall,
        "rtd_loss": loss_sum / max(1, tokens),
        "replaced_share": replaced / max(1, tokens),
    }


def multilabel_metrics(gold: list[list[int]], pred: list[list[int]], labels: list[str]) -> dict:
    """Multi-label classification from 0/1 indicator rows: micro/macro F1, exact match (every label of an
    example right) and per-class precision, recall, F1 and support."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    p, r, f, support = precision_recall_fscore_support(gold, pred, labels=ids, zero_division=0)
    micro = precision_recall_fscore_support(gold, pred, average="micro", zero_division=0)
    macro = precision_recall_fscore_support(gold, pred, average="macro", zero_division=0)
    return {
        "exact_match": float(accuracy_score(gold, pred)),  # subset accuracy on indicator rows
        "micro_f1": float(micro[2]),
        "macro_f1": float(macro[2]),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, name in enumerate(labels)
        },
    }


def regression_metrics(gold: list[float], pred: list[float]) -> dict:
    """Pearson and Spearman correlation (nan when either side is constant) and mean squared error."""
    from scipy.stats import pearsonr, spearmanr

    return {
        "pearson": float(pearsonr(gold, pred)[0]),
        "spearman": float(spearmanr(gold, pred)[0]),
        "mse": sum((g - p) ** 2 for g, p in zip(gold, pred, strict=True)) / len(gold),
    }


def entity_metrics(gold: list[list[str]], pred: list[list[str]], scheme: str = "BIO") -> dict:
    """Entity-level micro precision, recall and F1 of tag sequences, as seqeval computes them.

    The headline and `per_type` follow conlleval (an I- tag without a B- before it starts an entity); the strict_
    scores count only entities that are well-formed in `scheme` ("BIO" or "BIOES"), and reject tags outside it.
    """
    from seqeval.metrics import sequence_labeling as seqeval
    from seqeval.scheme import IOB2, IOBES

    if scheme not in _SEQEVAL_SCHEMES:
        raise ValueError(f"scheme must be one of {list(_SEQEVAL_SCHEMES)}, got {scheme!r}")
    # zero_division=0: a corpus without entities scores 0, as in conlleval, instead of warning.
    p, r, f, _ = seqeval.precision_recall_fscore_support(gold, pred, average="micro", zero_division=0)
    strict = {"mode": "strict", "scheme": {"BIO": IOB2, "BIOES": IOBES}[scheme], "zero_division": 0}
    # seqeval's own classification_report pairs the per-type scores with the sorted types in the same way.
    types = sorted({name for tags in (gold, pred) for name, _, _ in seqeval.get_entities(tags)})
    tp, tr, tf, support = seqeval.precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
    return {
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "strict_precision": float(seqeval.precision_score(gold, pred, **strict)),
        "strict_recall": float(seqeval.recall_score(gold, pred, **strict)),
        "strict_f1": float(seqeval.f1_score(gold, pred, **strict)),
        "per_type": {
            name: {"precision": float(tp[i]), "recall": float(tr[i]), "f1": float(tf[i]), "support": int(support[i])}
            for i, name in enumerate(types)
        },
    }


def tag_metrics(gold: list[list[str]], pred: list[list[str]], labels: list[str]) -> dict:
    """Word-level scores of plain tags (POS and other tag sets without B-/I- prefixes), as scikit-learn computes them.

    accuracy is over every word; precision, recall and f1 are micro averages and macro_f1 the macro average over
    the tags other than O (where a tag set has O, it means "no tag", as in entity scoring): without O, f1 equals
    accuracy. per_tag has every tag of `labels`, O included.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    g, p = [t for row in gold for t in row], [t for row in pred for t in row]
    scored = [name for name in labels if name != "O"] or labels
    tp, tr, tf, support = precision_recall_fscore_support(g, p, labels=labels, zero_division=0)
    micro = precision_recall_fscore_support(g, p, labels=scored, average="micro", zero_division=0)
    macro = precision_recall_fscore_support(g, p, labels=scored, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(g, p)),
        "precision": float(micro[0]),
        "recall": float(micro[1]),
        "f1": float(micro[2]),
        "macro_f1": float(macro[2]),
        "per_tag": {
            name: {"precision": float(tp[i]), "recall": float(tr[i]), "f1": float(tf[i]), "support": int(support[i])}
            for i, name in enumerate(labels)
        },
    }


def normalize_answer(s: str) -> str:
    """The official SQuAD normalization: lowercase, drop punctuation, then the articles a/an/the, then collapse
    whitespace."""
    s = "".join(c for c in s.lower() if c not in _SQUAD_PUNCTUATION)
    return " ".join(_SQUAD_ARTICLES.sub(" ", s).split())


def _squad_golds(gold_answers: list[str], version_2: bool) -> list[str]:
    if not version_2:
        if not gold_answers:
            raise ValueError("an unanswerable question (no gold answers) is scored only by the SQuAD v2.0 rules")
        return gold_answers  # v1.1 keeps every gold answer as given
    # SQuAD v2: answers that normalize to nothing are dropped, and a question left without any is unanswerable,
    # scored against the empty answer.
    return [a for a in gold_answers if normalize_answer(a)] or [""]


def _squad_token_f1(prediction: str, gold: str, version_2: bool) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if version_2 and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)  # v2: no answer agrees only with no answer
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0  # v1.1: an empty prediction too, even against a gold that normalizes to nothing
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_em(prediction: str, gold_answers: list[str], version_2: bool = True) -> float:
    """1.0 when the normalized prediction equals a normalized gold answer (in v1.1 too, "" equals a gold that
    normalizes to nothing); by the v2.0 rules (`version_2`) an empty list means unanswerable."""
    golds = _squad_golds(gold_answers, version_2)
    return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)


def squad_f1(prediction: str, gold_answers: list[str], version_2: bool = True) -> float:
    """Best bag-of-tokens F1 of the normalized prediction against the gold answers. By the v2.0 rules
    (`version_2`) golds that normalize to nothing are dropped, an empty list means unanswerable, and an empty
    prediction scores 1.0 exactly where the gold is empty; v1.1 keeps every gold and scores no shared token 0."""
    return max(_squad_token_f1(prediction, g, version_2) for g in _squad_golds(gold_answers, version_2))


def _percentages(scores: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean EM and F1 of (em, f1) pairs, in percent."""
    n = max(1, len(scores))
    return 100.0 * sum(em for em, _ in scores) / n, 100.0 * sum(f1 for _, f1 in scores) / n


def squad_metrics(predictions: dict[str, str], references: dict[str, list[str]], version_2: bool = True) -> dict:
    """SQuAD exact match and F1 in percent over `references` (question id -> gold answers, empty when
    unanswerable) by the official v2.0 script's rules, or with `version_2=False` the v1.1 script's (which knows
    no unanswerable questions); has-answer and no-answer breakdowns when some are unanswerable. A question without
    a prediction scores 0, as in the official scripts."""
    scores = {
        qid: (squad_em(predictions[qid], golds, version_2), squad_f1(predictions[qid], golds, version_2))
        if qid in predictions
        else (0, 0)
        for qid, golds in references.items()
    }
    return _answer_report(scores, references)


def _answer_report(scores: dict[str, tuple[float, float]], references: dict[str, list[str]]) -> dict:
    """Mean EM and F1 in percent, with has-answer and no-answer breakdowns when some questions are unanswerable."""
    em, f1 = _percentages(list(scores.values()))
    out = {"exact_match": em, "f1": f1}
    no_answer = [scores[qid] for qid, golds in references.items() if not golds]
    if no_answer:
        has_answer = [scores[qid] for qid, golds in references.items() if golds]
        (has_em, has_f1), (no_em, no_f1) = _percentages(has_answer), _percentages(no_answer)
        out |= {
            "has_answer_exact": has_em,
            "has_answer_f1": has_f1,
            "has_answer_total": len(has_answer),
            "no_answer_exact": no_em,
            "no_answer_f1": no_f1,
            "no_answer_total": len(no_answer),
        }
    return out


def remove_punctuation(text: str) -> str:
    """The CMRC2018 normalization: lowercase, strip, drop the official script's Chinese and English punctuation."""
    return "".join(c for c in text.lower().strip() if c not in _CMRC_PUNCTUATION)


def mixed_segmentation(text: str) -> list[str]:
    """CMRC2018 tokens: each Chinese character alone and the words between them, punctuation removed first (the
    official script drops it without splitting there: "a-b" is one word)."""
    # Splitting on a captured pattern keeps each Chinese character as a piece of its own, a word of one character.
    pieces = _CMRC_HANZI.split(remove_punctuation(text))
    return [word for piece in pieces for word in _CMRC_SPLIT.sub(r" \g<0> ", piece).split()]


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common contiguous run of `a` and `b` (the official find_lcs)."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        row = [0] + [prev[j] + 1 if x == y else 0 for j, y in enumerate(b)]
        best, prev = max(best, *row), row
    return best


def cmrc_em(prediction: str, gold_answers: list[str]) -> float:
    """1.0 when the prediction equals a gold answer once both are lowercased and stripped of punctuation. An empty
    list means unanswerable, where only an empty prediction scores 1.0, as in SQuAD v2.0 (the CMRC2018 script has
    no unanswerable questions)."""
    if not gold_answers:
        return float(not mixed_segmentation(prediction))
    return max(float(remove_punctuation(prediction) == remove_punctuation(g)) for g in gold_answers)


def _cmrc_token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    same = _lcs_length(gold_tokens, pred_tokens)
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def cmrc_f1(prediction: str, gold_answers: list[str]) -> float:
    """Best F1 against the gold answers, where the overlap is the longest common run of segmented tokens; an empty
    list means unanswerable, scored as by cmrc_em."""
    pred_tokens = mixed_segmentation(prediction)
    if not gold_answers:
        return float(not pred_tokens)
    return max(_cmrc_token_f1(pred_tokens, mixed_segmentation(g)) for g in gold_answers)


def cmrc_metrics(predictions: dict[str, str], references: dict[str, list[str]]) -> dict:
    """CMRC2018 exact match and F1 in percent over `references` (question id -> gold answers, empty when
    unanswerable), with has-answer and no-answer breakdowns as squad_metrics; a question without a prediction
    scores 0, as in the official script."""
    scores = {
        qid: (cmrc_em(predictions[qid], golds), cmrc_f1(predictions[qid], golds)) if qid in predictions else (0, 0)
        for qid, golds in references.items()
    }
    return _answer_report(scores, references)


def _width(text: str) -> int:
    """Terminal columns of `text` (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _ljust(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def format_table(report: dict) -> str:
    """Scalar metrics, then a P/R/F1 block for each of `per_class`, `per_type` and `per_tag` present, as aligned
    text."""
    lines = []
    scalars = {k: v for k, v in report.items() if isinstance(v, int | float)}
    width = max(map(len, scalars), default=0)
    for k, v in scalars.items():
        lines.append(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    for key, header in (("per_class", "label"), ("per_type", "type"), ("per_tag", "tag")):
        rows = report.get(key)
        if not rows:
            continue
        name_w = max(8, *map(_width, rows))
        lines.append("")
        lines.append(f"{header:<{name_w}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}")
        for name, m in rows.items():
            lines.append(
                f"{_ljust(name, name_w)}  {m['precision']:>9.4f}  {m['recall']:>9.4f}  {m['f1']:>9.4f}"
                f"  {m['support']:>7}"
            )
    return "\n".join(lines)
