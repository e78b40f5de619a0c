"""The four commands end to end through the CLI on a tiny model, and their outputs in plain transformers."""

import json
import math
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import DATA, RECIPE, ROOT, run_cli, tiny_overrides
from transformers import (
    AutoTokenizer,
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    pipeline,
)


def test_tokenize_writes_tokenizer_and_examples(tiny_run):
    out, _ = tiny_run
    tok = BertTokenizerFast.from_pretrained(out / "tokenizer")
    assert (out / "tokenizer" / "vocab.txt").read_text(encoding="utf-8").splitlines()[:5] == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]
    assert tok.tokenize("北京") == ["北", "京"]  # CJK characters split, as in BERT
    meta = json.loads((out / "data" / "bertkit_data.json").read_text())
    assert meta["segmenter"] == "rjieba" and meta["max_seq_length"] == 64 and meta["objective"] == "nsp"
    # The corpus's 2293 characters are more than tokenizer.vocab_size=1500: no merges, the same vocabulary in every
    # process (ties between merges are broken in hash-map order), so the numbers pinned below hold.
    assert meta["vocab_size"] == 2313
    stats = json.loads((out / "data" / "statistics.json").read_text())
    # Seeded pairing and splitting, no floats: exact on any machine.
    assert (stats["train"]["documents"], stats["train"]["examples"], stats["train"]["tokens"]) == (190, 808, 51064)
    assert (stats["validation"]["documents"], stats["validation"]["examples"]) == (10, 46)
    assert stats["documents"] == 200 and stats["sentences"] == 1401
    assert stats["zh_multi_char_word_share"] == 0.7073
    assert stats["vocabulary_coverage"]["unk_rate"] < 0.01
    from datasets import load_from_disk

    example = load_from_disk(str(out / "data"))["train"][0]
    assert len(example["input_ids"]) <= 64 and example["input_ids"][0] == tok.cls_token_id
    recorded = yaml.safe_load((out / "data" / "bertkit.yaml").read_text(encoding="utf-8"))
    assert recorded["tokenizer"]["vocab_size"] == 1500 and recorded["data"]["max_seq_length"] == 64  # as run


