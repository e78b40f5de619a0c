"""Recipes: each command's typed recipe, overrides, one-line errors that name the command a key belongs to, and
the help and docs generated from the recipe models."""

import ast
import functools
import inspect
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli

from bertkit.cli import app
from bertkit.config import RECIPES, Recipe, load_recipe, save_config
from bertkit.config.loading import leaf_keys, parse_override, readers
from bertkit.config.reference import markdown
from bertkit.config.sections import FAMILIES, PretrainTrainConfig, TrainConfig
from bertkit.errors import BertkitError

RECIPES_DIR = ROOT / "recipes"
SHIPPED = sorted(p for p in RECIPES_DIR.rglob("*.yaml") if p.parent.name != "accelerate")
DEMO = RECIPES_DIR / "demo-zh.yaml"


def _commands_of(recipe: Path) -> list[str]:
    """The commands a shipped recipe is for: its header's `bertkit CMD` lines (every command, for a pipeline)."""
    named = re.findall(r"^#.*\bbertkit (\w+) ", recipe.read_text(encoding="utf-8"), re.MULTILINE)
    return [c for c in dict.fromkeys(named) if c in RECIPES]


@pytest.mark.parametrize("recipe", SHIPPED, ids=lambda p: str(p.relative_to(RECIPES_DIR)))
def test_every_shipped_recipe_loads_for_every_command(recipe):
    """A recipe file serves every command: each takes the keys it reads, and the values it reads are valid."""
    assert _commands_of(recipe), f"{recipe}: the header names no `bertkit COMMAND` line"
    for command in RECIPES:
        cfg = load_recipe(recipe, [], command)
        assert isinstance(cfg, RECIPES[command])
    tree = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    if "finetune" in tree:  # what the file sets reaches the command that reads it
        assert load_recipe(recipe, [], "finetune").finetune.task.name == tree["finetune"]["task"].get("name", "task")
    if "train" in tree:
        assert load_recipe(recipe, [], "pretrain").train.lr == pytest.approx(float(tree["train"].get("lr", 1e-4)))


def test_accelerate_configs_name_a_distributed_type():
    for config in (RECIPES_DIR / "accelerate").glob("*.yaml"):
        assert yaml.safe_load(config.read_text())["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED")


def test_override_values_parse_as_yaml():
    assert parse_override("train.lr=0.0005") == (["train", "lr"], 5e-4)
    assert parse_override("data.files=[a.txt, b.txt]") == (["data", "files"], ["a.txt", "b.txt"])
    assert parse_override("output_dir=runs/x") == (["output_dir"], "runs/x")
    assert parse_override("finetune.task.text_pair_column=null") == (["finetune", "task", "text_pair_column"], None)


