"""`bertkit pretrain`: masked-LM (+ NSP or SOP) or ELECTRA pretraining, wired into fit().

    out_dir = run_pretrain(load_recipe("recipes/demo-zh.yaml", ["train.max_steps=50"]))
    BertForMaskedLM.from_pretrained(out_dir)   # or BertForPreTraining, BertModel, pipeline("fill-mask")

With model.objective=mlm the objective follows the data: `nsp` examples train MLM+NSP, `sop` MLM+SOP (the same
seq_relationship head), `packed` MLM only. model.objective=electra trains replaced-token detection on any of them
(bertkit/modeling/electra.py) and saves the discriminator as a BertModel. The same command runs under
`accelerate launch` or `torchrun` on several processes.
"""

from __future__ import annotations

import itertools
import json
import signal
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import DatasetDict, concatenate_datasets
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from transformers import BertForPreTraining, PreTrainedTokenizerBase

from bertkit.atomic import (
    check_apart,
    check_output,
    claim,
    is_ours,
    mark_output,
    remove_output,
    replace_dir,
    write_text,
)
from bertkit.config import PretrainRecipe, save_config
from bertkit.data.dataset import TOKENIZER_SUBDIR, load_pretraining_data, pair_objective
from bertkit.data.loader import EpochSampler, KeyedDataset
from bertkit.data.masking import PretrainingCollator
from bertkit.errors import BertkitError, Interrupted
from bertkit.evaluation.pretraining import evaluate_pretraining, held_out_masking
from bertkit.evaluation.probe import probe_model, read_probe_data, require_probe_files
from bertkit.modeling.dropout import use_fast_dropout
from bertkit.modeling.electra import ElectraObjective, electra_objective, is_electra
from bertkit.modeling.model import (
    PretrainingObjective,
    build_pretraining_model,
    check_vocabulary,
    checkpoint_layers,
    load_model,
    parameter_count,
    quiet_transformers,
)
from bertkit.plots import plot_curves, plot_probe_history, read_metrics
from bertkit.tokenizer.train import load_tokenizer
from bertkit.training.checkpoint import checkpoint_dirs, load_checkpoint, resolve_resume, save_checkpoint, save_model
from bertkit.training.loop import fit, total_steps
from bertkit.training.optim import describe_schedule, make_optimizer, make_schedule
from bertkit.training.runtime import make_accelerator, run_state, tune_allocator
from bertkit.training.state import TrainState

METRICS_FILE = "metrics.jsonl"


def _trim_metrics(path: Path, step: int) -> None:
    """On resume, drop what the interrupted run logged after its checkpoint."""
    if path.is_file():
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= step]
        write_text(path, "".join(f"{line}\n" for line in lines))


@dataclass
class Phase:
    dataset_dir: Path
    splits: DatasetDict
    meta: dict
    batch_size: int
    max_steps: int | None  # None: train.epochs over the data (a run without phases)


def _phases(cfg: PretrainRecipe, tokenizer) -> list[Phase]:
    specs = [(p.dataset_dir, p.max_steps, p.batch_size) for p in cfg.train.phases]
    phases = []
    if specs and cfg.data.more_dataset_dirs:
        raise BertkitError(
            "data.more_dataset_dirs joins datasets into the one phase of a run without train.phases; list the "
            "phases' datasets there instead, or tokenize them into one"
        )
    first = specs[0][0] if specs else cfg.dataset_dir
    for dataset_dir, max_steps, batch_size in specs or [(cfg.dataset_dir, cfg.train.max_steps, None)]:
        splits, meta = load_pretraining_data(dataset_dir)
        _check_vocabulary(dataset_dir, tokenizer, first)
        if not specs and cfg.data.more_dataset_dirs:
            splits = _joined(splits, meta, dataset_dir, cfg.data.more_dataset_dirs, tokenizer)
        phases.append(Phase(dataset_dir, splits, meta, batch_size or cfg.train.batch_size, max_steps))
    return phases


def _check_vocabulary(dataset_dir: Path, tokenizer, first: Path) -> None:
    if load_tokenizer(Path(dataset_dir) / TOKENIZER_SUBDIR).get_vocab() != tokenizer.get_vocab():
        raise BertkitError(
            f"{dataset_dir}: tokenized with another vocabulary than {first}; tokenize every dataset with the same "
            "tokenizer.from_dir"
        )