def test_pretrain_output_loads_in_transformers(tiny_run):
    out, _ = tiny_run
    model_dir = out / "pretrain"
    for cls in (BertForPreTraining, BertForMaskedLM, BertModel):
        model, info = cls.from_pretrained(model_dir, output_loading_info=True)
        assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 64
        assert not info["missing_keys"]  # every weight saved under its name: none left at random init
        assert not info["unexpected_keys"] or cls is not BertForPreTraining  # the others drop the NSP head
    assert (model_dir / "model.safetensors").is_file()  # safetensors, not a pickle
    fill = pipeline("fill-mask", model=str(model_dir), tokenizer=str(model_dir), device="cpu")
    predictions = fill("北京是中国的[MASK]都。")
    # The MLM head as trained (decoder tied to the embeddings, its bias): the top 5 are ~2% apart, far above noise.
    assert [p["token_str"] for p in predictions] == ["。", "市", "画", "喝", "冒"]
    assert predictions[0]["score"] == pytest.approx(7.9532e-4, rel=1e-3)
    log = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    # The seeded tiny run, step by step (fp32; across CPUs only the last bits differ, ~1e-7 relative).
    losses = {r["step"]: r["loss"] for r in log if "loss" in r}
    assert losses == pytest.approx({2: 8.472430, 4: 8.417923, 6: 8.375854}, rel=1e-4)
    evals = [r for r in log if "eval/mlm_loss" in r]
    assert [r["step"] for r in evals] == [3, 6]
    assert [r["eval/mlm_loss"] for r in evals] == pytest.approx([7.719728, 7.699486], rel=1e-4)
    assert [r["eval/masked_tokens"] for r in evals] == [381, 381]  # the same masks at every evaluation
    # What `auto` became is saved beside the recipe, for pretraining and fine-tuning alike; the recipe keeps `auto`.
    for stage in ("pretrain", "finetune/topic"):
        assert yaml.safe_load((out / stage / "resolved.yaml").read_text())["precision"] == "no"
    assert yaml.safe_load((model_dir / "bertkit.yaml").read_text())["train"]["packed_attention"] == "auto"
    assert sorted(p.name for p in (model_dir / "checkpoints").iterdir()) == ["step-3", "step-6"]  # every 3, last
    assert (model_dir / "checkpoints" / "step-3" / "training_state.pt").is_file()
    assert (model_dir / "curves.png").stat().st_size > 10_000
    assert list((model_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_finetune_output_is_a_classifier_with_labels(tiny_run):
    out, _ = tiny_run
    model = BertForSequenceClassification.from_pretrained(out / "finetune" / "topic")
    assert sorted(model.config.id2label.values()) == ["体育", "娱乐", "教育", "科技", "财经"]
    tok = BertTokenizerFast.from_pretrained(out / "finetune" / "topic")
    texts = ["国足今晚迎战日本队", "央行宣布降息", "新款手机发布", "高考成绩公布"]
    with torch.no_grad():
        probabilities = model(**tok(texts, return_tensors="pt", padding=True)).logits.softmax(-1)
    clf = pipeline("text-classification", model=str(out / "finetune" / "topic"), device="cpu")
    predicted = clf(texts)
    assert [p["label"] for p in predicted] == ["体育", "财经", "科技", "教育"]  # right, each by a wide margin
    assert [p["score"] for p in predicted] == pytest.approx(probabilities.max(-1).values.tolist(), abs=1e-5)


def test_eval_classifier_prints_table_and_writes_report(tiny_run):
    out, overrides = tiny_run
    result = run_cli("eval", RECIPE, *overrides)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "macro_f1" in result.output and "体育" in result.output
    report = json.loads((out / "eval" / "topic" / "report.json").read_text())
    # Five balanced classes: the majority class is 0.2. 57 steps from the 6-step tiny BERT reach 79 of 100 (±1
    # example: a prediction may flip on another CPU).
    assert report["examples"] == 100 and report["accuracy"] >= 0.2 + 0.5
    assert report["accuracy"] == pytest.approx(0.79, abs=0.011)
    assert report["macro_f1"] == pytest.approx(0.7858, abs=0.02)
    assert set(report["per_class"]) == {"体育", "娱乐", "教育", "科技", "财经"}
    log = [json.loads(line) for line in (out / "finetune" / "topic" / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval/accuracy"] for r in log if "eval/accuracy" in r] == pytest.approx([0.48, 0.71, 0.75], abs=0.011)
    assert [r["loss"] for r in log if "loss" in r][-1] == pytest.approx(0.710798, rel=1e-3)  # step 57
    predictions = (out / "eval" / "topic" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 100 and "prediction" in json.loads(predictions[0])


def test_eval_pretrained_model_reports_mlm_and_nsp(tiny_run):
    out, overrides = tiny_run
    result = run_cli("eval", RECIPE, *overrides, f"eval.model_dir={out / 'pretrain'}")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval" / "pretrain" / "report.json").read_text())
    # The step-6 evaluation of pretraining, again: the same 381 masked tokens of the 46 validation examples.
    assert (report["masked_tokens"], report["examples"]) == (381, 46)
    assert report["mlm_loss"] == pytest.approx(7.699486, rel=1e-4)
    assert report["mlm_perplexity"] == pytest.approx(math.exp(report["mlm_loss"]))  # near the 2313-token vocabulary
    assert report["mlm_accuracy"] == pytest.approx(2 / 381, abs=1.01 / 381)  # ±1 token
    assert report["nsp_accuracy"] == pytest.approx(30 / 46, abs=1.01 / 46)  # ±1 example


def test_held_out_scores_at_a_fixed_masking_rate(tiny_run, tmp_path):
    """eval.masking_rate scores at its own rate, whatever masking.rate a run trained with: a 30%-masked run
    is scored on the very masks of a 15% one."""
    out, overrides = tiny_run
    counts = []
    for rates in (["masking.rate=0.3"], ["masking.rate=0.3", "eval.masking_rate=0.15"]):
        where = [f"eval.model_dir={out / 'pretrain'}", f"eval.output_dir={tmp_path}", "overwrite=true"]
        result = run_cli("eval", RECIPE, *overrides, *rates, *where)
        assert result.exit_code == 0, result.output
        counts.append(json.loads((tmp_path / "report.json").read_text())["masked_tokens"])
    assert counts[0] > 1.7 * 381 and counts[1] == 381


def test_eval_masked_lm_reports_the_same_mlm_scores(tiny_run, tmp_path):
    """A BertForMaskedLM (what the Trainer's run_mlm saves) is scored on masked LM alone: the same numbers as
    the BertForPreTraining it was cut from, and no NSP score from a head it does not have."""
    out, overrides = tiny_run
    BertForMaskedLM.from_pretrained(out / "pretrain").save_pretrained(tmp_path / "mlm")
    AutoTokenizer.from_pretrained(out / "pretrain").save_pretrained(tmp_path / "mlm")
    reports = []
    for model_dir in (out / "pretrain", tmp_path / "mlm"):
        result = run_cli(
            "eval",
            RECIPE,
            *overrides,
            f"eval.model_dir={model_dir}",
            f"eval.output_dir={tmp_path / 'eval' / model_dir.name}",
        )
        assert result.exit_code == 0, result.output
        reports.append(json.loads((tmp_path / "eval" / model_dir.name / "report.json").read_text()))
    full, masked_lm = reports
    assert "nsp_accuracy" in full and "nsp_accuracy" not in masked_lm
    for key in ("mlm_loss", "mlm_accuracy", "masked_tokens"):
        assert masked_lm[key] == pytest.approx(full[key], rel=1e-6)


def test_sentence_pair_classification_from_tsv(tiny_run, tmp_path):
    out, overrides = tiny_run
    pair = [
        f"finetune.model_dir={out / 'pretrain'}",
        f"output_dir={tmp_path}",
        "finetune.task.name=pairs",
        f"finetune.task.train_file={DATA / 'zh/pairs/train.tsv'}",
        f"finetune.task.validation_file={DATA / 'zh/pairs/dev.tsv'}",
        "finetune.task.test_file=null",
        "finetune.task.text_column=sentence1",
        "finetune.task.text_pair_column=sentence2",
    ]
    result = run_cli("finetune", RECIPE, *overrides, *pair)
    assert result.exit_code == 0, result.output
    model = BertForSequenceClassification.from_pretrained(tmp_path / "finetune" / "pairs")
    assert model.config.id2label == {0: "0", 1: "1"}


def _error(result):
    assert result.exit_code == 2
    lines = [line for line in (result.stderr or result.output).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_bad_inputs_are_one_line_errors(tmp_path, tiny_run):
    out, overrides = tiny_run
    base = tiny_overrides(tmp_path / "x")
    assert "no_such.txt: no such file" in _error(run_cli("tokenize", RECIPE, *base, "data.files=[no_such.txt]"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert "corpus holds no text" in _error(run_cli("tokenize", RECIPE, *base, f"data.files=[{empty}]"))
    assert "unknown key 'train.lr_peak'" in _error(run_cli("pretrain", RECIPE, *base, "train.lr_peak=1"))
    msg = _error(run_cli("finetune", RECIPE, *overrides, "overwrite=true", "finetune.task.label_column=topic"))
    assert "no column 'topic'" in msg and "train.jsonl" in msg
    assert "no pretraining data here" in _error(run_cli("pretrain", RECIPE, *base))


@pytest.mark.slow
def test_console_script_error_has_no_traceback(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  files: [missing.txt]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bertkit", "tokenize", str(recipe)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: missing.txt: no such file; check data.files in the recipe"
    assert "Traceback" not in proc.stdout + proc.stderr