def test_overrides_apply_and_are_type_checked(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: 1e-3\n  max_steps: 10\n")  # PyYAML reads 1e-3 as a string
    cfg = load_recipe(recipe, ["train.max_steps=50", "model.hidden_size=256"], "pretrain")
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.train.max_steps == 50 and cfg.model.hidden_size == 256
    assert load_recipe(recipe, ["data.files=my_corpus.txt"], "tokenize").data.files == ["my_corpus.txt"]


def test_a_key_given_twice_on_the_command_line_is_said(capsys):
    """Scripts compose override lists, so the last one wins, but not silently."""
    cfg = load_recipe(None, ["train.lr=1e-3", "train.max_steps=5", "train.lr=2e-3"], "pretrain")
    assert cfg.train.lr == pytest.approx(2e-3)
    expected = "command line: train.lr is given more than once; the last, train.lr=2e-3, is used\n"
    assert capsys.readouterr().err == expected


def test_unknown_key_names_key_source_and_nearest(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  learning_rate: 1e-3\n")
    with pytest.raises(BertkitError, match=r"r.yaml: unknown key 'train.learning_rate'"):
        load_recipe(recipe, [], "finetune")  # a file's key that no command reads, whichever command loads it
    with pytest.raises(
        BertkitError, match=r"^command line: unknown key 'train.batchsize'; did you mean 'train.batch_size'"
    ):
        load_recipe(None, ["train.batchsize=3"], "pretrain")


def test_wrong_type_is_one_line():
    with pytest.raises(BertkitError) as e:
        load_recipe(None, ["train.max_steps=many"], "pretrain")
    assert str(e.value).startswith("command line: train.max_steps: ") and "\n" not in str(e.value)


def test_missing_or_broken_recipe(tmp_path):
    with pytest.raises(BertkitError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml", [], "pretrain")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(BertkitError, match="bad.yaml line 2: not valid YAML"):
        load_recipe(bad, [], "pretrain")


@pytest.mark.parametrize("command", [c for c, recipe in RECIPES.items() if issubclass(recipe, Recipe)])
def test_saved_config_round_trips(command, tmp_path):
    """Every command that writes into the run's output dir saves its recipe there (predict writes JSON lines)."""
    cfg = load_recipe(DEMO, [f"output_dir={tmp_path}"], command)
    saved = save_config(cfg, tmp_path)
    assert load_recipe(saved, [], command) == cfg
    assert set(yaml.safe_load(saved.read_text())) == set(RECIPES[command].model_fields)  # only its own keys


PRETRAINING_ONLY = {"resume": "auto", "phases": "[]", "pack_sequences": "false", "save_every": "10", "keep_last": "3"}


@pytest.mark.parametrize("key", PRETRAINING_ONLY)
def test_a_pretraining_only_key_under_finetune_train_names_pretrain(key, tmp_path):
    """fit() of fine-tuning reads none of them: under finetune.train they would be silently ignored."""
    assert key in PretrainTrainConfig.model_fields and key not in TrainConfig.model_fields
    override = f"{key}={PRETRAINING_ONLY[key]}"
    assert isinstance(load_recipe(None, [f"train.{override}"], "pretrain").train, PretrainTrainConfig)
    with pytest.raises(BertkitError) as e:
        load_recipe(DEMO, [f"finetune.train.{override}"], "finetune")
    assert str(e.value) == f"command line: finetune reads no finetune.train.{key}; train.{key} is read by pretrain"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"finetune:\n  train:\n    {key}: 1\n", encoding="utf-8")
    with pytest.raises(BertkitError) as e:
        load_recipe(recipe, [], "finetune")
    assert str(e.value) == f"{recipe}: unknown key 'finetune.train.{key}'; train.{key} is read by pretrain"


def _others(command: str) -> list[tuple[str, str]]:
    """(key, a command that reads it) for every key another command reads and `command` does not."""
    own = set(leaf_keys(RECIPES[command]))
    return sorted({(k, c) for c, r in RECIPES.items() for k in leaf_keys(r) if k not in own and c != command})


@pytest.mark.parametrize("command", RECIPES)
def test_every_key_of_another_command_is_refused_naming_its_readers(command):
    """An override of a key that the command does not read would be ignored: refused, saying whose it is."""
    for key, _ in _others(command):
        with pytest.raises(BertkitError) as e:
            load_recipe(DEMO, [f"{key}=1"], command)
        whose = " and ".join(readers(key)) if len(readers(key)) < 3 else ""
        message = str(e.value)
        assert message.startswith(f"command line: {key} is read by ") and f", not {command}" in message, message
        assert whose in message and "\n" not in message


OVERRIDES_NOT_READ = [
    # (command, override, the error line)
    (
        "finetune",
        "finetune.train.save_every=5",
        "finetune reads no finetune.train.save_every; train.save_every is read by pretrain",
    ),
    ("finetune", "train.save_every=5", "train.save_every is read by pretrain, not finetune"),
    ("finetune", "train.lr=1e-3", "train.lr is read by pretrain, not finetune; did you mean finetune.train.lr?"),
    (
        "pretrain",
        "finetune.train.lr=1e-3",
        "finetune.train.lr is read by finetune, not pretrain; did you mean train.lr?",
    ),
    (
        "probe",
        "eval.batch_size=8",
        "eval.batch_size is read by pretrain, finetune and eval, not probe; did you mean embed.batch_size?",
    ),
    ("pretrain", "finetune.model_type=bilstm", "finetune.model_type is read by finetune, not pretrain"),
    (
        "tokenize",
        "allow_pickle_weights=true",
        "allow_pickle_weights is read by pretrain, finetune, eval, embed, probe, export, predict and serve, not "
        "tokenize",
    ),
    ("tokenize", "masking={rate: 0.2}", "masking.* is read by pretrain and eval, not tokenize"),
    ("probe", "probe.during_pretraining=true", "probe.during_pretraining is read by pretrain, not probe"),
    ("eval", "finetune.train={lr: 1.0e-3}", "finetune.train.* is read by finetune, not eval"),
    ("finetune", "train.lr_peak=1", "unknown key 'train.lr_peak'"),
    ("finetune", "model.type=bilstm", "model.type is now finetune.model_type"),  # moved to its command
    ("finetune", "model.bilstm_lr=0.01", "model.bilstm_lr is now finetune.bilstm.lr"),
]


@pytest.mark.parametrize("command,override,expected", OVERRIDES_NOT_READ, ids=[c[1] for c in OVERRIDES_NOT_READ])
def test_an_override_the_command_does_not_read_is_one_line(command, override, expected):
    with pytest.raises(BertkitError) as e:
        load_recipe(DEMO, [override], command)
    assert str(e.value) == f"command line: {expected}"


def test_the_cli_refuses_another_commands_key_in_one_line():
    result = run_cli("finetune", DEMO, "finetune.train.save_every=5")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: command line: finetune reads no finetune.train.save_every; train.save_every is read by pretrain"
    )


def test_a_recipe_file_may_hold_every_commands_sections():
    cfg = load_recipe(DEMO, ["finetune.train.lr=1e-3", "eval.batch_size=8"], "finetune")
    assert (cfg.finetune.train.lr, cfg.eval.batch_size) == (1e-3, 8)
    assert not hasattr(cfg, "train") and not hasattr(cfg, "tokenizer")  # pretraining's and tokenize's sections


def test_task_types_are_the_task_registry():
    from bertkit.tasks import TASKS

    assert tuple(TASKS) == FAMILIES
    for name in FAMILIES:
        assert load_recipe(None, [f"finetune.task.type={name}"], "finetune").finetune.task.type == name
    with pytest.raises(BertkitError) as e:
        load_recipe(None, ["finetune.task.type=ner"], "finetune")
    assert str(e.value).startswith("command line: finetune.task.type: Input should be 'classification', ")


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
    ("{type: classification, crf: true}", "finetune.task.crf is for token-classification, not classification"),
    (
        "{type: token-classification, truncation: tail}",
        "finetune.task.truncation is for classification or multi-label-classification or regression, not "
        "token-classification; remove it, or set finetune.task.type=classification",
    ),
]