def _joined(splits: DatasetDict, meta: dict, first: Path, more: list[Path], tokenizer) -> DatasetDict:
    """`first`'s splits followed by those of the `more` datasets (memory-mapped: nothing is copied)."""
    parts = {name: [split] for name, split in splits.items()}
    for dataset_dir in more:
        other, other_meta = load_pretraining_data(dataset_dir)
        for key in ("objective", "max_seq_length"):
            if other_meta[key] != meta[key]:
                raise BertkitError(
                    f"{dataset_dir}: {key} {other_meta[key]} differs from {first}'s {meta[key]}; "
                    "data.more_dataset_dirs must be tokenized like data.dataset_dir"
                )
        _check_vocabulary(dataset_dir, tokenizer, first)
        for name, split in other.items():
            parts.setdefault(name, []).append(split)
    return DatasetDict({name: concatenate_datasets(pieces) for name, pieces in parts.items()})


def _layout(cfg: PretrainRecipe, phases: list[Phase]) -> dict:
    """What the position in the data depends on, keyed by what the user would change: resume checks it."""
    layout: dict = {"train.seed": cfg.train.seed, "train.grad_accum": cfg.train.grad_accum}
    for i, phase in enumerate(phases):
        key = f"train.phases[{i}]" if cfg.train.phases else "data.dataset_dir"
        layout[f"{key} batch size"] = phase.batch_size
        examples, length = len(phase.splits["train"]), phase.meta["max_seq_length"]
        layout[f"{key} data"] = f"{examples} training examples of {length} tokens"
    return layout


def staging_dir(out_dir: Path) -> Path:
    """Where a run that replaces an earlier output trains: the earlier model stays whole in `out_dir` until the
    new one is complete and takes its place (an error, SIGTERM, SIGKILL or a full disk leaves it untouched)."""
    return out_dir.parent / f".{out_dir.name}.next"


def _claim_output(out_dir: Path, cfg: PretrainRecipe, resume_from: Path | None) -> bool:
    """Whether pretraining may write `out_dir`, and whether it starts afresh (replacing what is there, once it
    finishes). Resuming from one of its own checkpoints continues (in place, or in the staging dir of an
    unfinished replacement); an earlier run is replaced only with overwrite=true, except an unfinished one that
    left neither a model nor a checkpoint, under resume=auto."""
    if resume_from is not None and any(
        d.resolve() in resume_from.resolve().parents for d in (out_dir, staging_dir(out_dir))
    ):
        return False
    earlier = checkpoint_dirs(out_dir / "checkpoints")
    if earlier and not cfg.overwrite and is_ours(out_dir):
        raise BertkitError(
            f"{out_dir}: holds checkpoints of an earlier run (up to {earlier[-1].name}); continue it with "
            "train.resume=auto, start afresh with overwrite=true, or choose another output_dir"
        )
    unfinished = is_ours(out_dir) and not earlier and not (out_dir / "config.json").exists()
    check_output(out_dir, "output_dir", cfg.overwrite or (unfinished and cfg.train.resume == "auto"))
    return True


def _run_dir(cfg: PretrainRecipe, out_dir: Path) -> tuple[Path, Path | None, bool]:
    """Where this run writes (`out_dir`, or its staging dir while an earlier output stays whole there), the
    checkpoint it resumes from, and whether it starts afresh."""
    claim(out_dir, "output_dir")  # before anything is read from it: no second run can write it meanwhile
    staged = staging_dir(out_dir)
    # train.resume=auto continues an unfinished replacement first: it is newer than what out_dir holds.
    unfinished = staged if checkpoint_dirs(staged / "checkpoints") else out_dir
    resume_from = resolve_resume(cfg.train.resume, unfinished / "checkpoints")
    fresh = _claim_output(out_dir, cfg, resume_from)
    if (fresh and out_dir.exists() and next(out_dir.iterdir(), None)) or (resume_from and unfinished == staged):
        return staged, resume_from, fresh
    return out_dir, resume_from, fresh


@dataclass
class Setup:
    """What set-up builds and the training and the finish use."""

    accelerator: Accelerator
    objective: torch.nn.Module  # PretrainingObjective or ElectraObjective, prepared
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    tokenizer: PreTrainedTokenizerBase
    phases: list[Phase]
    loaders: list[DataLoader]
    ends: list[int]  # phase i runs until step ends[i]; one schedule spans them all
    state: TrainState  # where training stands: the start, or the resumed checkpoint's
    out_dir: Path  # where the run writes: final_dir, or its staging dir while an earlier output stays in final_dir
    final_dir: Path
    layout: dict
    probe_data: dict  # the probe's files when probe.during_pretraining, read once before training
    resolved: dict  # what the recipe's `auto` settings became here (resolved.yaml)


def run_pretrain(cfg: PretrainRecipe) -> Path:
    """Pretrain on `cfg.dataset_dir` (or the `train.phases` one after another); the final model goes to
    `<output_dir>/pretrain`."""
    run = setup(cfg)
    state = train(cfg, run)
    return finish(cfg, run, state)


