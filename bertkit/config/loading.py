"""Reading a recipe for one command: YAML, `key=value` overrides, validation, and one-line errors.

    cfg = load_recipe("recipes/demo-zh.yaml", ["train.lr=5e-4", "output_dir=runs/mine"], "pretrain")
    cfg.train.lr           # 0.0005, checked to be a float
    save_config(cfg, cfg.pretrain_dir)

A recipe file may hold the sections of a whole pipeline: each command validates the keys its recipe declares
(recipes.RECIPES) and leaves the others to the commands that read them. A key that no command reads, a value of
the wrong type, and a command-line override of a key that another command reads are one-line errors naming the
key, where it came from, and the command or key meant.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from bertkit.atomic import write_text
from bertkit.config.recipes import RECIPES, Recipe
from bertkit.config.sections import RuleError, Section
from bertkit.errors import BertkitError

# Keys that moved to the command that reads them: a recipe written for the old place is told the new one.
MOVED = {
    "model.type": "finetune.model_type",
    "model.bilstm_embedding_dim": "finetune.bilstm.embedding_dim",
    "model.bilstm_hidden_size": "finetune.bilstm.hidden_size",
    "model.bilstm_layers": "finetune.bilstm.layers",
    "model.bilstm_lr": "finetune.bilstm.lr",
}
CONFIG_FILE = "bertkit.yaml"
RESOLVED_FILE = "resolved.yaml"  # what `auto` became here; bertkit.yaml keeps what was asked


def is_section(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key (not section) under `model`, in field order: `train.lr`, `finetune.task.type`, …"""
    keys = []
    for name, field in model.model_fields.items():
        if is_section(field.annotation):
            keys += leaf_keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def annotation(model: type[BaseModel], key: str):
    """The type of the key or section `key` (dotted) in `model`; None when it has no such key."""
    found: Any = model
    for part in key.split("."):
        if not is_section(found) or part not in found.model_fields:
            return None
        found = found.model_fields[part].annotation
    return found


def readers(key: str) -> list[str]:
    """The commands whose recipe has the key or section `key`."""
    return [command for command, recipe in RECIPES.items() if annotation(recipe, key) is not None]


