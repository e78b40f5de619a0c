"""`bertkit export`: a BERT dir to ONNX (dynamic batch and sequence axes), checked against PyTorch, optionally
quantised to int8.

    report = run_export(load_recipe("recipes/demo-zh.yaml", ["export.quantize=true"]))
    # export/<model>/model.onnx (+ model.int8.onnx), its tokenizer and config, export.json

Parity: the ONNX model runs in onnxruntime on sample texts of other batch sizes and lengths than the export's;
the largest absolute difference from PyTorch must stay under 1e-4 at fp32. Quantisation (onnxruntime's
dynamic int8) is timed against the fp32 ONNX model and, for a model of a task family whose head it is (a
classifier, regression, tagger without CRF, QA model), run on the recipe's dev file through the family's own
decoding: both models' dev metric, and how often int8 predicts as fp32 does.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

from bertkit.atomic import atomic_dir, check_apart, check_output, write_text
from bertkit.config import CONFIG_FILE, ExportRecipe, save_config
from bertkit.config.sections import TaskColumnsConfig, TaskReadingConfig
from bertkit.errors import BertkitError
from bertkit.modeling.model import check_fits, check_model_dir, load_model, model_architectures, quiet_transformers
from bertkit.tasks import get_task
from bertkit.tasks.common import Task, check_gold
from bertkit.tokenizer.train import load_tokenizer, save_tokenizer

# Architecture in config.json → the class exported. A pretraining model is exported as a masked LM (fill-mask).
EXPORTABLE = {
    "BertForSequenceClassification": BertForSequenceClassification,
    "BertForTokenClassification": BertForTokenClassification,
    "BertForQuestionAnswering": BertForQuestionAnswering,
    "BertForPreTraining": BertForMaskedLM,
    "BertForMaskedLM": BertForMaskedLM,
    "BertModel": BertModel,
}
INPUTS = ["input_ids", "token_type_ids", "attention_mask"]
SAMPLES = [
    "北京是中国的首都。",
    "BERT 模型在 2018 年发布，改变了自然语言处理。",
    "Short one.",
    "A longer English sentence, to check that a different sequence length works as well.",
]
TOLERANCE = 1e-4
DEV_BATCH = 32
SCORE_AGREEMENT = 0.01  # a predicted score agrees within this share of the spread of fp32's scores on the dev file


def _onnx():
    try:
        import onnxruntime

        return onnxruntime
    except ImportError:
        raise BertkitError(
            "bertkit export needs onnx, onnxruntime and onnxscript: pip install 'bertkit[export]'"
        ) from None


def _session(ort, path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, enc) -> list[np.ndarray]:
    return session.run(None, {k: enc[k].numpy() for k in INPUTS})


def max_difference(model, session, tokenizer, texts: list[str]) -> float:
    """Largest |PyTorch − ONNX| over every output, on batches unlike the export's sample."""
    worst = 0.0
    for batch in (texts, texts[:1], texts[::-1][:3]):
        enc = tokenizer(batch, padding=True, return_tensors="pt")
        with torch.no_grad():
            reference = [t.numpy() for t in model(**{k: enc[k] for k in INPUTS}).values()]
        for ours, ref in zip(_run(session, enc), reference, strict=True):
            worst = max(worst, float(np.abs(ours - ref).max()))
    return worst


def _time(session, enc, repeats: int = 20) -> float:
    _run(session, enc)
    start = time.perf_counter()
    for _ in range(repeats):
        _run(session, enc)
    return (time.perf_counter() - start) / repeats


@dataclass
class DevCheck:
    """The recipe's dev file, read as the model's task family reads it: what the int8 model is compared on."""

    task: Task
    task_cfg: TaskReadingConfig
    path: Path
    examples: list[dict]
    labels: list[str] | None


def _reading(cfg: ExportRecipe, model_dir: Path) -> TaskReadingConfig | None:
    """How the dev file is read: the recipe's task keys, the others (a tagger's columns, stride) from the model's
    own bertkit.yaml when it has one; None when that names another task family than the recipe."""
    columns = cfg.finetune.task.model_dump(include=set(TaskColumnsConfig.model_fields))
    own = TaskReadingConfig(type=columns["type"])
    if (model_dir / CONFIG_FILE).is_file():
        from bertkit.tasks.predictor import load_predict_recipe

        try:
            own = load_predict_recipe(model_dir, []).finetune.task
        except BertkitError:  # not a fine-tuned model's recipe: the defaults
            pass
    if own.type != columns["type"]:
        return None
    # The recipe's length may be shorter than the model's windows overlap: the overlap shrinks to fit.
    return own.model_copy(update={**columns, "stride": min(own.stride, columns["max_seq_length"] - 4)})


