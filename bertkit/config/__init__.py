"""Recipes: typed sections (sections.py), each command's recipe model (recipes.py), reading a recipe file with
overrides (loading.py), and the keys as help text and docs (reference.py).

    from bertkit.config import load_recipe
    cfg = load_recipe("recipes/demo-zh.yaml", ["train.lr=5e-4"], "pretrain")   # a PretrainRecipe
"""

from bertkit.config.loading import CONFIG_FILE, RESOLVED_FILE, load_recipe, save_config
from bertkit.config.recipes import (
    RECIPES,
    ConvertRecipe,
    EmbedRecipe,
    EvalRecipe,
    ExportRecipe,
    FinetuneRecipe,
    PredictRecipe,
    PretrainRecipe,
    ProbeRecipe,
    PushRecipe,
    Recipe,
    ServeRecipe,
    TokenizeRecipe,
)

__all__ = [
    "CONFIG_FILE",
    "RESOLVED_FILE",
    "RECIPES",
    "ConvertRecipe",
    "EmbedRecipe",
    "EvalRecipe",
    "ExportRecipe",
    "FinetuneRecipe",
    "PredictRecipe",
    "PretrainRecipe",
    "ProbeRecipe",
    "PushRecipe",
    "ServeRecipe",
    "Recipe",
    "TokenizeRecipe",
    "load_recipe",
    "save_config",
]