def _joined(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _ending(keys: list[str], tail: list[str]) -> list[str]:
    return [k for k in keys if k.split(".")[-len(tail) :] == tail]


def _all_keys() -> list[str]:
    return list(dict.fromkeys(k for recipe in RECIPES.values() for k in leaf_keys(recipe)))


def _named_elsewhere(key: str) -> str:
    """Whose keys are called like `key`'s last part ("train.save_every is read by pretrain"); "" if none."""
    found = {k: readers(k) for k in _ending(_all_keys(), key.split(".")[-1:])}
    return "; ".join(f"{k} is read by {_joined(commands)}" for k, commands in found.items())


def not_read(command: str, key: str) -> str:
    """Why `key` is no key of `command`'s recipe, in one line: whose key it is, or the nearest key it has."""
    if key in MOVED:
        return f"{key} is now {MOVED[key]}"
    recipe, parts = RECIPES[command], key.split(".")
    own = leaf_keys(recipe)
    # The same key in a section the command does read: train.lr → finetune.train.lr.
    same = next((found for n in range(len(parts), 0, -1) if (found := _ending(own, parts[-n:]))), [])
    hint = f"; did you mean {' or '.join(same)}?" if 0 < len(same) <= 3 else ""
    if readers(key):
        section = any(is_section(annotation(RECIPES[c], key)) for c in readers(key))
        return f"{key + '.*' if section else key} is read by {_joined(readers(key))}, not {command}{hint}"
    if not hint and (elsewhere := _named_elsewhere(key)):
        return f"{command} reads no {key}; {elsewhere}"
    close = difflib.get_close_matches(key, own, n=1, cutoff=0.6)
    return f"unknown key '{key}'" + (hint or (f"; did you mean '{close[0]}'?" if close else ""))


def _overridden_keys(recipe: type[Section], key: str, value: Any) -> list[str]:
    """The keys an override sets: `masking={rate: 0.2}` sets masking.rate."""
    if isinstance(value, dict) and value and is_section(annotation(recipe, key)):
        return [k for name, v in value.items() for k in _overridden_keys(recipe, f"{key}.{name}", v)]
    return [key]


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, where PyYAML silently keeps the last."""

    def construct_mapping(self, node, deep=False):
        first: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: later keys override on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                earlier = first.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if earlier is not key_node:
                line = earlier.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}', first on line {line}; keep one", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=5e-4` → (["train", "lr"], 0.0005). The value is YAML, so lists and null work too."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise BertkitError(f"override '{text}' is not key=value; write e.g. train.lr=5e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _set(tree: dict, path: list[str], value: Any, origin: str) -> None:
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise BertkitError(
                f"{origin}: '{'.'.join(path[: i + 1])}' is a value, not a section; "
                "write the override as section.key=value"
            )
        node = child
    node[path[-1]] = value


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys of the section at `loc` (for 'did you mean'); a list of sections (train.phases) is walked into."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        kind = field.annotation if field else None
        kind = get_args(kind)[0] if get_origin(kind) is list else kind
        if not is_section(kind):
            break
        model = kind
    return list(model.model_fields)


def _one_line(err: ValidationError, recipe: type[Section], source: str, overridden: set[str]) -> str:
    e = err.errors()[0]
    loc = [str(p) for p in e["loc"]]
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""

    def origin(*keys: str) -> str:
        # The command line when it set one of the keys or a section holding it (`masking={rate: 2}`).
        sections = {".".join(k.split(".")[:n]) for k in keys for n in range(1, k.count(".") + 2)}
        return "command line" if sections & overridden else source

    rule = e.get("ctx", {}).get("error")
    if isinstance(rule, RuleError):
        keys = [".".join([*loc, k]) for k in rule.keys]
        return f"{origin(*keys)}: {rule.template.format(*keys)}{more}"
    key = ".".join(loc)
    if e["type"] == "extra_forbidden":
        valid = _fields_at(recipe, e["loc"][:-1])
        close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1, cutoff=0.5)
        hint = (
            f"did you mean '{'.'.join([*map(str, e['loc'][:-1]), close[0]])}'?"
            if close
            else (f"valid keys here: {', '.join(valid)}")
        )
        return f"{origin(key)}: unknown key '{key}'; {hint}"
    message = e["msg"].removeprefix("Value error, ")  # a field validator's own words
    return f"{origin(key)}: {key}: {message}, got {e.get('input')!r}{more}"


def _unknown_in_file(tree: dict, prefix: str = "") -> str | None:
    """The first key of a recipe file that no command reads (a file may hold every command's sections)."""
    for name, value in tree.items():
        key = f"{prefix}{name}"
        kinds = [kind for recipe in RECIPES.values() if (kind := annotation(recipe, key)) is not None]
        if not kinds:
            return key
        if isinstance(value, dict) and any(is_section(kind) for kind in kinds):
            if found := _unknown_in_file(value, key + "."):
                return found
    return None


def _unknown(key: str) -> str:
    """The error of a recipe file's key that no command reads: whose key of that name, or the nearest key."""
    if key in MOVED:
        return f"{key} is now {MOVED[key]}"
    if elsewhere := _named_elsewhere(key):
        return f"unknown key '{key}'; {elsewhere}"
    close = difflib.get_close_matches(key, _all_keys(), n=1, cutoff=0.6)
    return f"unknown key '{key}'" + (f"; did you mean '{close[0]}'?" if close else "")


def _pruned(tree: dict, model: type[BaseModel]) -> dict:
    """The part of a recipe file that `model` declares (the rest is other commands')."""
    kept = {}
    for name, value in tree.items():
        field = model.model_fields.get(name)
        if field is not None:
            section = is_section(field.annotation) and isinstance(value, dict)
            kept[name] = _pruned(value, field.annotation) if section else value
    return kept


def _read_file(path: Path) -> dict:
    if not path.is_file():
        raise BertkitError(f"{path}: recipe not found; pass a YAML file such as recipes/demo-zh.yaml")
    try:
        tree = yaml.load(path.read_text(encoding="utf-8"), Loader=_RecipeLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise BertkitError(f"{path}{line}: not valid YAML ({problem})") from None
    if not isinstance(tree, dict):
        raise BertkitError(f"{path}: a recipe must be a mapping of sections (model:, data:, train:, …)")
    if unknown := _unknown_in_file(tree):
        raise BertkitError(f"{path}: {_unknown(unknown)}")
    return tree


def load_recipe(path: Path | str | None, overrides: list[str] | None, command: str) -> Section:
    """`command`'s recipe (RECIPES) from a recipe file (None: the defaults) and `key=value` overrides, validated.
    An override of a key that the command does not read is an error naming the command that does:
    `bertkit finetune … train.lr=1e-3` would be ignored, as finetune reads finetune.train.lr."""
    recipe = RECIPES[command]
    source = str(path) if path is not None else "defaults"
    tree = _pruned(_read_file(Path(path)), recipe) if path is not None else {}
    overridden = set()
    for text in overrides or []:
        keys, value = parse_override(text)
        if ".".join(keys) in overridden:  # scripts compose override lists; the last wins, but not silently
            print(f"command line: {'.'.join(keys)} is given more than once; the last, {text}, is used", file=sys.stderr)
        for key in _overridden_keys(recipe, ".".join(keys), value):
            if annotation(recipe, key) is None:
                raise BertkitError(f"command line: {not_read(command, key)}")
        _set(tree, keys, value, "command line")
        overridden.add(".".join(keys))
    try:
        return recipe.model_validate(tree)
    except ValidationError as e:
        raise BertkitError(_one_line(e, recipe, source, overridden)) from None


def save_config(cfg: Recipe, directory: Path, resolved: dict | None = None) -> Path:
    """Write the effective config next to a command's outputs, and what its `auto` values became on this
    machine (`resolved`, bertkit.training.runtime.run_state) as resolved.yaml beside it."""
    if resolved:
        write_text(directory / RESOLVED_FILE, yaml.safe_dump(resolved, sort_keys=False))
    out = directory / CONFIG_FILE
    tree = cfg.model_dump(mode="json")
    for key, pinned in cfg.hub_sources.items():
        section, name = key.split(".")
        tree[section][name] = pinned
    write_text(out, yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    return out
