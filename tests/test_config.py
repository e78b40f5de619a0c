from pathlib import Path

import pytest
import yaml

from bertkit.config import (
    COMMAND_SECTIONS,
    PretrainTrainConfig,
    TrainConfig,
    load_recipe,
    parse_override,
    save_config,
)
from bertkit.errors import BertkitError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
RECIPES = sorted(p for p in RECIPES_DIR.rglob("*.yaml") if p.parent.name != "accelerate")


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
        assert yaml.safe_load(config.read_text())["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED")


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


PRETRAINING_ONLY = {"resume": "auto", "phases": "[]", "pack_sequences": "false", "save_every": "10", "keep_last": "3"}


@pytest.mark.parametrize("key", PRETRAINING_ONLY)
def test_pretraining_only_keys_are_unknown_under_finetune_train(key, tmp_path):
    """fit() of fine-tuning reads none of them: they were silently ignored under finetune.train."""
    assert key in PretrainTrainConfig.model_fields and key not in TrainConfig.model_fields
    override = f"{key}={PRETRAINING_ONLY[key]}"
    assert isinstance(load_recipe(None, [f"train.{override}"], "pretrain").train, PretrainTrainConfig)
    with pytest.raises(BertkitError) as e:
        load_recipe(None, [f"finetune.train.{override}"], "finetune")
    assert str(e.value).startswith(f"command line: unknown key 'finetune.train.{key}'; ")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"finetune:\n  train:\n    {key}: 1\n", encoding="utf-8")
    with pytest.raises(BertkitError, match=f"^{recipe}: unknown key 'finetune.train.{key}'; (did you mean|valid keys)"):
        load_recipe(recipe)


OVERRIDES_NOT_READ = [
    # (command, override, the error line)
    ("finetune", "train.lr=1e-3", "finetune does not read train.*; did you mean finetune.train.lr?"),
    ("pretrain", "finetune.train.lr=1e-3", "pretrain does not read finetune.*; did you mean train.lr?"),
    ("probe", "eval.batch_size=8", "probe does not read eval.*; did you mean embed.batch_size?"),
    ("eval", "train.lr=1e-3", "eval does not read train.*"),
    ("pretrain", "finetune.model_type=bilstm", "pretrain does not read finetune.*; "),
    ("finetune", "model.hidden_size=64", "finetune does not read model.hidden_size; it reads output_dir, "),
    ("tokenize", "allow_pickle_weights=true", "tokenize does not read allow_pickle_weights; it reads output_dir, "),
    ("tokenize", "masking={rate: 0.2}", "tokenize does not read masking.*; it reads output_dir, overwrite, "),
    ("probe", "probe.during_pretraining=true", "probe does not read probe.during_pretraining; "),
    ("eval", "finetune.train={lr: 1.0e-3}", "eval does not read finetune.train.*; it reads "),
]


@pytest.mark.parametrize("command,override,expected", OVERRIDES_NOT_READ, ids=[c[1] for c in OVERRIDES_NOT_READ])
def test_an_override_the_command_does_not_read_is_an_error(command, override, expected):
    with pytest.raises(BertkitError) as e:
        load_recipe(RECIPES_DIR / "demo-zh.yaml", [override], command)
    assert str(e.value).startswith(f"command line: {expected}") and "\n" not in str(e.value)
    load_recipe(RECIPES_DIR / "demo-zh.yaml", [override.replace("=1e-3", "=0.001")])  # no command: no check


def test_a_recipe_may_hold_sections_the_command_does_not_read():
    for command in COMMAND_SECTIONS:  # demo-zh.yaml serves every command
        load_recipe(RECIPES_DIR / "demo-zh.yaml", ["output_dir=runs/x"], command)
    cfg = load_recipe(RECIPES_DIR / "demo-zh.yaml", ["finetune.train.lr=1e-3", "eval.batch_size=8"], "finetune")
    assert (cfg.finetune.train.lr, cfg.eval.batch_size) == (1e-3, 8)
    # An unknown key is named as such, with the nearest valid key, before the command's sections are checked.
    with pytest.raises(BertkitError, match=r"^command line: unknown key 'train.lr_peak'; valid keys here"):
        load_recipe(None, ["train.lr_peak=1"], "finetune")


def test_task_types_come_from_the_task_registry():
    from bertkit.tasks import TASKS

    for name in TASKS:
        assert load_recipe(None, [f"finetune.task.type={name}"]).finetune.task.type == name
    with pytest.raises(BertkitError) as e:
        load_recipe(None, ["finetune.task.type=ner"])
    assert str(e.value) == f"command line: finetune.task.type: must be one of {', '.join(TASKS)}, got 'ner'"


FAMILY_KEYS = [
    # (the task section, the error line)
    (
        "{n_best: 5}",
        "finetune.task.n_best is for question-answering, not classification; remove it, or set "
        "finetune.task.type=question-answering",
    ),
    (
        "{type: regression, allow_no_answer: true}",
        "finetune.task.allow_no_answer is for question-answering, not regression",
    ),
    (
        "{type: question-answering, tag_scheme: BIO}",
        "finetune.task.tag_scheme is for token-classification, not question-answering",
    ),
    (
        "{type: token-classification, choices_column: options}",
        "finetune.task.choices_column is for multiple-choice, not token-classification",
    ),
    (
        "{type: multiple-choice, tokens_column: words}",
        "finetune.task.tokens_column is for token-classification, not multiple-choice",
    ),
]


@pytest.mark.parametrize("task,expected", FAMILY_KEYS, ids=[c[0] for c in FAMILY_KEYS])
def test_a_key_of_another_task_family_is_an_error(task, expected, tmp_path):
    with pytest.raises(BertkitError) as e:
        load_recipe(None, [f"finetune.task={task}"])
    assert str(e.value).startswith(f"command line: {expected}")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"finetune:\n  task: {task}\n", encoding="utf-8")
    with pytest.raises(BertkitError, match=f"^{recipe}: finetune.task."):
        load_recipe(recipe)


def test_family_keys_load_for_their_family_and_at_their_defaults():
    qa = load_recipe(None, ["finetune.task={type: question-answering, n_best: 5, allow_no_answer: true}"])
    assert (qa.finetune.task.n_best, qa.finetune.task.allow_no_answer) == (5, True)
    tagging = load_recipe(None, ["finetune.task={type: token-classification, tag_scheme: BIO, tokens_column: w}"])
    assert tagging.finetune.task.tag_scheme == "BIO"
    # The defaults of every family's keys: what a saved bertkit.yaml holds.
    cfg = load_recipe(None, ["finetune.task={n_best: 20, tag_scheme: auto, choices_column: choices}"])
    assert cfg.finetune.task.type == "classification"