@pytest.mark.parametrize("task,expected", FAMILY_KEYS, ids=[c[0] for c in FAMILY_KEYS])
def test_a_key_of_another_task_family_is_an_error(task, expected, tmp_path):
    with pytest.raises(BertkitError) as e:
        load_recipe(None, [f"finetune.task={task}"], "finetune")
    assert str(e.value).startswith(f"command line: {expected}")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"finetune:\n  task: {task}\n", encoding="utf-8")
    with pytest.raises(BertkitError, match=f"^{recipe}: finetune.task."):
        load_recipe(recipe, [], "finetune")


def test_family_keys_load_for_their_family_and_at_their_defaults():
    qa = load_recipe(None, ["finetune.task={type: question-answering, n_best: 5, allow_no_answer: true}"], "finetune")
    assert (qa.finetune.task.n_best, qa.finetune.task.allow_no_answer) == (5, True)
    tagging = load_recipe(
        None, ["finetune.task={type: token-classification, tag_scheme: BIO, tokens_column: w}"], "eval"
    )
    assert tagging.finetune.task.tag_scheme == "BIO"
    # The defaults of every family's keys: what a saved bertkit.yaml holds.
    cfg = load_recipe(None, ["finetune.task={n_best: 20, tag_scheme: auto, choices_column: choices}"], "finetune")
    assert cfg.finetune.task.type == "classification"