def _dev_check(cfg: ExportRecipe, model_dir: Path, model) -> DevCheck | None:
    """The dev (else test) file of the recipe, read before anything is exported, when the exported model is the
    head of the recipe's task family (its predictions then decode as `bertkit eval` decodes them)."""
    path = cfg.finetune.task.validation_file or cfg.finetune.task.test_file
    task_cfg = _reading(cfg, model_dir) if path is not None else None
    if task_cfg is None or type(model) is not get_task(task_cfg.type).model_class:
        return None
    task = get_task(task_cfg.type)
    examples = task.read(path, task_cfg, labelled=True)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if task.has_labels else None
    if labels:
        check_gold(examples, labels, path)
    return DevCheck(task, task_cfg, Path(path), examples, labels)


def agreement(fp32: list[dict], int8: list[dict]) -> float:
    """The share of examples that int8 predicts as fp32 does: the same label, tags, labels or answer; a score
    (regression) within SCORE_AGREEMENT of the spread of fp32's scores."""
    a, b = [p["prediction"] for p in fp32], [p["prediction"] for p in int8]
    if all(isinstance(x, float) for x in a):
        close = SCORE_AGREEMENT * ((max(a) - min(a)) or 1.0)
        same = [abs(x - y) <= close for x, y in zip(a, b, strict=True)]
    else:
        same = [x == y for x, y in zip(a, b, strict=True)]
    return sum(same) / len(same)


def _compare(dev: DevCheck, tmp: Path, config, tokenizer) -> dict:
    """Both ONNX models on the dev file through the family's own decoding: its default metric, and agreement."""
    from bertkit.modeling.onnx_model import OnnxModel

    metric = dev.task.default_metric
    found = {}
    for name, file in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
        model = OnnxModel(tmp / file, config)
        found[name] = dev.task.evaluate(model, tokenizer, dev.examples, dev.labels, dev.task_cfg, DEV_BATCH)
    (fp32_metrics, fp32), (int8_metrics, int8) = found["fp32"], found["int8"]
    return {
        "dev_file": str(dev.path),
        "dev_examples": len(dev.examples),
        "dev_metric": metric,
        f"dev_{metric}_fp32": fp32_metrics.get(metric),
        f"dev_{metric}_int8": int8_metrics.get(metric),
        "dev_agreement": agreement(fp32, int8),
    }


