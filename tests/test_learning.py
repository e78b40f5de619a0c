"""Every task family learns: per family a tiny seeded data set whose signal a working model must pick up, fine-tuned
(the tiny run's 1-layer H64 BERT, a few hundred steps at most: seconds) and evaluated through the CLI on held-out
rows.

The texts are characters of the Chinese sample's vocabulary: frequent filler characters, and small vocabularies
that carry the signal (four topics, name and place characters, a cue). Every row is drawn at random, and no test
row is a training or dev row, so the model must have learned the rule, not the rows. A broken model, loss, label
mapping, collator or decoding stays at chance, which each test names and clears by a wide margin (the threshold);
the scores observed are pinned too, with room for the fp32 arithmetic of other CPUs (Intel AMX, AMD AVX-512, AVX2).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import RECIPE, recipe_edits, run_cli

pytestmark = pytest.mark.slow

# Frequent characters of the Chinese sample, and the characters that carry the signal, apart from them; all are
# in the tiny run's vocabulary (test_the_signal_characters_are_in_the_vocabulary).
FILLER = "的一中年在了是为国和大人成多用地以有上时高生于被不这到来发个后会出过最能分量长世十通代之要现面度"
TOPICS = ["星月云雨风雪", "菜瓜麦米茶饭", "山河湖岛江海", "鸟鸡猪鹤鱼马"]
SURNAMES, GIVEN_NAMES = "张王李赵刘陈", "明芳娜敏静丽"
DIRECTIONS, PLACES = "东西南北", "州城港"
CUE = "叫"
SIGNAL = "".join(TOPICS) + SURNAMES + GIVEN_NAMES + DIRECTIONS + PLACES + CUE

TRAIN, DEV, TEST = 256, 48, 96  # rows of each split


def _filler(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(FILLER) for _ in range(n)]


def _topic_text(rng: random.Random, topics: list[int], per_topic: int, filler: int) -> str:
    """`per_topic` characters of each topic and `filler` filler characters, shuffled."""
    chars = [rng.choice(TOPICS[t]) for t in topics for _ in range(per_topic)] + _filler(rng, filler)
    rng.shuffle(chars)
    return "".join(chars)


def _splits(make, seed: int, key=json.dumps) -> tuple[list, list, list]:
    """Train, dev and test rows from `make(rng)`, with no row (by `key`) in two splits."""
    rng, seen, splits = random.Random(seed), set(), []
    for n in (TRAIN, DEV, TEST):
        rows = []
        while len(rows) < n:
            row = make(rng)
            if key(row) not in seen:
                seen.add(key(row))
                rows.append(row)
        splits.append(rows)
    return tuple(splits)


def _write(path: Path, rows) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _finetune_and_eval(tiny_run, tmp_path: Path, task_type: str, splits, *extra: str, suffix=".jsonl") -> dict:
    """Fine-tune the tiny run's BERT on the train split (the dev split evaluated once, at the end), evaluate it on
    the test split; the report. The peak LR is high for BERT, as fits a 1-layer H64 model trained from near scratch
    (the tiny run pretrains it for 6 steps); warm-up and linear decay are finetune.train's defaults."""
    names = ("train", "dev", "test")
    files = [_write(tmp_path / f"{name}{suffix}", rows) for name, rows in zip(names, splits, strict=True)]
    args = [
        RECIPE,
        *recipe_edits(
            [
                f"output_dir={tmp_path / 'out'}",
                f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
                f"finetune.task.type={task_type}",
                "finetune.task.name=learn",
                f"finetune.task.train_file={files[0]}",
                f"finetune.task.validation_file={files[1]}",
                f"finetune.task.test_file={files[2]}",
                "finetune.task.max_seq_length=48",
                "finetune.train.batch_size=64",
                "finetune.train.lr=3e-3",
                "finetune.train.eval_every=0",
                *extra,
            ]
        ),
    ]
    for command in ("finetune", "eval"):
        result = run_cli(command, *args)
        assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "eval" / "learn" / "report.json").read_text())
    assert report["examples"] == TEST
    # `bertkit predict` on the same file: the same predictions as eval's, for every family.
    result = run_cli("predict", tmp_path / "out" / "finetune" / "learn", files[2])
    assert result.exit_code == 0, result.output
    predicted = [json.loads(line)["prediction"] for line in result.stdout.splitlines()]
    evaluated = (tmp_path / "out" / "eval" / "learn" / "predictions.jsonl").read_text().splitlines()
    assert predicted == [json.loads(line)["prediction"] for line in evaluated]
    return report


