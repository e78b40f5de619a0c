"""The four commands end to end through the CLI on a tiny model, and their outputs in plain transformers."""

import json
import subprocess
import sys

import torch
from conftest import DATA, RECIPE, ROOT, run_cli, tiny_overrides
from transformers import (
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
    stats = json.loads((out / "data" / "statistics.json").read_text())
    assert stats["train"]["examples"] > 50 and stats["validation"]["examples"] > 0
    assert stats["documents"] == 200 and stats["sentences"] == 1401
    assert 0.5 < stats["zh_multi_char_word_share"] < 0.9
    assert stats["vocabulary_coverage"]["unk_rate"] < 0.01
    from datasets import load_from_disk

    example = load_from_disk(str(out / "data"))["train"][0]
    assert len(example["input_ids"]) <= 64 and example["input_ids"][0] == tok.cls_token_id
    assert (out / "data" / "bertkit.yaml").is_file()


def test_pretrain_output_loads_in_transformers(tiny_run):
    out, _ = tiny_run
    model_dir = out / "pretrain"
    for cls in (BertForPreTraining, BertForMaskedLM, BertModel):
        model = cls.from_pretrained(model_dir)
        assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 64
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "vocab.txt").is_file()
    fill = pipeline("fill-mask", model=str(model_dir), tokenizer=str(model_dir), device="cpu")
    predictions = fill("北京是中国的[MASK]都。")
    assert len(predictions) == 5 and all("token_str" in p for p in predictions)
    log = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [2, 4, 6]
    assert any("eval/mlm_accuracy" in r for r in log)
    assert sorted(p.name for p in (model_dir / "checkpoints").iterdir()) == ["step-3", "step-6"]  # every 3, last
    assert (model_dir / "checkpoints" / "step-3" / "training_state.pt").is_file()
    assert (model_dir / "curves.png").stat().st_size > 10_000
    assert list((model_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_finetune_output_is_a_classifier_with_labels(tiny_run):
    out, _ = tiny_run
    model = BertForSequenceClassification.from_pretrained(out / "finetune" / "topic")
    assert sorted(model.config.id2label.values()) == ["体育", "娱乐", "教育", "科技", "财经"]
    tok = BertTokenizerFast.from_pretrained(out / "finetune" / "topic")
    with torch.no_grad():
        logits = model(**tok(["国足今晚迎战日本队"], return_tensors="pt")).logits
    assert logits.shape == (1, 5)
    clf = pipeline("text-classification", model=str(out / "finetune" / "topic"), device="cpu")
    assert clf("国足今晚迎战日本队")[0]["label"] in model.config.label2id


def test_eval_classifier_prints_table_and_writes_report(tiny_run):
    out, overrides = tiny_run
    result = run_cli("eval", RECIPE, *overrides)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "macro_f1" in result.output and "体育" in result.output
    report = json.loads((out / "eval" / "topic" / "report.json").read_text())
    assert report["examples"] == 100 and 0 <= report["accuracy"] <= 1
    assert set(report["per_class"]) == {"体育", "娱乐", "教育", "科技", "财经"}
    predictions = (out / "eval" / "topic" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 100 and "prediction" in json.loads(predictions[0])


def test_eval_pretrained_model_reports_mlm_and_nsp(tiny_run):
    out, overrides = tiny_run
    result = run_cli("eval", RECIPE, *overrides, f"eval.model_dir={out / 'pretrain'}")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval" / "pretrain" / "report.json").read_text())
    assert 0 <= report["mlm_accuracy"] <= 1 and 0 <= report["nsp_accuracy"] <= 1
    assert 1 < report["mlm_perplexity"] < 1500 * 2  # a barely trained model: near the vocabulary size
    assert report["masked_tokens"] > 0


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


def test_console_script_error_has_no_traceback(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  files: [missing.txt]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bertkit", "tokenize", str(recipe)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: missing.txt: no such file; check data.files in the recipe"
    assert "Traceback" not in proc.stdout + proc.stderr


def test_help_documents_every_recipe_key():
    from bertkit.config import RunConfig, describe

    every_key = {line.split(" = ")[0] for line in describe(list(RunConfig.model_fields)).splitlines()}
    shown = ""
    for command in ("tokenize", "pretrain", "finetune", "eval", "embed", "probe", "export"):
        result = run_cli(command, "--help")
        assert result.exit_code == 0 and "key=value" in result.output
        shown += result.output
    assert {k for k in every_key if k not in shown} == set()
