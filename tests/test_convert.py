"""`bertkit convert` on a tiny google-research/bert-style release written by TensorFlow itself
(tests/assets/tf-bert/make.py: a seeded torch BERT's weights under Google's names, kernels transposed, with
adam_m/adam_v slots and global_step), against that torch model's logits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import RECIPE, ROOT, run_cli
from transformers import AutoTokenizer, BertForPreTraining

from bertkit.commands.convert import hf_name, read_tf_checkpoint

ASSET = ROOT / "tests" / "assets" / "tf-bert"


def test_the_tf_checkpoint_reads_without_tensorflow():
    tensors = read_tf_checkpoint(ASSET / "bert_model.ckpt")
    assert tensors["bert/encoder/layer_1/attention/self/query/kernel"].shape == (16, 16)
    assert tensors["cls/seq_relationship/output_weights"].shape == (2, 16)
    assert not [n for n in tensors if "adam" in n or n == "global_step"]  # optimizer state is not the model


@pytest.mark.parametrize(
    "tf, hf",
    [
        ("bert/embeddings/word_embeddings", ("bert.embeddings.word_embeddings.weight", False)),
        (
            "bert/encoder/layer_11/attention/self/query/kernel",
            ("bert.encoder.layer.11.attention.self.query.weight", True),
        ),
        ("bert/encoder/layer_0/output/LayerNorm/gamma", ("bert.encoder.layer.0.output.LayerNorm.weight", False)),
        ("cls/predictions/output_bias", ("cls.predictions.bias", False)),
        ("cls/seq_relationship/output_weights", ("cls.seq_relationship.weight", False)),
    ],
)
def test_google_names(tf, hf):
    assert hf_name(tf) == hf


def test_convert_gives_the_same_logits_and_loads_in_transformers(tmp_path):
    release = tmp_path / "chinese_L-2_H-16_A-2"  # Google's naming: not "cased", so lower-cased
    shutil.copytree(ASSET, release, ignore=shutil.ignore_patterns("*.py", "*.npz", "expected.json"))
    out = tmp_path / "converted"
    result = run_cli("convert", RECIPE, f"convert.checkpoint={release}", f"convert.output_dir={out}")
    assert result.exit_code == 0, result.output
    expected = json.loads((ASSET / "expected.json").read_text())
    model = BertForPreTraining.from_pretrained(out).eval()
    with torch.no_grad():
        got = model(input_ids=torch.tensor(expected["input_ids"]))
    torch.testing.assert_close(got.prediction_logits, torch.tensor(expected["prediction_logits"]))
    torch.testing.assert_close(got.seq_relationship_logits, torch.tensor(expected["seq_relationship_logits"]))
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.tokenize("Hello 北京") == ["hello", "北", "京"]


def test_a_cased_release_keeps_case_and_a_wrong_dir_is_one_line(tmp_path):
    release = tmp_path / "cased_L-2_H-16_A-2"
    shutil.copytree(ASSET, release, ignore=shutil.ignore_patterns("*.py", "*.npz", "expected.json"))
    result = run_cli("convert", RECIPE, f"convert.checkpoint={release}", f"convert.output_dir={tmp_path / 'out'}")
    assert result.exit_code == 0, result.output
    assert AutoTokenizer.from_pretrained(tmp_path / "out").tokenize("Hello")[0] == "[UNK]"  # no "Hello" in vocab
    (release / "bert_config.json").unlink()
    result = run_cli("convert", RECIPE, f"convert.checkpoint={release}", f"convert.output_dir={tmp_path / 'o2'}")
    assert result.exit_code == 2 and "bert_config.json: not found" in result.stderr


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("hidden_size", "x", "hidden_size must be an integer, got 'x'"),
        ("hidden_dropout_prob", "high", "hidden_dropout_prob must be a number, got 'high'"),
        ("pad_token_id", "a", "pad_token_id must be an integer or null, got 'a'"),
    ],
)
def test_a_wrong_type_in_bert_config_is_one_line_naming_the_file_and_key(tmp_path, key, value, expected):
    release = tmp_path / "uncased_L-2_H-16_A-2"
    shutil.copytree(ASSET, release, ignore=shutil.ignore_patterns("*.py", "*.npz", "expected.json"))
    config = json.loads((release / "bert_config.json").read_text())
    (release / "bert_config.json").write_text(json.dumps({**config, key: value}))
    result = run_cli("convert", RECIPE, f"convert.checkpoint={release}", f"convert.output_dir={tmp_path / 'out'}")
    assert result.exit_code == 2
    assert result.stderr == f"error: {release / 'bert_config.json'}: {expected}; fix the file\n"
    assert not (tmp_path / "out").exists()
