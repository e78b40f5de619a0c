"""Models by Hub id, offline: a Hugging Face cache laid out in a temp dir (the layout huggingface_hub reads with
HF_HUB_OFFLINE=1) holding tiny BERTs — safetensors, a pytorch_model.bin only, TF-era names without a pooler."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import RECIPE, ROOT, recipe_edits, run_cli
from huggingface_hub import constants
from transformers import BertForPreTraining, BertForTokenClassification

from bertkit.hub import split_hub_id

NER = ROOT / "recipes" / "finetune" / "zh-ner.yaml"
SHA = "0123456789abcdef0123456789abcdef01234567"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "config.json")


def _repo(cache: Path, repo_id: str, source: Path, weights: dict[str, bytes] | None = None, sha: str = SHA) -> Path:
    """A cached snapshot of `repo_id` (refs/main → sha) holding `source`'s tokenizer and config, and its
    safetensors unless `weights` ({file name: bytes}) replaces them."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(sha)
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, snapshot / name)
    if weights is None:
        shutil.copyfile(source / "model.safetensors", snapshot / "model.safetensors")
    for name, data in (weights or {}).items():
        (snapshot / name).write_bytes(data)
    return snapshot


def _saved(state: dict, path: Path) -> bytes:
    torch.save(state, path)
    return path.read_bytes()


class _RunsCode:
    """A pickle that would create a file when unpickled by Python's full unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def hub(tiny_run, tmp_path, monkeypatch):
    """The offline cache with three repos made from the tiny run's pretrained model; returns (cache, model dir)."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    source = tiny_run[0] / "pretrain"
    state = BertForPreTraining.from_pretrained(source).state_dict()
    _repo(cache, "tiny/safe", source)
    _repo(cache, "tiny/bin-only", source, {"pytorch_model.bin": _saved(state, tmp_path / "a.bin")})
    old = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
        if ".pooler." not in k
    }
    _repo(cache, "tiny/old-names", source, {"pytorch_model.bin": _saved(old, tmp_path / "b.bin")})
    return cache, source


def _error(result) -> str:
    """The one error line of a failed command (progress bars share stderr)."""
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _emissions(model_dir: Path) -> torch.Tensor:
    model = BertForTokenClassification.from_pretrained(str(model_dir), num_labels=3).eval()
    torch.manual_seed(0)
    torch.nn.init.normal_(model.classifier.weight)
    with torch.no_grad():
        return model.bert(input_ids=torch.tensor([[2, 10, 11, 12, 3]])).last_hidden_state


@pytest.mark.parametrize(
    "value, expected",
    [
        ("hfl/chinese-roberta-wwm-ext", ("hfl/chinese-roberta-wwm-ext", None)),
        ("bert-base-chinese", ("bert-base-chinese", None)),
        ("hfl/rbt3@v1.0", ("hfl/rbt3", "v1.0")),
        (f"google-bert/bert-base-uncased@{SHA}", ("google-bert/bert-base-uncased", SHA)),
        ("runs/demo-zh/pretrain", None),  # two slashes: a path
        ("/abs/dir", None),
        ("./model", None),
        ("a--b/c", None),
        ("owner/name@", None),  # an empty revision: a typo, not an id
    ],
)
def test_what_is_a_hub_id(value, expected):
    assert split_hub_id(value) == expected


