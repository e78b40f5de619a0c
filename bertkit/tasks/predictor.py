"""A fine-tuned model dir loaded once and put to use: what `bertkit predict` and `bertkit serve` share.

The model dir describes itself: the bertkit.yaml that `bertkit finetune` saved beside it gives the task family,
its columns and lengths, so the same decoding runs whether the model answers a file or an HTTP request.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import yaml

from bertkit.config import CONFIG_FILE, PredictRecipe, load_recipe
from bertkit.errors import BertkitError
from bertkit.modeling.model import check_fits, check_model_dir, model_architectures, quiet_transformers
from bertkit.tasks import get_task
from bertkit.tasks.models import load_finetuned
from bertkit.tokenizer.train import load_tokenizer
from bertkit.training.runtime import make_accelerator


def load_predict_recipe(model_dir: Path, overrides: list[str], command: str = "predict") -> PredictRecipe:
    """The model dir's own recipe (the bertkit.yaml its fine-tuning saved) with the overrides."""
    saved = check_model_dir(model_dir) / CONFIG_FILE
    if not saved.is_file():
        raise BertkitError(
            f"{model_dir}: no {CONFIG_FILE}, so the task it was fine-tuned for is unknown; give a model dir that "
            "`bertkit finetune` wrote"
        )
    if "finetune" not in (yaml.safe_load(saved.read_text(encoding="utf-8")) or {}):
        raise BertkitError(
            f"{model_dir}: not a fine-tuned model (its {CONFIG_FILE} names no task); give a dir that `bertkit "
            "finetune` or `bertkit export` wrote"
        )
    return load_recipe(saved, overrides, command)


class Predictor:
    """The model of a dir as predict.backend runs it, its tokenizer and labels; `predict(examples)` in order."""

    def __init__(self, cfg: PredictRecipe, model_dir: Path):
        quiet_transformers()
        self.cfg = cfg
        self.task = get_task(cfg.finetune.task.type)
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the predictions' alone (e.g. precision=auto's choice)
            self.accelerator = make_accelerator(cfg.predict.precision, "predict.precision")
        model = _model(cfg, self.task, model_dir).to(self.accelerator.device)
        self.model = model.eval()
        self.tokenizer = load_tokenizer(model_dir)
        check_fits(model, self.tokenizer, model_dir, cfg.finetune.task.max_seq_length, "finetune.task.max_seq_length")
        config = model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)] if self.task.has_labels else None

    @property
    def takes_raw_text(self) -> bool:
        """One raw text is one input (not for a model of text pairs)."""
        return self.task.raw_example is not None and not self.cfg.finetune.task.text_pair_column

    def raw(self, text: str, where: str) -> dict:
        """An unlabelled example of one raw text (`where` names its source in the error of a family without)."""
        if not self.takes_raw_text:
            fields = ", ".join(self.columns)
            raise BertkitError(
                f"{where}: this model's task takes inputs with the fields {fields}, from a file with those columns "
                "(.jsonl, .csv, …), not raw text"
            )
        return self.task.raw_example(text, self.tokenizer)

    @property
    def columns(self) -> list[str]:
        """The fields one input has: `text` alone where the family takes raw text, else the task's columns."""
        return ["text"] if self.takes_raw_text else self.task.columns(self.cfg.finetune.task)

    def from_rows(self, rows: list[dict], where: str) -> list[dict]:
        """Unlabelled examples of in-memory rows (a request's objects), read by the family's own file reader so
        the same checks run; errors name `where` instead of the scratch file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [{"id": str(i), **row} for i, row in enumerate(rows, 1)]  # questions are keyed by id
        with tempfile.TemporaryDirectory(prefix="bertkit-rows-") as scratch:
            path = Path(scratch) / "inputs.parquet"
            try:
                pq.write_table(pa.Table.from_pylist(rows), path)
                return self.task.read(path, self.cfg.finetune.task, labelled=False)
            except (pa.ArrowException, BertkitError) as e:
                raise BertkitError(str(e).replace(str(path), where)) from None

    def predict(self, examples: list[dict]) -> list[dict]:
        """One prediction per example, in order: the example's fields, the prediction and the family's scores."""
        with self.accelerator.autocast():
            _, predictions = self.task.evaluate(
                self.model, self.tokenizer, examples, self.labels, self.cfg.finetune.task, self.cfg.predict.batch_size
            )
        top_k = self.cfg.predict.top_k
        if top_k:
            for p in predictions:
                if isinstance(p.get("probabilities"), dict):
                    best = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])[:top_k]
                    p["top_k"] = [{"label": label, "probability": prob} for label, prob in best]
        return predictions


def _model(cfg: PredictRecipe, task, model_dir: Path):
    """The fine-tuned model of the dir as predict.backend runs it."""
    backend = cfg.predict.backend
    if backend == "auto":
        weights = any(model_dir.glob("*.safetensors")) or any(model_dir.glob("pytorch_model*.bin"))
        backend = "torch" if weights else "onnx"
    if backend == "torch":
        return load_finetuned(cfg, task, model_dir, model_architectures(model_dir))
    from transformers import AutoConfig

    from bertkit.modeling.onnx_model import OnnxModel

    name = "model.int8.onnx" if backend == "onnx-int8" else "model.onnx"
    return OnnxModel(model_dir / name, AutoConfig.from_pretrained(model_dir))