def setup(cfg: PretrainRecipe) -> Setup:
    """Data, output dir, model, optimizer, loaders and schedule; resumed from a checkpoint when asked."""
    quiet_transformers()
    tune_allocator()
    first_dir = cfg.train.phases[0].dataset_dir if cfg.train.phases else cfg.dataset_dir
    probe_data: dict = {}
    if cfg.probe.during_pretraining:
        require_probe_files(cfg.probe, who="probe.during_pretraining")
        probe_data = read_probe_data(cfg.probe)
    load_pretraining_data(first_dir)  # a clear error before anything else when the data is missing
    tokenizer = load_tokenizer(first_dir / TOKENIZER_SUBDIR)
    phases = _phases(cfg, tokenizer)
    final_dir = cfg.pretrain_dir
    check_apart(
        {"output_dir": final_dir},
        {f"dataset dir of phase {i + 1}": phase.dataset_dir for i, phase in enumerate(phases)}
        | {f"data.more_dataset_dirs ({d})": d for d in cfg.data.more_dataset_dirs}
        | {"model.init_from": cfg.model.init_from},
    )
    out_dir, resume_from, fresh = _run_dir(cfg, final_dir)
    accelerator = make_accelerator(cfg.train.precision, "train.precision", cfg.train.grad_accum, out_dir)
    attention = _packed_attention(cfg, accelerator)
    set_seed(cfg.train.seed)
    if accelerator.is_main_process:
        if fresh:
            remove_output(out_dir)
        mark_output(out_dir)
        if out_dir != final_dir:
            print(f"training in {out_dir}: {final_dir} keeps the earlier model until this run finishes")
    accelerator.wait_for_everyone()
    global_sum = (lambda t: accelerator.reduce(t, "sum")) if accelerator.num_processes > 1 else None
    objective = _objective(cfg, tokenizer, phases, resume_from, global_sum, accelerator.num_processes)
    optimizer = make_optimizer(objective, cfg.train)
    objective, optimizer = accelerator.prepare(objective, optimizer)
    loaders = [accelerator.prepare(_loader(cfg, phase, tokenizer, attention)) for phase in phases]
    ends = list(
        itertools.accumulate(
            phase.max_steps or total_steps(cfg.train, len(loader))
            for phase, loader in zip(phases, loaders, strict=True)
        )
    )
    # The scheduler is stepped by fit() once per optimizer step, so it is not handed to accelerate.
    scheduler = make_schedule(optimizer, cfg.train, ends[-1])
    layout = _layout(cfg, phases)
    state = load_checkpoint(accelerator, resume_from, optimizer, scheduler, layout) if resume_from else TrainState()
    resolved = run_state(accelerator, packed_attention=attention)
    if accelerator.is_main_process:
        save_config(cfg, out_dir, resolved)
        if resume_from:
            _trim_metrics(out_dir / METRICS_FILE, state.step)
            print(f"resuming from {resume_from} at step {state.step}")
        else:
            (out_dir / METRICS_FILE).unlink(missing_ok=True)
        print(
            f"pretraining {_describe(accelerator.unwrap_model(objective))} for {ends[-1]} steps, "
            f"{accelerator.num_processes} process(es) on {accelerator.device}"
        )
        if cfg.model.objective == "electra" and any(pair_objective(phase.meta) for phase in phases):
            print(
                "note: model.objective=electra leaves the data's sentence-pair labels unused (ELECTRA has no NSP/SOP "
                "task); data.objective=packed makes full rows without them"
            )
        print(describe_schedule(cfg.train, ends[-1], state.seconds))
    accelerator.init_trackers("tensorboard", config={"steps": ends[-1], "lr": cfg.train.lr})
    return Setup(
        accelerator,
        objective,
        optimizer,
        scheduler,
        tokenizer,
        phases,
        loaders,
        ends,
        state,
        out_dir,
        final_dir,
        layout,
        probe_data,
        resolved,
    )