@pytest.mark.parametrize("repo", ["tiny/safe", "tiny/bin-only", "tiny/old-names"])
def test_finetune_and_eval_from_a_hub_id(hub, tiny_run, tmp_path, repo):
    cache, source = hub
    args = [
        NER,
        *recipe_edits(
            [
                f"output_dir={tmp_path / 'out'}",
                f"finetune.model_dir={repo}",
                "finetune.train.max_steps=2",
                "finetune.train.batch_size=8",
                "finetune.task.max_seq_length=64",
            ]
        ),
    ]
    result = run_cli("finetune", *args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "finetune" / "ner"
    saved = yaml.safe_load((out / "bertkit.yaml").read_text())
    assert saved["finetune"]["model_dir"] == f"{repo}@{SHA}"  # the id, pinned; not the cache path
    card = (out / "README.md").read_text()  # the model card, ready for `hf upload`
    assert f"base_model: {repo}\n" in card and "pipeline_tag: token-classification" in card
    assert f"`{repo}@{SHA}` (Hugging Face Hub)" in card and "| f1 | " in card
    # The repo's weights, whatever their format and names, load as the model they were made from.
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / SHA
    torch.testing.assert_close(_emissions(snapshot), _emissions(source))
    result = run_cli("eval", *args, f"eval.model_dir={out}")
    assert result.exit_code == 0, result.output


def test_a_pinned_revision_and_other_commands(hub, tiny_run, tmp_path):
    cache, source = hub
    _repo(cache, "tiny/safe", source, sha="f" * 40)  # a second commit; refs/main now points at it
    out = tmp_path / "out"
    result = run_cli(
        "embed",
        RECIPE,
        f"output_dir={out}",
        f"embed.model_dir=tiny/safe@{SHA}",
        f"embed.file={ROOT / 'data' / 'zh' / 'topic' / 'dev.jsonl'}",
        f"embed.output_dir={out / 'embed'}",
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((out / "embed" / "bertkit.yaml").read_text())["embed"]["model_dir"] == f"tiny/safe@{SHA}"
    # pretrain from a hub id (model.init_from), on the tiny run's data
    result = run_cli(
        "pretrain",
        RECIPE,
        *tiny_run[1],
        f"output_dir={out}",
        f"data.dataset_dir={tiny_run[0] / 'data'}",
        "model.init_from=tiny/safe",
        "train.max_steps=1",
    )
    assert result.exit_code == 0, result.output
    assert (
        yaml.safe_load((out / "pretrain" / "bertkit.yaml").read_text())["model"]["init_from"] == "tiny/safe@" + "f" * 40
    )


def test_offline_and_not_cached_is_one_line(hub, tmp_path):
    message = _error(run_cli("finetune", NER, f"output_dir={tmp_path}", "finetune.model_dir=hfl/not-cached"))
    assert "finetune.model_dir=hfl/not-cached" in message and "HF_HUB_OFFLINE" in message
    assert "hf download hfl/not-cached" in message


def test_a_bin_that_runs_code_is_refused_and_runs_nothing(hub, tmp_path):
    cache, source = hub
    marker = tmp_path / "ran"
    state = BertForPreTraining.from_pretrained(source).state_dict()
    state["payload"] = _RunsCode(marker)
    _repo(cache, "evil/bert", source, {"pytorch_model.bin": _saved(state, tmp_path / "c.bin")})
    args = ["finetune", NER, f"output_dir={tmp_path / 'out'}", "finetune.model_dir=evil/bert"]
    message = _error(run_cli(*args))
    assert not marker.exists()
    assert "more than tensors" in message and "allow_pickle_weights" in message
    assert not (tmp_path / "out" / "finetune").exists()


def test_the_checkpoints_casing_is_kept(hub, tmp_path):
    """An English cased checkpoint says do_lower_case false in its tokenizer_config; the recipe does not decide."""
    from bertkit.tokenizer.train import load_tokenizer

    cased = tmp_path / "cased"
    cased.mkdir()
    (cased / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello", "hello"]))
    (cased / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert load_tokenizer(cased).tokenize("Hello") == ["Hello"]
    (cased / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    assert load_tokenizer(cased).tokenize("Hello") == ["hello"]


def test_predict_with_a_hub_id(tiny_run, tmp_path, monkeypatch):
    """`bertkit predict owner/name`: the fine-tuned model and its bertkit.yaml (the task) from the Hub's cache."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    source = tiny_run[0] / "finetune" / "topic"
    snapshot = _repo(cache, "someone/topic", source)
    shutil.copyfile(source / "bertkit.yaml", snapshot / "bertkit.yaml")
    local = run_cli("predict", source, "--text", "今天的比赛非常精彩")
    remote = run_cli("predict", "someone/topic", "--text", "今天的比赛非常精彩")
    assert remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert _error(run_cli("predict", "someone/missing", "--text", "x")).startswith(
        "error: MODEL=someone/missing: not a local dir, not in the Hugging Face cache"
    )
