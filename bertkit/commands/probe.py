"""`bertkit probe`: what each layer of a BERT holds, by a linear classifier on its frozen features.

    report = run_probe(load_recipe("recipes/demo-zh.yaml", ["probe.train_file=…", "probe.test_file=…"], "probe"))

For each layer, a logistic regression on frozen features of a labelled file — mean-pooled per sentence, or per
word (its first piece) for word labels such as POS tags — scored on a held-out file: a table, probe.json and a
plot of the score by layer, to check for yourself what Jawahar et al. (2019) found: surface features low, syntax
in the middle, semantics high. The probe is bertkit/evaluation/probe.py (which pretraining also runs, with
`probe.during_pretraining`).
"""

from __future__ import annotations

import json
from pathlib import Path

from bertkit.atomic import atomic_dir, check_apart, check_output, write_text
from bertkit.config import ProbeRecipe, save_config
from bertkit.evaluation.features import load_encoder
from bertkit.evaluation.probe import probe_model, read_probe_data, require_probe_files
from bertkit.plots import plot_layers
from bertkit.training.runtime import run_state


def run_probe(cfg: ProbeRecipe) -> dict:
    """Probe every layer of embed.model_dir; probe.json and probe.png go to `<output_dir>/probe`."""
    out, model_dir, data = setup(cfg)
    model, tokenizer, accelerator = load_encoder(model_dir, cfg.embed, cfg.allow_pickle_weights)
    with accelerator.autocast():
        scored = probe_model(model, tokenizer, cfg, data)
    probe = cfg.probe
    report = {"model": str(model_dir), "train": str(probe.train_file), "test": str(probe.test_file)}
    return finish(cfg, out, report | {"level": probe.level, **scored}, run_state(accelerator))


def setup(cfg: ProbeRecipe) -> tuple[Path, Path, dict]:
    """(output dir, model dir, the probe's data), checked before the model loads."""
    probe = cfg.probe
    require_probe_files(probe)
    out = probe.output_dir or cfg.output_dir / "probe"
    files = {"probe.train_file": probe.train_file, "probe.test_file": probe.test_file}
    data = read_probe_data(probe)  # a mistake in the files shows before the model loads
    model_dir = Path(cfg.embed.model_dir or cfg.pretrain_dir)
    check_apart({"probe.output_dir": out}, {"embed.model_dir": model_dir, **files})
    check_output(out, "probe.output_dir", cfg.overwrite)
    return out, model_dir, data


def finish(cfg: ProbeRecipe, out: Path, report: dict, resolved: dict) -> dict:
    """probe.json and the plot, written together or not at all; the scores as a table."""
    scores, majority = report["accuracy_by_layer"], report["majority_baseline"]
    with atomic_dir(out) as tmp:
        write_text(tmp / "probe.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        title = f"linear probe ({cfg.probe.level}): {Path(cfg.probe.train_file).name}"
        plot_layers(scores, majority, tmp / "probe.png", title)
        save_config(cfg, tmp, resolved)
    print(f"\nlayer  accuracy   (majority class {majority:.4f})")
    for layer, score in enumerate(scores):
        print(f"{layer:>5}  {score:.4f}" + ("   ← embeddings" if layer == 0 else ""))
    print(f"\nreport: {out / 'probe.json'}\nplot: {out / 'probe.png'}")
    return report