def _objective(
    cfg: PretrainRecipe, tokenizer, phases: list[Phase], resume_from: Path | None, global_sum, num_processes: int
) -> PretrainingObjective | ElectraObjective:
    """model.objective on the checkpoint's model, `model.init_from`, or a fresh one of the recipe's size; long
    enough for the data."""
    electra = cfg.model.objective == "electra"
    if resume_from and is_electra(resume_from) != electra:
        saved = "electra" if is_electra(resume_from) else "mlm"
        raise BertkitError(
            f"{resume_from}: a checkpoint of model.objective={saved}, resumed with model.objective="
            f"{cfg.model.objective}; resume with model.objective={saved}, or start afresh with overwrite=true"
        )
    if electra:
        objective = electra_objective(
            cfg.model, tokenizer, cfg.allow_pickle_weights, resume_from, global_sum, num_processes
        )
        models = [objective.discriminator, objective.generator]
    else:
        if resume_from:
            model = load_model(BertForPreTraining, resume_from)
            check_vocabulary(model, tokenizer, resume_from)
        else:
            model = build_pretraining_model(cfg.model, tokenizer, cfg.allow_pickle_weights)
        objective, models = PretrainingObjective(model, global_sum, num_processes), [model]
    longest = max(phase.meta["max_seq_length"] for phase in phases)
    if longest > objective.config.max_position_embeddings:
        raise BertkitError(
            f"examples of {longest} tokens exceed the model's {objective.config.max_position_embeddings} positions; "
            "raise model.max_position_embeddings or tokenize with a smaller data.max_seq_length"
        )
    for model in models:
        if cfg.train.gradient_checkpointing:
            checkpoint_layers(model)
        use_fast_dropout(model)
    return objective


def _to_save(objective: PretrainingObjective | ElectraObjective):
    """What checkpoints and the final dir are written from: the BertForPreTraining, or ELECTRA's objective, whose
    save_pretrained writes its three parts."""
    return objective if isinstance(objective, ElectraObjective) else objective.model


def _describe(objective: PretrainingObjective | ElectraObjective) -> str:
    """The model in words, for the line that starts training."""
    c = objective.config
    model = objective.discriminator if isinstance(objective, ElectraObjective) else objective.model
    bert = f"a {c.num_hidden_layers}-layer BERT (H={c.hidden_size}, {parameter_count(model) / 1e6:.1f}M parameters)"
    if not isinstance(objective, ElectraObjective):
        return bert
    g = objective.generator.config
    more = (parameter_count(objective) - parameter_count(model)) / 1e6  # shared embeddings counted once
    return f"{bert} as ELECTRA's discriminator, with a generator (H={g.hidden_size}) and head of {more:.2f}M more"


def _packed_attention(cfg: PretrainRecipe, accelerator: Accelerator) -> str:
    """What train.packed_attention=auto becomes here: varlen on a CUDA GPU, else the mask."""
    if cfg.train.packed_attention != "auto":
        return cfg.train.packed_attention
    # Not with checkpointing: saving the GPU's nested tensors for recomputation has not been tried on one.
    gpu = accelerator.device.type == "cuda" and not cfg.train.gradient_checkpointing
    return "varlen" if gpu and cfg.train.pack_sequences else "mask"


def _loader(cfg: PretrainRecipe, phase: Phase, tokenizer, attention: str) -> DataLoader:
    """Batches of a phase's examples in the epoch sampler's order, masked (and packed) by the collator."""
    return DataLoader(
        KeyedDataset(phase.splits["train"], cfg.train.seed),
        batch_size=phase.batch_size,
        sampler=EpochSampler(len(phase.splits["train"]), cfg.train.seed),
        collate_fn=PretrainingCollator(
            tokenizer,
            cfg.masking,
            pack_to=phase.meta["max_seq_length"] if cfg.train.pack_sequences else None,
            varlen=attention == "varlen",
        ),
        generator=torch.Generator(),  # the loader's own base-seed draw must not touch the global RNG
    )


def train(cfg: PretrainRecipe, run: Setup) -> TrainState:
    """The phases one after another through fit(), from where the run stands; checkpoints on the way."""
    accelerator, state = run.accelerator, run.state

    def save(state: TrainState) -> None:
        model = _to_save(accelerator.unwrap_model(run.objective))
        root = run.out_dir / "checkpoints"
        save_checkpoint(
            accelerator,
            root,
            state,
            model,
            run.tokenizer,
            run.optimizer,
            run.scheduler,
            cfg.train.keep_last,
            run.layout,
        )

    for index, (phase, loader) in enumerate(zip(run.phases, run.loaders, strict=True)):
        start = run.ends[index - 1] if index else 0
        if state.step >= run.ends[index]:
            continue  # done before the resumed checkpoint
        if state.step == start:  # entering the phase: its data from the beginning
            state.epoch, state.batches_in_epoch = 0, 0
        if accelerator.is_main_process:
            label = f"phase {index + 1}/{len(run.phases)}: " if len(run.phases) > 1 else ""
            print(
                f"{label}{_what(cfg, phase)} on {len(phase.splits['train'])} examples of "
                f"{phase.meta['max_seq_length']} tokens from {phase.dataset_dir}, steps {start + 1}–{run.ends[index]}, "
                f"batch {phase.batch_size}"
            )
        evaluates = "validation" in phase.splits or cfg.probe.during_pretraining
        state = fit(
            accelerator,
            run.objective,
            run.optimizer,
            run.scheduler,
            loader,
            cfg.train,
            run.ends[index],
            state=state,
            evaluate=partial(_evaluate, cfg, run, phase) if evaluates else None,
            save=save,
            save_every=cfg.train.save_every,
            log_file=run.out_dir / METRICS_FILE,
            desc="pretrain",
        )
        if state.stopped_early:
            break
    return state


