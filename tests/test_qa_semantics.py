"""Question answering semantics: SQuAD v1.1 vs v2.0 scoring, unanswerable CMRC questions, the no-answer decision
(hand-made logits, and stored with a fine-tuned model), and malformed files refused when they are read."""

import json
from collections import Counter

import pytest
from conftest import DATA, ROOT, recipe_edits, run_cli

from bertkit.config.sections import TaskConfig
from bertkit.errors import BertkitError
from bertkit.metrics import cmrc_metrics, normalize_answer, squad_em, squad_f1, squad_metrics
from bertkit.tasks.qa import best_answer, encode, model_settings, read

RECIPES = ROOT / "recipes" / "finetune"
FAST = [
    "finetune.train.max_steps=2",
    "finetune.train.batch_size=8",
    "finetune.train.eval_every=2",
    "finetune.task.max_seq_length=64",
    "finetune.task.stride=16",
    "eval.batch_size=32",
]


def _official_v1(prediction: str, ground_truths: list[str]) -> tuple[float, float]:
    """exact_match_score, f1_score and metric_max_over_ground_truths of the official SQuAD v1.1 script."""

    def f1_score(prediction, ground_truth):
        prediction_tokens = normalize_answer(prediction).split()
        ground_truth_tokens = normalize_answer(ground_truth).split()
        num_same = sum((Counter(prediction_tokens) & Counter(ground_truth_tokens)).values())
        if num_same == 0:
            return 0
        precision, recall = num_same / len(prediction_tokens), num_same / len(ground_truth_tokens)
        return (2 * precision * recall) / (precision + recall)

    em = max(normalize_answer(prediction) == normalize_answer(g) for g in ground_truths)
    return float(em), max(f1_score(prediction, g) for g in ground_truths)


def _official_v2(prediction: str, answers: list[str]) -> tuple[float, float]:
    """compute_exact, compute_f1 and the gold filtering of the official SQuAD v2.0 script."""

    def get_tokens(s):
        return normalize_answer(s).split() if s else []

    def compute_f1(a_gold, a_pred):
        gold_toks, pred_toks = get_tokens(a_gold), get_tokens(a_pred)
        num_same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
        if len(gold_toks) == 0 or len(pred_toks) == 0:
            return int(gold_toks == pred_toks)
        if num_same == 0:
            return 0
        precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
        return (2 * precision * recall) / (precision + recall)

    gold_answers = [a for a in answers if normalize_answer(a)] or [""]
    em = max(int(normalize_answer(a) == normalize_answer(prediction)) for a in gold_answers)
    return float(em), max(compute_f1(a, prediction) for a in gold_answers)


# q1: "the" normalizes to nothing; q3's only gold does.
PREDICTIONS = {"q1": "", "q2": "The Paris", "q3": "Paris", "q4": "red dog"}
REFERENCES = {"q1": ["the", "Paris"], "q2": ["Paris", "An"], "q3": ["a"], "q4": ["big red dog"]}


def test_squad_v1_keeps_every_gold_and_has_no_empty_answer_rule():
    # q1: "" equals "the" normalized (EM 1) but shares no token with it (F1 0); q2 EM/F1 1; q3: "paris" vs "" 0;
    # q4: [red, dog] vs [big, red, dog], P 1 R 2/3, F1 0.8.
    per_question = {
        q: (squad_em(p, REFERENCES[q], False), squad_f1(p, REFERENCES[q], False)) for q, p in PREDICTIONS.items()
    }
    assert per_question == {"q1": (1.0, 0.0), "q2": (1.0, 1.0), "q3": (0.0, 0.0), "q4": (0.0, pytest.approx(0.8))}
    assert per_question == {q: _official_v1(p, REFERENCES[q]) for q, p in PREDICTIONS.items()}
    m = squad_metrics(PREDICTIONS, REFERENCES, version_2=False)
    assert m == pytest.approx({"exact_match": 50.0, "f1": 45.0})


