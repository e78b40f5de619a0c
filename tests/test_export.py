"""bertkit export: ONNX parity with PyTorch (< 1e-4 at fp32) for each head, and int8 quantisation."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, recipe_edits, run_cli

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow  # an ONNX export takes seconds
RECIPE = ROOT / "recipes" / "demo-zh.yaml"


@pytest.mark.parametrize("what", ["finetune/topic", "pretrain"])
def test_export_matches_pytorch(tiny_run, tmp_path, what):
    out, overrides = tiny_run
    result = run_cli(
        "export",
        RECIPE,
        *overrides,
        f"export.model_dir={out / what}",
        f"export.output_dir={tmp_path}",
        "export.quantize=true",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["max_abs_difference"] < 1e-4
    assert report["quantized"]["max_abs_difference"] < 1.0
    if what == "pretrain":
        assert report["class"] == "BertForMaskedLM" and report["outputs"] == ["logits"]
        assert "dev_agreement" not in report["quantized"]  # the head of no task family: nothing to compare on
    else:
        # The metric change on the dev file: fp32 is fine-tuning's best dev evaluation (75 of 100, ±1); int8 kernels
        # differ by CPU, but quantising this model costs a few headlines at most.
        quantized = report["quantized"]
        log = [json.loads(line) for line in (out / what / "metrics.jsonl").read_text().splitlines()]
        best = max(r["eval/accuracy"] for r in log if "eval/accuracy" in r)  # the model kept
        assert quantized["dev_accuracy_fp32"] == pytest.approx(best, abs=0.011)
        assert quantized["dev_accuracy_fp32"] == pytest.approx(0.75, abs=0.011)
        assert quantized["dev_accuracy_int8"] == pytest.approx(quantized["dev_accuracy_fp32"], abs=0.05)
        assert quantized["dev_examples"] == 100 and quantized["dev_agreement"] >= 0.9
        agree = round(quantized["dev_agreement"] * 100)
        assert "int8 on data/zh/topic/dev.jsonl: accuracy " in result.stdout  # the recipe's path
        assert f"predicts as fp32 on {agree} of 100 examples" in result.stdout
        _predict_with_onnx(out / what, tmp_path)

    import onnxruntime as ort
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(tmp_path)  # the export dir is self-contained
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for texts in (
        ["北京"],
        ["一句话。", "另一句更长一些的话，用来检查动态长度。", "第三句"],
    ):  # dynamic batch and length
        enc = tok(texts, padding=True, return_tensors="np")
        logits = session.run(None, {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")})[0]
        assert logits.shape[0] == len(texts) and np.isfinite(logits).all()


def test_export_refuses_what_it_cannot_export(tiny_run, tmp_path):
    from conftest import DATA

    out, overrides = tiny_run
    choice = tmp_path / "choice"
    args = [
        RECIPE,
        *overrides,
        f"finetune.model_dir={out / 'pretrain'}",
        f"output_dir={choice}",
        "finetune.task.type=multiple-choice",
        "finetune.task.name=c",
        "finetune.task.text_column=context",
        f"finetune.task.train_file={DATA / 'zh/choice/dev.jsonl'}",
        "finetune.task.validation_file=null",
        "finetune.train.max_steps=1",
    ]
    assert run_cli("finetune", *args).exit_code == 0
    result = run_cli("export", args[0], *recipe_edits(args[1:]), f"export.model_dir={choice / 'finetune' / 'c'}")
    assert result.exit_code == 2 and "cannot be exported" in result.stderr


def _predict_with_onnx(model_dir, export_dir):
    """`bertkit predict` of the export dir (auto: no weights there, so onnx) and its int8 model: the PyTorch
    model's predictions (fp32: all of them, probabilities to 1e-4; int8: at least 90 of 100 on this tiny model)."""
    test = ROOT / "data" / "zh" / "topic" / "test.jsonl"

    def predict(directory, *args):
        # A process of its own: onnxruntime's thread pools left in this one would deadlock later tests' forks.
        command = [sys.executable, "-m", "bertkit", "predict", str(directory), str(test), *args]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return [json.loads(line) for line in result.stdout.splitlines()]

    torch_rows, onnx_rows = predict(model_dir), predict(export_dir)
    assert [r["prediction"] for r in onnx_rows] == [r["prediction"] for r in torch_rows]
    for a, b in zip(onnx_rows, torch_rows, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
    int8 = predict(export_dir, "predict.backend=onnx-int8")
    agree = sum(a["prediction"] == b["prediction"] for a, b in zip(int8, torch_rows, strict=True))
    assert agree >= 90, agree


@pytest.mark.parametrize("recipe,metric", [("zh-ner.yaml", "f1"), ("zh-cmrc.yaml", "f1")])
def test_int8_against_fp32_on_the_dev_file_of_a_tagger_and_a_qa_model(tiny_run, tmp_path, recipe, metric):
    """export.quantize=true on a tagger and a QA model: both ONNX models run on the recipe's dev file through the
    family's own decoding; fp32's metric is `bertkit eval`'s of the PyTorch model, and the share of examples int8
    predicts as fp32 is printed."""
    args = [
        ROOT / "recipes" / "finetune" / recipe,
        *recipe_edits(
            [
                f"output_dir={tmp_path}",
                f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
                "finetune.train.max_steps=3",
                "finetune.train.batch_size=8",
                "finetune.task.max_seq_length=64",
                "finetune.task.stride=16",
            ]
        ),
    ]
    assert run_cli("finetune", *args).exit_code == 0
    model = next((tmp_path / "finetune").iterdir())
    result = run_cli("export", *args, "export.quantize=true", f"export.output_dir={tmp_path / 'onnx'}")
    assert result.exit_code == 0, result.output
    quantized = json.loads((tmp_path / "onnx" / "export.json").read_text())["quantized"]
    eval_out = tmp_path / "eval"
    result_eval = run_cli(
        "eval", *args, f"eval.model_dir={model}", f"eval.file={quantized['dev_file']}", f"eval.output_dir={eval_out}"
    )
    assert result_eval.exit_code == 0, result_eval.output
    evaluated = json.loads((eval_out / "report.json").read_text())
    assert quantized["dev_metric"] == metric and quantized["dev_examples"] == evaluated["examples"]
    assert quantized[f"dev_{metric}_fp32"] == pytest.approx(evaluated[metric], abs=1e-6)
    assert 0 <= quantized[f"dev_{metric}_int8"] and 0 <= quantized["dev_agreement"] <= 1
    assert f"predicts as fp32 on {round(quantized['dev_agreement'] * quantized['dev_examples'])} of" in result.stdout


def test_agreement_is_the_same_prediction_or_a_score_within_a_share_of_the_spread():
    from bertkit.commands.export import agreement

    def rows(*predictions):
        return [{"prediction": p} for p in predictions]

    assert agreement(rows("a", "b", "a"), rows("a", "a", "a")) == pytest.approx(2 / 3)
    assert agreement(rows(["B-PER", "O"], ["O"]), rows(["B-PER", "O"], ["B-LOC"])) == 0.5  # a tagger: every tag
    # Regression: fp32's scores span 4.0, so a score agrees within 0.04.
    assert agreement(rows(1.0, 5.0, 3.0), rows(1.03, 4.9, 3.0)) == pytest.approx(2 / 3)