def _what(cfg: PretrainRecipe, phase: Phase) -> str:
    if cfg.model.objective == "electra":
        return "ELECTRA (replaced-token detection + generator MLM)"
    pair = pair_objective(phase.meta)
    return f"MLM+{pair.upper()}" if pair else "MLM"


def _evaluate(cfg: PretrainRecipe, run: Setup, phase: Phase, state: TrainState) -> dict:
    """Held-out MLM (and NSP/SOP) scores of the phase's validation split, and the probe when asked for."""
    accelerator, metrics = run.accelerator, {}
    if "validation" in phase.splits:
        metrics = evaluate_pretraining(
            accelerator,
            run.objective,
            phase.splits["validation"],
            run.tokenizer,
            held_out_masking(cfg.masking, cfg.eval.masking_rate),
            cfg.eval.batch_size,
            cfg.eval.seed,
            None if cfg.model.objective == "electra" else pair_objective(phase.meta),
        )
    if cfg.probe.during_pretraining and accelerator.is_main_process:
        bert = accelerator.unwrap_model(run.objective).encoder
        scores = probe_model(bert, run.tokenizer, cfg, run.probe_data)["accuracy_by_layer"]
        metrics |= {f"probe/layer_{k}": score for k, score in enumerate(scores)}
    return metrics


def finish(cfg: PretrainRecipe, run: Setup, state: TrainState) -> Path:
    """The final model (a plain Hugging Face dir beside its checkpoints and logs), the plots, and the exit."""
    accelerator, out_dir, steps = run.accelerator, run.out_dir, run.ends[-1]
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.is_main_process:
        # Into a temporary sibling, then renamed: checkpoints/, metrics and TensorBoard logs are carried over.
        final = _to_save(accelerator.unwrap_model(run.objective))
        evaluations = [r for r in read_metrics(out_dir / METRICS_FILE) if "eval/mlm_accuracy" in r]
        last = evaluations[-1] if evaluations else {}
        scores = {k.removeprefix("eval/"): v for k, v in last.items() if k.startswith("eval/")}
        keep = ("checkpoints", METRICS_FILE, "tensorboard")
        save_model(final, run.tokenizer, out_dir, cfg, keep, scores, run.resolved)
        if out_dir != run.final_dir and state.signal is None:  # complete: it replaces the earlier output
            replace_dir(out_dir, run.final_dir)
            out_dir = run.final_dir
        # The objective of the phase training stopped in.
        phase = run.phases[next(i for i, end in enumerate(run.ends) if state.step <= end)]
        plot = plot_curves(out_dir / METRICS_FILE, out_dir / "curves.png", f"pretraining, {_what(cfg, phase)}")
        if isinstance(final, ElectraObjective):
            print(
                f"model: {out_dir} (the discriminator: loads with BertModel / BertFor….from_pretrained); generator: "
                f"{out_dir / 'generator'} (ElectraForMaskedLM)"
            )
        else:
            print(f"model: {out_dir} (loads with BertForPreTraining / BertForMaskedLM / BertModel.from_pretrained)")
        if plot:
            print(f"curves: {plot}")
        if cfg.probe.during_pretraining:
            probes = plot_probe_history(out_dir / METRICS_FILE, out_dir / "probe-during-pretraining.png")
            print(f"probe by layer over the steps: {probes}")
        if state.stopped_by == "time":
            print(
                f"stopped at step {state.step} of {steps}: the {cfg.train.max_time_minutes:g}-minute budget is used up "
                "(its LR schedule has ended); to train on, continue with train.resume=auto and a larger "
                "train.max_time_minutes"
            )
    if state.signal is not None:
        earlier = f" ({run.final_dir} keeps the earlier model)" if out_dir != run.final_dir else ""
        raise Interrupted(
            state.signal,
            f"{signal.Signals(state.signal).name} at step {state.step} of {steps}; "
            f"checkpoint {out_dir / 'checkpoints' / f'step-{state.step}'} and the model saved{earlier}; "
            "continue with train.resume=auto",
        )
    return out_dir
