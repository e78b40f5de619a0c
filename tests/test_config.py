from pathlib import Path

import pytest
import yaml

from bertkit.config import load_recipe, parse_override, save_config
from bertkit.errors import BertkitError

RECIPES = sorted(
    p for p in (Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml") if p.parent.name != "accelerate"
)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_parses(recipe):
    cfg = load_recipe(recipe)
    assert cfg.output_dir


def test_recipes_exist():
    names = {str(p.relative_to(p.parents[1] if p.parent.name == "pretrain" else p.parent)) for p in RECIPES}
    assert {
        "demo-zh.yaml",
        "demo-en.yaml",
        "pretrain/cpu-debug.yaml",
        "pretrain/zh-wwm.yaml",
        "pretrain/en-base.yaml",
        "pretrain/two-phase.yaml",
        "pretrain/multi-gpu.yaml",
    } <= names
    accelerate = Path(__file__).resolve().parents[1] / "recipes" / "accelerate"
    for config in accelerate.glob("*.yaml"):  # valid YAML with a distributed type
        assert yaml.safe_load(config.read_text())["distributed_type"] in ("MULTI_GPU", "FSDP")


def test_override_values_parse_as_yaml():
    assert parse_override("train.lr=0.0005") == (["train", "lr"], 5e-4)
    assert parse_override("data.files=[a.txt, b.txt]") == (["data", "files"], ["a.txt", "b.txt"])
    assert parse_override("output_dir=runs/x") == (["output_dir"], "runs/x")
    assert parse_override("finetune.task.text_pair_column=null") == (["finetune", "task", "text_pair_column"], None)


def test_overrides_apply_and_are_type_checked(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: 1e-3\n  max_steps: 10\n")  # PyYAML reads 1e-3 as a string
    cfg = load_recipe(recipe, ["train.max_steps=50", "model.hidden_size=256"])
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.train.max_steps == 50 and cfg.model.hidden_size == 256
    assert load_recipe(recipe, ["data.files=my_corpus.txt"]).data.files == ["my_corpus.txt"]


def test_unknown_key_names_key_source_and_nearest(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  learning_rate: 1e-3\n")
    with pytest.raises(BertkitError, match=r"r.yaml: unknown key 'train.learning_rate'"):
        load_recipe(recipe)
    with pytest.raises(
        BertkitError,
        match=r"command line: unknown key 'train.batchsize'; did you mean "
        r"'train.batch_size'",
    ):
        load_recipe(None, ["train.batchsize=3"])


def test_wrong_type_is_one_line(tmp_path):
    with pytest.raises(BertkitError) as e:
        load_recipe(None, ["train.max_steps=many"])
    assert "train.max_steps" in str(e.value) and "\n" not in str(e.value)


def test_missing_or_broken_recipe(tmp_path):
    with pytest.raises(BertkitError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(BertkitError, match="bad.yaml line 2: not valid YAML"):
        load_recipe(bad)


def test_saved_config_round_trips(tmp_path):
    cfg = load_recipe(None, ["train.lr=3e-4", f"output_dir={tmp_path}"])
    saved = save_config(cfg, tmp_path)
    assert load_recipe(saved) == cfg
