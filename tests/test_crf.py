"""The CRF tagger head: its likelihood and Viterbi path against brute force, and the CLI round trip."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from conftest import ROOT, recipe_edits, run_cli
from transformers import BertConfig, BertForTokenClassification

from bertkit.data.padding import IGNORE_INDEX
from bertkit.modeling.bilstm import load_bilstm
from bertkit.modeling.crf import CRF, gather_words
from bertkit.tasks.tagging import BertCrfForTokenClassification

NER = ROOT / "recipes" / "finetune" / "zh-ner.yaml"


def _random_crf(tags: int, seed: int = 0) -> CRF:
    g = torch.Generator().manual_seed(seed)
    crf = CRF(tags)
    with torch.no_grad():
        for p in crf.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return crf


@torch.no_grad()
def _brute_force(crf: CRF, emissions: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """(scores of every path, the paths) of one row's word emissions (W, C), by enumeration."""
    paths = list(itertools.product(range(emissions.shape[1]), repeat=emissions.shape[0]))
    scores = []
    for path in paths:
        s = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, k] for t, k in enumerate(path))
        s = s + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path))
        scores.append(s)
    return torch.stack(scores), paths


# Rows with words at scattered positions (first word pieces), of different counts, one with a single word.
KEEP = torch.tensor(
    [
        [False, True, True, False, True, True, False],
        [False, True, False, False, True, False, False],
        [False, False, True, False, False, False, False],
    ]
)


def test_likelihood_and_viterbi_equal_brute_force():
    torch.manual_seed(0)
    crf = _random_crf(3)
    logits = torch.randn(*KEEP.shape, 3)
    gold = torch.randint(0, 3, KEEP.shape)
    labels = gold.masked_fill(~KEEP, IGNORE_INDEX)
    expected_nll, words = 0.0, 0
    for row in range(len(KEEP)):
        emissions = logits[row][KEEP[row]]
        scores, paths = _brute_force(crf, emissions)
        assert crf.decode(logits[row : row + 1], KEEP[row : row + 1]) == [list(paths[int(scores.argmax())])]
        gold_path = tuple(gold[row][KEEP[row]].tolist())
        expected_nll += float(torch.logsumexp(scores, 0) - scores[paths.index(gold_path)])
        words += len(emissions)
    assert crf.loss(logits, labels).item() == pytest.approx(expected_nll / words, rel=1e-5)
    # The batch decodes as its rows do one by one (padding and other rows' lengths change nothing).
    assert crf.decode(logits, KEEP) == [crf.decode(logits[r : r + 1], KEEP[r : r + 1])[0] for r in range(3)]


def test_gradients_of_the_likelihood_reach_every_score():
    crf = _random_crf(4, seed=1)
    logits = torch.randn(*KEEP.shape, 4, requires_grad=True)
    labels = torch.randint(0, 4, KEEP.shape).masked_fill(~KEEP, IGNORE_INDEX)
    crf.loss(logits, labels).backward()
    assert logits.grad[~KEEP].abs().max() == 0 and logits.grad[KEEP].abs().min() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in crf.parameters())


def test_a_fresh_crf_decodes_as_the_argmax():
    logits = torch.randn(*KEEP.shape, 5)
    expected = [logits[r][KEEP[r]].argmax(-1).tolist() for r in range(len(KEEP))]
    assert CRF(5).decode(logits, KEEP) == expected


def test_gather_words_keeps_order_and_masks_the_rest():
    x = torch.arange(7)[None].expand(3, -1)
    words, mask = gather_words(x, KEEP)
    assert words[mask.bool()].tolist() == x[KEEP].tolist() and mask.sum(1).tolist() == [4, 2, 1]


def test_bert_crf_from_a_plain_bert_and_back_in_plain_transformers(tiny_run, tmp_path):
    """A BERT dir has no CRF: it starts at zero (not uninitialised memory); the saved tagger loads as a plain
    BertForTokenClassification with the same emissions."""
    model = BertCrfForTokenClassification.from_pretrained(str(tiny_run[0] / "pretrain"), num_labels=3)
    assert all(p.detach().abs().max().item() == 0 for p in model.crf.parameters())
    with torch.no_grad():
        model.crf.transitions.fill_(0.5)
    model.save_pretrained(tmp_path)
    plain = BertForTokenClassification.from_pretrained(str(tmp_path)).eval()
    again = BertCrfForTokenClassification.from_pretrained(str(tmp_path)).eval()
    assert again.crf.transitions.detach().min().item() == 0.5
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, again(input_ids=ids).logits)


@pytest.mark.parametrize("model", ["bert", "bilstm"])
def test_crf_tagger_through_finetune_and_eval(tiny_run, tmp_path, model):
    args = [
        NER,
        *recipe_edits(
            [
                f"output_dir={tmp_path}",
                f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
                "finetune.task.crf=true",
                "finetune.train.max_steps=3",
                "finetune.train.batch_size=8",
                "finetune.train.log_every=1",
                "finetune.task.max_seq_length=64",
                "finetune.task.stride=16",
                *(
                    ["finetune.model_type=bilstm", "finetune.bilstm.hidden_size=16", "finetune.bilstm.embedding_dim=16"]
                    * (model == "bilstm")
                ),
            ]
        ),
    ]
    result = run_cli("finetune", *args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "finetune" / "ner"
    config = json.loads((out / "config.json").read_text())
    assert config["crf"] is True
    if model == "bert":
        assert config["architectures"] == ["BertCrfForTokenClassification"]
        assert "BertCrfForTokenClassification.from_pretrained" in result.output
        assert BertCrfForTokenClassification.from_pretrained(str(out)).crf.transitions.detach().abs().max() > 0
    else:
        assert load_bilstm(out).crf.transitions.detach().abs().max() > 0  # trained, saved and loaded
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < r["loss"] < 10 for r in log if "loss" in r)  # a per-word NLL, on cross-entropy's scale
    result = run_cli("eval", *args)
    assert result.exit_code == 0, result.output
    report = json.loads(next((tmp_path / "eval").glob("*/report.json")).read_text())
    assert report["examples"] == 60 and 0 <= report["f1"] <= 1
    if model == "bert":  # ONNX would lose the Viterbi decoding: refused in one line
        result = run_cli("export", *args, f"export.model_dir={out}", f"export.output_dir={tmp_path / 'onnx'}")
        assert result.exit_code == 2 and "a tagger with a CRF cannot be exported" in result.stderr


def test_crf_is_a_tagging_key(tiny_run, tmp_path):
    result = run_cli(
        "finetune", ROOT / "recipes" / "demo-zh.yaml", *tiny_run[1], f"output_dir={tmp_path}", "finetune.task.crf=true"
    )
    assert result.exit_code != 0 and "crf" in result.output + result.stderr


def test_the_crf_learns_at_its_own_rate():
    from bertkit.config.sections import TrainConfig
    from bertkit.training.optim import make_optimizer

    model = BertCrfForTokenClassification(
        BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=50,
            num_labels=3,
        )
    )
    optimizer = make_optimizer(model, TrainConfig(lr=5e-5), {"crf.": 1e-2})
    crf = {id(p) for p in model.crf.parameters()}
    lrs = {g["lr"] for g in optimizer.param_groups if {id(p) for p in g["params"]} & crf}
    others = {g["lr"] for g in optimizer.param_groups if not {id(p) for p in g["params"]} & crf}
    assert lrs == {1e-2} and others == {5e-5}