def test_squad_v2_drops_empty_golds_and_scores_no_answer():
    # q1: golds ["Paris"]: "" scores 0; q3: no gold is left, so it is unanswerable and "paris" scores 0.
    per_question = {q: (squad_em(p, REFERENCES[q]), squad_f1(p, REFERENCES[q])) for q, p in PREDICTIONS.items()}
    assert per_question == {"q1": (0.0, 0.0), "q2": (1.0, 1.0), "q3": (0.0, 0.0), "q4": (0.0, pytest.approx(0.8))}
    assert per_question == {q: _official_v2(p, REFERENCES[q]) for q, p in PREDICTIONS.items()}
    assert squad_metrics(PREDICTIONS, REFERENCES) == pytest.approx({"exact_match": 25.0, "f1": 45.0})
    # An abstention on a question whose golds all normalize to nothing: 1 by v2.0, F1 0 by v1.1.
    assert _official_v2("", ["The"]) == (squad_em("", ["The"]), squad_f1("", ["The"])) == (1.0, 1.0)
    assert _official_v1("", ["The"]) == (squad_em("", ["The"], False), squad_f1("", ["The"], False)) == (1.0, 0.0)
    with pytest.raises(ValueError, match="only by the SQuAD v2.0 rules"):
        squad_metrics({"q": ""}, {"q": []}, version_2=False)


def test_cmrc_unanswerable_questions_score_only_an_empty_answer():
    predictions = {"q1": "", "q2": "北京", "q3": "北京", "q4": "。"}
    references = {"q1": [], "q2": [], "q3": ["北京。"], "q4": []}
    # q1 1/1, q2 0/0, q3 1/1, q4 ("。" is punctuation only: nothing) 1/1.
    assert cmrc_metrics(predictions, references) == pytest.approx(
        {
            "exact_match": 75.0,
            "f1": 75.0,
            "has_answer_exact": 100.0,
            "has_answer_f1": 100.0,
            "has_answer_total": 1,
            "no_answer_exact": 200 / 3,
            "no_answer_f1": 200 / 3,
            "no_answer_total": 3,
        }
    )


# Context "The tower": [CLS] question [SEP] The tower [SEP]. Spans: The 3+1, The tower 3+2.5, tower 1+2.5.
OFFSETS = [None, None, None, (0, 3), (4, 9), None]
START = [2.0, 0.0, 0.0, 3.0, 1.0, 0.0]
END = [2.0, 0.0, 0.0, 1.0, 2.5, 0.0]


def test_no_answer_wins_when_the_null_score_beats_the_best_span_by_more_than_the_threshold():
    window = (START, END, OFFSETS)
    # null 4.0, best span 5.5: the difference, -1.5, must exceed the threshold.
    assert best_answer([window], "The tower", 20, 30, True) == ("The tower", 5.5, 0)
    assert best_answer([window], "The tower", 20, 30, True, -1.5) == ("The tower", 5.5, 0)  # not strictly above
    assert best_answer([window], "The tower", 20, 30, True, -2.0) == ("", 4.0, None)
    assert best_answer([window], "The tower", 20, 30, False, -2.0) == ("The tower", 5.5, 0)  # not allowed
    # The null score is the lowest over the windows: 4.0 here, not 9.0.
    high_null = ([5.0, *START[1:]], [4.0, *END[1:]], OFFSETS)
    assert best_answer([high_null, window], "The tower", 20, 30, True, -1.0) == ("The tower", 5.5, 0)
    assert best_answer([high_null], "The tower", 20, 30, True, -1.0) == ("", 9.0, None)
    # No valid span among the n-best (the one start candidate is [CLS]): no answer, allowed or not.
    cls_first = ([4.0, *START[1:]], END, OFFSETS)
    assert best_answer([cls_first], "The tower", 1, 30, False) == ("", 6.0, None)
    assert best_answer([cls_first], "The tower", 2, 30, False) == ("The tower", 5.5, 0)


def _squad(questions: list[dict], context: str = "Paris is in France.", version: str | None = None) -> dict:
    data = {"data": [{"paragraphs": [{"context": context, "qas": questions}]}]}
    return data | ({"version": version} if version else {})


ANSWERED = {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}
UNANSWERABLE = {"id": "q2", "question": "Where is Lyon?", "answers": [], "is_impossible": True}


