"""An ONNX model from `bertkit export`, run by onnxruntime behind the interface the task families call.

    model = OnnxModel(export_dir / "model.int8.onnx", AutoConfig.from_pretrained(export_dir))
    out = model(input_ids=…, token_type_ids=…, attention_mask=…)     # out.logits, as a transformers head's

The families' prediction code (bertkit/tasks/) reads `model.config`, `model.device` and the outputs by name, so an
exported model predicts through the same code as its PyTorch original.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from bertkit.errors import BertkitError


class OnnxModel:
    def __init__(self, path: Path, config):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BertkitError("the ONNX backend needs onnxruntime: pip install 'bertkit[export]'") from None
        if not Path(path).is_file():
            raise BertkitError(
                f"{path}: no such ONNX model; make it with `bertkit export` (the int8 one with export.quantize=true)"
            )
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.config = config
        self.device = torch.device("cpu")

    def eval(self) -> OnnxModel:
        return self

    def to(self, device) -> OnnxModel:
        return self  # onnxruntime's CPU provider: inputs are moved to the CPU when fed

    def __call__(self, **inputs: torch.Tensor) -> SimpleNamespace:
        feeds = {name: inputs[name].cpu().numpy() for name in self.inputs}
        values = self.session.run(None, feeds)
        return SimpleNamespace(**{name: torch.from_numpy(v) for name, v in zip(self.outputs, values, strict=True)})