def run_export(cfg: ExportRecipe) -> dict:
    """Export `export.model_dir` (default: the fine-tuned model) to ONNX, check it, optionally quantise it."""
    ort = _onnx()
    model_dir, out_dir, model, tokenizer = setup(cfg)
    dev = _dev_check(cfg, model_dir, model) if cfg.export.quantize else None  # its errors before any export
    sample = tokenizer(SAMPLES[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = list(model(**{k: sample[k] for k in INPUTS}).keys())
    report: dict = {"model": str(model_dir), "class": type(model).__name__, "outputs": outputs}
    with atomic_dir(out_dir) as tmp:
        started = time.perf_counter()
        export_onnx(model, sample, outputs, tmp / "model.onnx")
        report["export_seconds"] = round(time.perf_counter() - started, 2)
        session = _session(ort, tmp / "model.onnx")
        report["max_abs_difference"] = max_difference(model, session, tokenizer, SAMPLES)
        if report["max_abs_difference"] >= TOLERANCE:
            raise BertkitError(
                f"{model_dir}: the ONNX model differs from PyTorch by {report['max_abs_difference']:.2e}"
                f" (tolerance {TOLERANCE}); nothing was written"
            )
        if cfg.export.quantize:
            report["quantized"] = _quantize(ort, session, tmp, model, tokenizer)
            if dev is not None:
                report["quantized"] |= _compare(dev, tmp, model.config, tokenizer)
        report["size_mb"] = round(sum(p.stat().st_size for p in tmp.glob("model.onnx*")) / 1e6, 2)  # + .data
        save_tokenizer(tokenizer, tmp)
        shutil.copy(model_dir / "config.json", tmp / "config.json")
        write_text(tmp / "export.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        save_config(cfg, tmp)
    finish(report, out_dir)
    return report


def setup(cfg: ExportRecipe):
    """(model dir, output dir, the model in its exported class, its tokenizer), after the output checks."""
    quiet_transformers()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed" notes
    model_dir = check_model_dir(cfg.export.model_dir or cfg.finetune_dir)
    out_dir = cfg.export.output_dir or cfg.output_dir / "export" / model_dir.resolve().name
    check_apart({"export.output_dir": out_dir}, {"export.model_dir": model_dir})
    check_output(out_dir, "export.output_dir", cfg.overwrite)
    architectures = model_architectures(model_dir)
    cls = next((EXPORTABLE[a] for a in architectures if a in EXPORTABLE), None)
    if "BertCrfForTokenClassification" in architectures:
        raise BertkitError(
            f"{model_dir}: a tagger with a CRF cannot be exported (ONNX would hold its scores, not its Viterbi "
            "decoding, and so tag differently); export a tagger fine-tuned with finetune.task.crf=false"
        )
    if cls is None:
        raise BertkitError(
            f"{model_dir}: {', '.join(architectures) or 'unknown architecture'} cannot be exported; "
            f"bertkit exports {', '.join(EXPORTABLE)}"
        )
    # Eager attention: the exporter traces its plain matmuls; SDPA's fused kernel is not needed in ONNX.
    model, loading = load_model(
        cls, model_dir, cfg.allow_pickle_weights, attn_implementation="eager", output_loading_info=True
    )
    if cls is BertModel and any(key.startswith("pooler.") for key in loading["missing_keys"]):
        model.pooler = None  # saved without one (ELECTRA's discriminator): no pooler_output of random weights
    model.eval()
    tokenizer = load_tokenizer(model_dir)
    length = cfg.finetune.task.max_seq_length if cfg.export.quantize else None  # only the int8 scoring uses it
    check_fits(model, tokenizer, model_dir, length, "finetune.task.max_seq_length")
    return model_dir, out_dir, model, tokenizer


def export_onnx(model, sample, outputs: list[str], path: Path) -> None:
    """torch.onnx's dynamo exporter with dynamic batch and sequence axes on every input."""
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    # The exporter narrates its graph passes on stdout, and warns that the three inputs share one "sequence"
    # axis, which they must.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch-internal notices (axis names, deprecations) during export
        torch.onnx.export(
            model,
            (),
            str(path),
            kwargs={k: sample[k] for k in INPUTS},
            input_names=INPUTS,
            output_names=outputs,
            dynamo=True,
            verbose=False,
            dynamic_shapes={k: {0: batch, 1: sequence} for k in INPUTS},
        )


def _quantize(ort, session, tmp: Path, model, tokenizer) -> dict:
    """model.int8.onnx beside model.onnx: its speed-up, difference from PyTorch and size."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice to pre-process models for static quantisation
    try:
        quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model.int8.onnx"), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    int8 = _session(ort, tmp / "model.int8.onnx")
    enc = tokenizer(SAMPLES * 8, padding=True, return_tensors="pt")
    fp32_s, int8_s = _time(session, enc), _time(int8, enc)
    return {
        "speedup": round(fp32_s / int8_s, 2),
        "fp32_ms_per_batch": round(fp32_s * 1000, 2),
        "int8_ms_per_batch": round(int8_s * 1000, 2),
        "max_abs_difference": max_difference(model, int8, tokenizer, SAMPLES),
        "size_mb": round((tmp / "model.int8.onnx").stat().st_size / 1e6, 2),
    }


def finish(report: dict, out_dir: Path) -> None:
    """The summary of what was written."""
    print(
        f"{report['class']} → {out_dir / 'model.onnx'} ({report['size_mb']} MB), outputs "
        f"{', '.join(report['outputs'])}; max |PyTorch − ONNX| = {report['max_abs_difference']:.2e}"
    )
    if "quantized" in report:
        q = report["quantized"]
        line = f"int8: {out_dir / 'model.int8.onnx'} ({q['size_mb']} MB), {q['speedup']}× faster than fp32 ONNX"
        print(line)
        if "dev_agreement" in q:
            print(_dev_line(q))


def _dev_line(q: dict) -> str:
    """The int8 model against fp32 on the dev file: the metric of both, and how often they agree."""
    metric = q["dev_metric"]
    fp32, int8 = q[f"dev_{metric}_fp32"], q[f"dev_{metric}_int8"]
    scores = f"{fp32:.4f} → {int8:.4f}" if fp32 is not None and int8 is not None else "not reported"
    agree = round(q["dev_agreement"] * q["dev_examples"])
    return (
        f"int8 on {q['dev_file']}: {metric} {scores} (fp32 → int8); predicts as fp32 on {agree} of "
        f"{q['dev_examples']} examples ({q['dev_agreement']:.1%})"
    )