def _help_keys(command: str) -> tuple[list[str], str]:
    result = run_cli(command, "--help")
    assert result.exit_code == 0 and "key=value" in result.output
    return re.findall(r"^  (\S+) = ", result.output, re.MULTILINE), result.output


@pytest.mark.parametrize("command", RECIPES)
def test_help_lists_exactly_the_keys_of_the_commands_recipe(command):
    """Both ways: every key of the recipe model is in `--help`, and `--help` lists nothing else; each with its
    default."""
    listed, output = _help_keys(command)
    assert listed == leaf_keys(RECIPES[command])
    default = functools.reduce(getattr, listed[0].split("."), RECIPES[command]())
    assert f"  {listed[0]} = {default}" in output


@pytest.mark.parametrize("command", RECIPES)
def test_every_key_a_command_declares_is_read_by_its_modules(command):
    """Each part of each key (`eval` and `batch_size` of eval.batch_size) is read in the modules the command
    runs, or in the recipe's properties they read (cfg.dataset_dir reads data.dataset_dir): no key is declared
    for a command that ignores it."""
    read = _attributes_read(command)
    assert [key for key in leaf_keys(RECIPES[command]) if not set(key.split(".")) <= read] == []


def test_finetune_help_lists_every_task_type():
    _, output = _help_keys("finetune")
    described = " ".join(output.split("finetune.task.type = ")[1].split("finetune.task.name = ")[0].split())
    assert [name for name in FAMILIES if name not in described] == []


def test_the_configuration_reference_is_generated_from_the_recipes():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == markdown(), (
        "docs/configuration.md is stale: python -m bertkit.config.reference > docs/configuration.md"
    )
    for command, recipe in RECIPES.items():
        assert f"## bertkit {command}" in committed
        assert all(f"`{key}`" in committed for key in leaf_keys(recipe))


def _bertkit(node) -> bool:
    return isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bertkit.")


def _attributes_read(command: str) -> set[str]:
    """Every attribute name read in the bertkit modules that `bertkit COMMAND` imports (its run_* module and what
    that imports, on and on), and in the recipe properties they read."""
    callback = next(c.callback for c in app.registered_commands if (c.name or c.callback.__name__) == command)
    todo = [n.module for n in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(callback)))) if _bertkit(n)]
    seen, names = {"bertkit.cli"}, set()
    while todo:
        module = todo.pop()
        path = ROOT / Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if module in seen or not path.is_file() or module.startswith("bertkit.config"):
            continue
        seen.add(module)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load)}
        for node in filter(_bertkit, ast.walk(tree)):
            parts = node.module.split(".")
            todo += [".".join(parts[:n]) for n in range(2, len(parts) + 1)]  # a package runs its __init__
            todo += [f"{node.module}.{alias.name}" for alias in node.names]  # `from bertkit.tasks import qa`
    recipes = ast.parse((ROOT / "bertkit" / "config" / "recipes.py").read_text(encoding="utf-8"))
    for cls in (c for c in recipes.body if isinstance(c, ast.ClassDef)):
        for prop in cls.body:
            if isinstance(prop, ast.FunctionDef) and prop.name in names:
                names |= {n.attr for n in ast.walk(prop) if isinstance(n, ast.Attribute)}
    return names
