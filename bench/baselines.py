"""Classical baselines for `make results`: what a pretrained BERT must beat without any neural network.

    accuracy = tfidf_classifier(train_rows, test_rows)          # rows: {"text", "label"}
    metrics = dictionary_tagger(train_rows, test_rows)          # rows: {"tokens", "tags"} (BIO), entity F1

TF-IDF + logistic regression on character 1–2-grams (words need a segmenter in Chinese; characters and their
pairs do not), and a longest-match dictionary of the training set's entities: each test sentence is scanned
left to right and the longest known entity string starting at a position is tagged with its most frequent
training type. Both use scikit-learn / bertkit's own entity metric, so the numbers compare with bertkit's eval.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from bertkit.metrics import entity_metrics


def tfidf_classifier(train: list[dict], test: list[dict]) -> float:
    """Test accuracy of TF-IDF (character 1–2-grams, sublinear tf) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    model.fit([r["text"] for r in train], [r["label"] for r in train])
    return float(model.score([r["text"] for r in test], [r["label"] for r in test]))


def entities(tokens: list[str], tags: list[str]) -> list[tuple[str, str]]:
    """(entity string, type) of a BIO-tagged sentence."""
    found, current, kind = [], [], None
    for token, tag in [*zip(tokens, tags, strict=True), ("", "O")]:
        if tag.startswith("I-") and kind == tag[2:]:
            current.append(token)
            continue
        if current:
            found.append(("".join(current), kind))
        current, kind = ([token], tag[2:]) if tag[:2] in ("B-", "I-") else ([], None)
    return found


def dictionary_tagger(train: list[dict], test: list[dict]) -> dict:
    """Entity metrics of tagging `test` by longest match against the entities of `train`."""
    types: dict[str, Counter] = defaultdict(Counter)
    for row in train:
        for text, kind in entities(row["tokens"], row["tags"]):
            types[text][kind] += 1
    known = {text: counts.most_common(1)[0][0] for text, counts in types.items()}
    longest = max(map(len, known), default=0)
    predicted = []
    for row in test:
        chars, tags, i = row["tokens"], ["O"] * len(row["tokens"]), 0
        while i < len(chars):
            for n in range(min(longest, len(chars) - i), 0, -1):
                kind = known.get("".join(chars[i : i + n]))
                if kind:
                    tags[i : i + n] = [f"B-{kind}"] + [f"I-{kind}"] * (n - 1)
                    i += n
                    break
            else:
                i += 1
        predicted.append(tags)
    return entity_metrics([row["tags"] for row in test], predicted, "BIO")