def test_the_signal_characters_are_in_the_vocabulary(tiny_run):
    """Else a task would be unlearnable ([UNK] for all its signal) and its test would fail for that reason."""
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(tiny_run[0] / "pretrain")
    assert tok.unk_token not in tok.tokenize(" ".join(FILLER + SIGNAL))
    assert not set(FILLER) & set(SIGNAL) and len(set(SIGNAL)) == len(SIGNAL)


def test_sentence_classification(tiny_run, tmp_path):
    """The class is the topic of 5 of the text's 8 to 12 characters: 4 balanced classes, chance 1/4."""

    def make(rng):
        topic = rng.randrange(4)
        return {"text": _topic_text(rng, [topic], 5, rng.randint(3, 7)), "label": f"topic{topic}"}

    report = _finetune_and_eval(tiny_run, tmp_path, "classification", _splits(make, 0), "finetune.train.max_steps=80")
    assert report["accuracy"] >= 0.9
    assert report["accuracy"] == pytest.approx(1.0, abs=0.05)  # observed: 96 of 96


def test_sentence_pair_classification(tiny_run, tmp_path):
    """The pair is 1 when both texts are on the first topic (half the pairs), 0 when one of them is on the second:
    chance (the majority class) 1/2, and a model that reads only one text of the pair scores at most 3/4."""

    def make(rng):
        a, b = rng.choice([(0, 0), (0, 0), (0, 1), (1, 0)])
        return {
            "sentence1": _topic_text(rng, [a], 4, rng.randint(2, 5)),
            "sentence2": _topic_text(rng, [b], 4, rng.randint(2, 5)),
            "label": int(a == b == 0),
        }

    report = _finetune_and_eval(
        tiny_run,
        tmp_path,
        "classification",
        _splits(make, 1),
        "finetune.task.text_column=sentence1",
        "finetune.task.text_pair_column=sentence2",
        "finetune.train.max_steps=64",
    )
    assert report["accuracy"] >= 0.9
    assert report["accuracy"] == pytest.approx(1.0, abs=0.05)  # observed: 96 of 96


def test_multi_label_classification(tiny_run, tmp_path):
    """The labels are the topics of the text, 1 or 2 of 4 (4 characters each, among filler). Chance: predicting
    every label scores micro F1 6/11 (precision 3/8, recall 1); the commonest label set is right 1/8 of the time
    (exact match)."""

    def make(rng):
        topics = sorted(rng.sample(range(4), rng.randint(1, 2)))
        return {"text": _topic_text(rng, topics, 4, rng.randint(2, 5)), "label": [f"topic{t}" for t in topics]}

    report = _finetune_and_eval(
        tiny_run, tmp_path, "multi-label-classification", _splits(make, 2), "finetune.train.max_steps=240"
    )
    assert report["micro_f1"] >= 0.9 and report["exact_match"] >= 0.8
    # observed: every label set of the 96 right
    assert report["micro_f1"] == pytest.approx(1.0, abs=0.05) and report["exact_match"] == pytest.approx(1.0, abs=0.05)


def test_regression(tiny_run, tmp_path):
    """The score is how many of the text's 12 characters are of the first topic, 0 to 8 (the others are filler).
    Chance: Pearson 0 for scores unrelated to the text; the random features of an untrained head do correlate
    with the count (about -0.5 with this data), hence the high bar, and the MSE bound (untrained: about 23)."""

    def make(rng):
        k = rng.randint(0, 8)
        return {"text": _topic_text(rng, [0], k, 12 - k), "label": float(k)}

    report = _finetune_and_eval(tiny_run, tmp_path, "regression", _splits(make, 3), "finetune.train.max_steps=200")
    assert report["pearson"] > 0.9 and report["mse"] < 1  # the scores' variance: 20/3
    assert report["pearson"] == pytest.approx(0.993, abs=0.05)  # observed 0.993 to 0.996 (AVX-512, AVX2, no SIMD)