@pytest.mark.parametrize(
    "questions,version,allowed",
    [([ANSWERED], "1.1", False), ([ANSWERED], "v2.0", True), ([ANSWERED, UNANSWERABLE], None, True)],
)
def test_a_model_may_answer_no_answer_when_trained_on_squad_v2(tmp_path, questions, version, allowed):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(_squad(questions, version=version)), encoding="utf-8")
    qa = TaskConfig(type="question-answering")
    examples = read(path, qa, labelled=True)
    assert model_settings(examples, qa) == {"allow_no_answer": allowed}
    told = TaskConfig(type="question-answering", allow_no_answer=not allowed)
    assert model_settings(examples, told) == {"allow_no_answer": not allowed}


@pytest.mark.parametrize(
    "question,expected",
    [
        ({"question": "Where?", "answers": []}, "an 'id'"),
        ({"id": True, "question": "Where?", "answers": []}, "an 'id'"),
        ({"id": "q1", "answers": []}, "question q1: no 'question' text"),
        ({"id": "q1", "question": 7, "answers": []}, "question q1: no 'question' text"),
        ({"id": "q1", "question": "Where?", "answers": "France"}, "'answers' must be a list"),
        ({"id": "q1", "question": "Where?", "answers": ["France"]}, "answer 1 must be a"),
        ({"id": "q1", "question": "Where?", "answers": [{"text": 6, "answer_start": 12}]}, "non-empty 'text'"),
        ({"id": "q1", "question": "Where?", "answers": [{"text": " ", "answer_start": 11}]}, "non-empty 'text'"),
        ({"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": "12"}]}, "not '12'"),
        ({"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 12.0}]}, "not 12.0"),
        ({"id": "q1", "question": "Where?", "answers": [{"text": "P", "answer_start": False}]}, "not False"),
        ({"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": -1}]}, "not -1"),
        ({"id": "q1", "question": "Where?", "answers": [{"text": "France"}]}, "not None"),
        ({"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 11}]}, "not at offset 11"),
        ({"id": "q1", "question": "Where?", "is_impossible": "no"}, "'is_impossible' must be true or false"),
        ({**ANSWERED, "is_impossible": True}, "'is_impossible' is true but it has 1 answer(s)"),
        ({**UNANSWERABLE, "is_impossible": False}, "'is_impossible' is false but it has no answer(s)"),
        ({"id": "q1", "question": "Where?", "is_impossible": False}, "'is_impossible' is false but it has no"),
    ],
)
def test_malformed_questions_are_one_error_naming_file_and_question(tmp_path, question, expected):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(_squad([question])), encoding="utf-8")
    with pytest.raises(BertkitError) as error:
        read(path, TaskConfig())
    message = str(error.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_duplicate_ids_and_structure_are_refused(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(_squad([ANSWERED, ANSWERED])), encoding="utf-8")
    with pytest.raises(BertkitError, match="question id q1 appears twice"):
        read(path, TaskConfig())
    path.write_text(json.dumps({"data": [{"paragraphs": {"context": "x"}}]}), encoding="utf-8")
    with pytest.raises(BertkitError, match="article 1: 'paragraphs' must be a list of objects"):
        read(path, TaskConfig())


def test_a_stride_without_room_for_the_context_is_refused_and_long_questions_are_cut(tokenizer):
    context = "Paris is in France. " * 20
    question = "Which country is the city of Paris in, and which river runs through the city centre?"
    example = {"id": "q1", "question": question, "context": context, "label": [("France", 12)]}
    n_question = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    assert n_question == 22
    # A window holds [CLS] question [SEP] context [SEP]: 3 + 22 + (more than the stride) tokens.
    with pytest.raises(BertkitError, match=r"stride=30 leaves no room .* set stride ≤ 6 or max_seq_length ≥ 56$"):
        encode(tokenizer, [example], None, TaskConfig(max_seq_length=32, stride=30), train=True)
    # Stride 10 in 32 tokens leaves 32 - 10 - 1 - 3 = 18 tokens for the question: its first 18 are kept.
    features = encode(tokenizer, [example], None, TaskConfig(max_seq_length=32, stride=10), train=True)
    question_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    first = features[0]
    assert first["input_ids"][1:19] == question_ids[:18] and first["token_type_ids"][19:21] == [0, 1]  # [SEP] at 19
    assert all(len(f["input_ids"]) == 32 for f in features[:-1])
    assert sum(f["start_positions"] > 0 for f in features) > 0  # a window still holds the answer


def _write(path, data) -> str:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _eval(args: list, out, *extra) -> tuple[dict, list[dict]]:
    result = run_cli("eval", args[0], *recipe_edits(args[1:]), f"eval.output_dir={out}", *extra)
    assert result.exit_code == 0, result.output
    predictions = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads((out / "report.json").read_text()), [json.loads(p) for p in predictions]


def _articles(path, n: int, answerable_only: bool = False) -> dict:
    """The first n articles of a SQuAD file (the tiny model reads English a character at a time: keep it short)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data["data"] = data["data"][:n]
    for paragraph in (p for article in data["data"] for p in article["paragraphs"]):
        paragraph["qas"] = [q for q in paragraph["qas"] if q["answers"] or not answerable_only]
    return data


def test_no_answer_setting_is_stored_with_the_model_and_applies_to_any_file(tiny_run, tmp_path):
    # SQuAD v2.0: 4 of the 20 training questions and 2 of the 10 dev questions are unanswerable.
    train = _write(tmp_path / "train.json", _articles(DATA / "en" / "qa" / "train.json", 4))
    dev = _write(tmp_path / "dev.json", _articles(DATA / "en" / "qa" / "dev.json", 2))
    answerable = _write(tmp_path / "v1.json", _articles(DATA / "en" / "qa" / "dev.json", 2, True) | {"version": "1.1"})
    args = [
        RECIPES / "en-squad.yaml",
        f"output_dir={tmp_path / 'run'}",
        f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
        f"finetune.task.train_file={train}",
        f"finetune.task.validation_file={answerable}",
        *FAST,
    ]
    result = run_cli("finetune", *args)
    assert result.exit_code == 0, result.output
    model_dir = tmp_path / "run" / "finetune" / "squad"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["allow_no_answer"] is True

    # A threshold far below any score difference: wherever "no answer" is allowed, it wins.
    always = "finetune.task.null_score_diff_threshold=-1000.0"
    report, predictions = _eval(args, tmp_path / "e1", f"eval.file={answerable}", always)
    assert report["scoring"] == "SQuAD v1.1" and "no_answer_total" not in report
    assert len(predictions) == 8 and {p["prediction"] for p in predictions} == {""}
    assert report["exact_match"] == report["f1"] == 0.0
    _, predictions = _eval(
        args, tmp_path / "e2", f"eval.file={answerable}", always, "finetune.task.allow_no_answer=false"
    )
    assert all(p["prediction"] for p in predictions)

    # A model saved before the setting existed: "no answer" only on a SQuAD v2.0 file, as before.
    del config["allow_no_answer"]
    (model_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    _, predictions = _eval(args, tmp_path / "e3", f"eval.file={answerable}", always)
    assert all(p["prediction"] for p in predictions)
    report, predictions = _eval(args, tmp_path / "e4", f"eval.file={dev}", always)
    assert report["scoring"] == "SQuAD v2.0" and report["no_answer_total"] == 2 and report["no_answer_f1"] == 100.0
    assert report["has_answer_total"] == 8 and {p["prediction"] for p in predictions} == {""}


def test_cmrc_dev_file_with_unanswerable_questions_trains_and_scores(tiny_run, tmp_path):
    dev = json.loads((DATA / "zh" / "qa" / "dev.json").read_text(encoding="utf-8"))
    questions = dev["data"][0]["paragraphs"][0]["qas"]
    questions[0]["answers"] = []  # unanswerable: crashed the first dev evaluation before
    dev_file = _write(tmp_path / "dev.json", dev)
    args = [
        RECIPES / "zh-cmrc.yaml",
        f"output_dir={tmp_path / 'run'}",
        f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
        f"finetune.task.validation_file={dev_file}",
        f"finetune.task.test_file={dev_file}",
        *FAST,
    ]
    result = run_cli("finetune", *args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "finetune" / "cmrc" / "config.json").read_text())
    assert config["allow_no_answer"] is False  # trained on v1.1-style data: always an answer
    report, predictions = _eval(args, tmp_path / "eval")
    assert report["scoring"] == "CMRC2018" and report["no_answer_total"] == 1 and report["has_answer_total"] == 39
    assert predictions[0]["answers"] == [] and predictions[0]["prediction"] != ""
    assert report["no_answer_exact"] == report["no_answer_f1"] == 0.0
