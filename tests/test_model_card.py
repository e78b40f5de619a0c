"""The model card of a fine-tuned model gets `bertkit eval`'s test scores beside its dev scores: the values of
eval's report, the file and its size; a later eval replaces them; the dev file adds nothing; a card the user
edited (or a dir bertkit did not write) is left byte for byte, with one line that says so."""

import json
import shutil

import pytest
from conftest import DATA, RECIPE, run_cli

from bertkit.atomic import MARKER
from bertkit.training.model_card import README, TEST_HEADING, _unsealed

TOPIC = DATA / "zh" / "topic"


@pytest.fixture
def model(tiny_run, tmp_path):
    """A copy of the tiny run's topic classifier (its marker too): the shared one stays as it was."""
    copy = tmp_path / "topic"
    shutil.copytree(tiny_run[0] / "finetune" / "topic", copy)
    return copy


def _eval(tiny_run, model, file, out):
    result = run_cli(
        "eval", RECIPE, *tiny_run[1], f"eval.model_dir={model}", f"eval.file={file}", f"eval.output_dir={out}"
    )
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "report.json").read_text())


def _section(card: str) -> str:
    """The test section of a card: from its heading to the next section."""
    start = card.index(TEST_HEADING)
    return card[start : card.index("\n## ", start)]


def test_eval_puts_its_test_scores_into_the_card(tiny_run, model, tmp_path):
    before = (model / README).read_text()  # other tests' evals of the shared run may have added test scores
    assert "## Scores (dev set)" in before
    result, report = _eval(tiny_run, model, TOPIC / "test.jsonl", tmp_path / "e1")
    card = (model / README).read_text()
    section = _section(card)
    assert f"`{TOPIC / 'test.jsonl'}` (100 examples)" in section
    scores = {k: v for k, v in report.items() if isinstance(v, float)}
    assert "accuracy" in scores and "macro_f1" in scores
    for name, value in scores.items():
        assert f"| {name} | {value:.4f} |" in section
    # The dev scores stay as they were, before the test scores, and the card is still bertkit's own (sealed).
    dev_start = before.index("## Scores (dev set)")
    dev = before[dev_start : before.index("\n## ", dev_start)]
    assert dev in card and card.index(dev) < card.index(TEST_HEADING) < card.index("## Use")
    assert _unsealed(card) is not None and f"model card: {model / README}" in result.stdout

    # Another file replaces the test scores (one section, of the new file); the dev file adds none.
    subset = tmp_path / "part.jsonl"
    subset.write_text("".join((TOPIC / "test.jsonl").read_text().splitlines(keepends=True)[:40]), encoding="utf-8")
    _, report = _eval(tiny_run, model, subset, tmp_path / "e2")
    card = (model / README).read_text()
    assert card.count(TEST_HEADING) == 1 and f"`{subset}` (40 examples)" in _section(card)
    assert f"| accuracy | {report['accuracy']:.4f} |" in _section(card) and str(TOPIC / "test.jsonl") not in card
    _eval(tiny_run, model, TOPIC / "dev.jsonl", tmp_path / "e3")
    assert (model / README).read_text() == card


@pytest.mark.parametrize("change", ["edited", "not bertkit's dir"])
def test_a_card_bertkit_did_not_write_as_it_is_stays(tiny_run, model, tmp_path, change):
    if change == "edited":
        (model / README).write_text((model / README).read_text().replace("# topic", "# My topic model"))
    else:
        (model / MARKER).unlink()
    before = (model / README).read_bytes()
    result, _ = _eval(tiny_run, model, TOPIC / "test.jsonl", tmp_path / "e")
    assert (model / README).read_bytes() == before
    notes = [line for line in result.stderr.splitlines() if str(model / README) in line]
    assert len(notes) == 1 and "left as it is, without the test scores" in notes[0], result.stderr