def test_token_classification(tiny_run, tmp_path):
    """Names amid filler: a surname and 1 or 2 given-name characters are a PER, a direction and a place character
    a LOC (BIO tags, one character a word). Chance: entity F1 about 0 (tagging nothing scores 0)."""

    def make(rng):
        tokens = _filler(rng, rng.randint(1, 4))
        tags = ["O"] * len(tokens)
        for _ in range(rng.randint(1, 2)):
            if rng.random() < 0.5:
                entity = [rng.choice(SURNAMES)] + [rng.choice(GIVEN_NAMES) for _ in range(rng.randint(1, 2))]
                kind = "PER"
            else:
                entity, kind = [rng.choice(DIRECTIONS), rng.choice(PLACES)], "LOC"
            gap = _filler(rng, rng.randint(1, 4))
            tokens += entity + gap
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(entity) - 1) + ["O"] * len(gap)
        return {"tokens": tokens, "tags": tags}

    splits = _splits(make, 4)
    report = _finetune_and_eval(
        tiny_run, tmp_path, "token-classification", splits, "finetune.task.stride=8", "finetune.train.max_steps=64"
    )
    assert report["f1"] >= 0.9 and report["strict_f1"] >= 0.9
    # observed: every entity of the 96 rows found, boundaries and types right
    assert report["f1"] == pytest.approx(1.0, abs=0.05) and report["strict_f1"] == pytest.approx(1.0, abs=0.05)
    # The tagger on raw text (`bertkit predict`): the words come from the model's tokenizer, and each entity's
    # character offsets slice the text to the entity; the entities are the test rows' gold ones.
    rows = splits[2][:24]
    texts = ["".join(r["tokens"]) for r in rows]
    result = run_cli("predict", tmp_path / "out" / "finetune" / "learn", *[a for t in texts for a in ("--text", t)])
    assert result.exit_code == 0, result.output
    predicted = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["text"] for p in predicted] == texts
    assert all(
        text[e["start"] : e["end"]] == e["text"]
        for p, text in zip(predicted, texts, strict=True)
        for e in p["entities"]
    )
    gold = [_entities(r["tokens"], r["tags"]) for r in rows]  # one character a word: word index = offset
    right = sum(
        [(e["type"], e["start"], e["end"]) for e in p["entities"]] == g for p, g in zip(predicted, gold, strict=True)
    )
    assert right >= 22, right  # observed: 24 of 24 (room for a CPU whose fp32 rounding flips one)


def _entities(tokens: list[str], tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) of a BIO row whose words are single characters."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, first, last + 1) for kind, first, last in get_entities(tags)]


def test_question_answering(tiny_run, tmp_path):
    """The answer is the name after the cue character: a surname and 1 or 2 given-name characters, amid filler,
    so its end is where the given-name characters stop. SQuAD v1.1 JSON, CMRC2018 scoring (0 to 100). Chance:
    exact match about 0 (one right span among some hundred)."""
    ids = iter(range(10**6))

    def make(rng):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN_NAMES) for _ in range(rng.randint(1, 2)))
        before = "".join(_filler(rng, rng.randint(1, 10))) + CUE
        context = before + name + "".join(_filler(rng, rng.randint(1, 10)))
        qa = {"id": str(next(ids)), "question": f"{CUE}什么", "answers": [{"text": name, "answer_start": len(before)}]}
        return {"context": context, "qas": [qa]}

    splits = _splits(make, 5, key=lambda paragraph: paragraph["context"])
    squad = [{"version": "1.1", "data": [{"title": "", "paragraphs": rows}]} for rows in splits]
    report = _finetune_and_eval(
        tiny_run,
        tmp_path,
        "question-answering",
        squad,
        "finetune.task.stride=8",
        "finetune.train.max_steps=160",
        suffix=".json",
    )
    assert report["exact_match"] >= 80
    assert report["exact_match"] == pytest.approx(98.96, abs=5)  # observed: 95 of 96


def test_multiple_choice(tiny_run, tmp_path):
    """The context is on one of two topics; of the 2 candidates, one on each topic, the right one is on the
    context's: chance 1/2. The candidates alone say nothing (every question has one of each topic), nor does the
    context alone (the candidates come in random order). Two, not four: the tiny model scores each candidate from
    its [CLS] alone, through one layer, and with 3 or 4 topics some seeds settle on telling only two groups of
    them apart (accuracy 0.5 to 0.75 with 4)."""

    def make(rng):
        topic, order = rng.randrange(2), rng.sample(range(2), 2)
        return {
            "context": _topic_text(rng, [topic], 6, rng.randint(0, 2)),
            "choices": [_topic_text(rng, [t], 3, 0) for t in order],
            "label": order.index(topic),
        }

    report = _finetune_and_eval(
        tiny_run,
        tmp_path,
        "multiple-choice",
        _splits(make, 6),
        "finetune.task.text_column=context",
        "finetune.train.max_steps=200",
    )
    assert report["accuracy"] >= 0.85
    assert report["accuracy"] == pytest.approx(1.0, abs=0.05)  # observed: 96 of 96
