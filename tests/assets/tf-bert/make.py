"""Writes the tiny google-research/bert-style release that tests/test_convert.py converts (run it again only to
change the asset). Two steps, as TensorFlow and torch need not share an environment:

    python tests/assets/tf-bert/make.py weights      # bertkit's venv: a seeded torch BERT → weights.npz, expected.json
    python tests/assets/tf-bert/make.py checkpoint   # a venv with tensorflow: weights.npz → bert_model.ckpt.*

The TF names, the kernel transposes and the optimizer slots (adam_m/adam_v, global_step) are those of
google-research/bert's run_pretraining.py checkpoints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "北",
    "京",
    "是",
    "中",
    "国",
    "的",
    "首",
    "都",
    "。",
    "hello",
    "world",
]
CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 16,
    "initializer_range": 0.02,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "type_vocab_size": 2,
    "vocab_size": len(VOCAB),
}
INPUT_IDS = [[2, 5, 6, 7, 8, 9, 10, 4, 12, 13, 3]]


def tf_name(name: str) -> tuple[str, bool] | None:
    """Google's TF name of a BertForPreTraining parameter, and whether TF stores it transposed."""
    if name.startswith("cls.predictions.decoder"):
        return None  # tied to the word embeddings and the MLM bias
    parts = name.split(".")
    out, transpose = [], False
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == "layer" and i + 1 < len(parts) and parts[i + 1].isdigit():
            out.append(f"layer_{parts[i + 1]}")
            i += 2
            continue
        out.append(part)
        i += 1
    leaf = out.pop()
    if out[-1] == "LayerNorm":
        out.append({"weight": "gamma", "bias": "beta"}[leaf])
    elif out[-1].endswith("_embeddings"):
        pass
    elif out[:2] == ["cls", "predictions"] and len(out) == 2:
        out.append("output_bias")
    elif out[:2] == ["cls", "seq_relationship"]:
        out.append({"weight": "output_weights", "bias": "output_bias"}[leaf])
    else:
        out.append({"weight": "kernel", "bias": "bias"}[leaf])
        transpose = leaf == "weight"
    return "/".join(out), transpose


def weights() -> None:
    import torch
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(**CONFIG)).eval()
    with torch.no_grad():  # every tensor distinct (biases and LayerNorm too), so that any mix-up shows
        for name, p in model.named_parameters():
            p.copy_((1.0 if "LayerNorm.weight" in name else 0.0) + 0.2 * torch.randn_like(p))
    arrays = {}
    for name, tensor in model.state_dict().items():
        if name.endswith(("position_ids", "token_type_ids")) and "embeddings." in name and "weight" not in name:
            continue
        mapped = tf_name(name)
        if mapped is None:
            continue
        key, transpose = mapped
        array = tensor.numpy()
        arrays[key] = array.T if transpose else array
    np.savez(HERE / "weights.npz", **arrays)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(INPUT_IDS))
    expected = {
        "input_ids": INPUT_IDS,
        "prediction_logits": out.prediction_logits.tolist(),
        "seq_relationship_logits": out.seq_relationship_logits.tolist(),
    }
    (HERE / "expected.json").write_text(json.dumps(expected))
    (HERE / "bert_config.json").write_text(json.dumps(CONFIG, indent=2))
    (HERE / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")


def checkpoint() -> None:
    import tensorflow as tf

    arrays = dict(np.load(HERE / "weights.npz"))
    with tf.Graph().as_default():
        variables = [tf.compat.v1.Variable(value, name=name) for name, value in arrays.items()]
        # What a run_pretraining.py checkpoint holds besides the weights.
        first = next(iter(arrays))
        variables.append(tf.compat.v1.Variable(np.zeros_like(arrays[first]), name=f"{first}/adam_m"))
        variables.append(tf.compat.v1.Variable(np.zeros_like(arrays[first]), name=f"{first}/adam_v"))
        variables.append(tf.compat.v1.Variable(np.int64(1000), name="global_step"))
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(HERE / "bert_model.ckpt"), write_meta_graph=False)
    (HERE / "checkpoint").unlink(missing_ok=True)


if __name__ == "__main__":
    {"weights": weights, "checkpoint": checkpoint}[sys.argv[1]]()
