"""The layer probe: a logistic regression per layer on frozen features of a labelled file, scored on another.

    data = read_probe_data(cfg.probe)                    # checked before any feature is computed
    report = probe_model(bert, tokenizer, cfg, data)     # {"accuracy_by_layer": [...], "majority_baseline": …}

Features are mean-pooled per sentence, or per word (its first piece) for word labels such as POS tags
(bertkit/evaluation/features.py). `bertkit probe` runs it once; `probe.during_pretraining` at every pretraining
evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertkit.config import Recipe
from bertkit.config.sections import ProbeConfig
from bertkit.errors import BertkitError
from bertkit.evaluation.features import sentence_features, word_features
from bertkit.tasks.common import check_labels, column, label_set, read_rows


def probe_layers(train: np.ndarray, y_train: list, test: np.ndarray, y_test: list, max_iter: int = 1000) -> list[float]:
    """Held-out accuracy of a logistic regression per layer.

    Args:
        train, test: (layers, N, H) frozen features.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    for layer in range(len(train)):
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
        classifier.fit(train[layer], y_train)
        scores.append(float(classifier.score(test[layer], y_test)))
    return scores


def read_probe_file(path: Path, probe: ProbeConfig) -> tuple[list, list]:
    """Texts (or word lists) and their labels (or label lists) of a labelled file."""
    rows = read_rows(path)
    texts = column(rows, probe.text_column, path, "probe.text_column")
    labels = column(rows, probe.label_column, path, "probe.label_column")
    if probe.level == "sentence":
        return [str(t) for t in texts], [str(y) for y in labels]
    for n, (words, tags) in enumerate(zip(texts, labels, strict=True), 1):
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
            raise BertkitError(
                f"{path}: row {n}: probe.level=token needs a list of words in '{probe.text_column}' and as many "
                f"labels in '{probe.label_column}'"
            )
    return [[str(w) for w in words] for words in texts], [[str(t) for t in tags] for tags in labels]


def require_probe_files(probe: ProbeConfig, who: str = "bertkit probe") -> None:
    if probe.train_file is None or probe.test_file is None:
        raise BertkitError(f"{who} needs probe.train_file and probe.test_file (labelled JSONL/CSV/TSV files)")


def read_probe_data(probe: ProbeConfig) -> dict:
    """{"train": (texts, labels), "test": …} of the probe's files, checked before any feature is computed: the
    train file must hold two labels at least, and the test file no label the train file lacks."""
    data = {"train": read_probe_file(probe.train_file, probe), "test": read_probe_file(probe.test_file, probe)}

    def every(labels: list) -> list:
        return labels if probe.level == "sentence" else [t for tags in labels for t in tags]

    known = label_set(every(data["train"][1]))
    if len(known) < 2:
        raise BertkitError(
            f"{probe.train_file}: only label(s) {', '.join(map(repr, known)) or 'none'} in "
            f"'{probe.label_column}'; a probe needs two classes at least (check probe.label_column)"
        )
    check_labels(every(data["test"][1]), {name: i for i, name in enumerate(known)}, probe.test_file)
    return data


def probe_model(model, tokenizer, cfg: Recipe, data: dict | None = None) -> dict:
    """The probe's scores by layer for a BertModel; `data` holds the files' read_probe_data, read here when
    empty (pretraining passes one dict to every call, so the files are read once)."""
    probe = cfg.probe
    data = data if data is not None else {}
    if not data:
        data.update(read_probe_data(probe))
    features = {}
    for name, (texts, labels) in data.items():
        if probe.level == "sentence":
            features[name] = (sentence_features(model, tokenizer, texts, cfg), labels)
        else:
            matrix, where = word_features(model, tokenizer, texts, cfg)
            features[name] = (matrix, [labels[s][w] for s, w in where])
    train_y, test_y = features["train"][1], features["test"][1]
    scores = probe_layers(features["train"][0], train_y, features["test"][0], test_y)
    majority = max(test_y.count(y) for y in set(test_y)) / len(test_y)
    return {"majority_baseline": majority, "accuracy_by_layer": scores, "best_layer": int(np.argmax(scores))}
