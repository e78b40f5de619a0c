"""Models and tokenizers by Hugging Face Hub id, wherever a recipe takes a model or tokenizer dir; data sets by
name (`hf:name[:config]:split`, data_set_ref) where it takes a task file or a corpus.

    cfg = resolve_hub_ids(cfg)   # finetune.model_dir=hfl/chinese-roberta-wwm-ext → its cached snapshot

A value that is a local path stays one. Otherwise a value shaped like a Hub id (`name`, `owner/name`, optionally
pinned: `owner/name@<revision>`) is fetched with huggingface_hub into its cache, so its environment applies:
HF_HOME / HF_HUB_CACHE (where), HF_HUB_OFFLINE=1 (cache only), HF_ENDPOINT (a mirror), HF_TOKEN (private
repos). Only what bertkit reads is downloaded: config, tokenizer files, and the weights — safetensors when the
repo has them, else pytorch_model.bin (loaded by the weights-only unpickler: bertkit.modeling.model.load_model). The
commit it resolved to is recorded: the saved bertkit.yaml names `owner/name@<commit>`, so a rerun of that config
gets the same files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from bertkit.errors import BertkitError

# The recipe keys that take a model or tokenizer dir; tokenizer.from_dir needs no weights.
MODEL_KEYS = (
    "finetune.model_dir",
    "model.init_from",
    "tokenizer.from_dir",
    "eval.model_dir",
    "embed.model_dir",
    "export.model_dir",
)
TOKENIZER_ONLY = ("tokenizer.from_dir",)

# huggingface_hub's repo id rules (letters, digits, - _ . ; at most one /; no -- or .. ; no leading/trailing
# - or .), and a revision after @ (a branch, tag or commit; branches may hold /).
HUB_ID = re.compile(
    r"(?!.*(--|\.\.))[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?(?:/[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?)?"
)
REVISION = re.compile(r"[\w.\-/]{1,200}")

CONFIG_FILES = [
    "config.json",
    "bertkit.yaml",  # a bertkit model's recipe: `bertkit predict` reads its task from it
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
]
SAFE_FILES = ["model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
PICKLE_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]


def split_hub_id(value: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) when `value` is shaped like a Hub id, else None."""
    repo, at, revision = value.partition("@")
    if not HUB_ID.fullmatch(repo) or (at and not REVISION.fullmatch(revision)):
        return None
    return repo, revision or None


def resolve_hub_ids(cfg):
    """A command's recipe `cfg` with each model/tokenizer key it has that names a Hub id (not a local path)
    replaced by the local snapshot of that repo; the ids, pinned to the commit, are kept for save_config."""
    for key in MODEL_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section, None), name, None)
        if value is None or Path(value).exists():
            continue
        hub_id = split_hub_id(str(value))
        if hub_id is None:
            continue  # a missing local path: the command's own check names it
        folder, pinned = fetch(*hub_id, key=key, weights=key not in TOKENIZER_ONLY)
        setattr(getattr(cfg, section), name, folder)
        cfg.hub_sources[key] = pinned
    return cfg


def local_or_hub(value: str, key: str) -> Path:
    """A model dir given as a local path or as a Hub id (fetched into the cache, as for recipe keys)."""
    hub_id = None if Path(value).exists() else split_hub_id(value)
    return fetch(*hub_id, key=key)[0] if hub_id else Path(value)


def fetch(repo: str, revision: str | None, key: str, weights: bool = True) -> tuple[Path, str]:
    """(local snapshot dir, "repo@commit") of a Hub repo: its config and tokenizer files, and its weights
    (safetensors, or pytorch_model.bin when it has none). Failures are one line saying what to do."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    name = f"{repo}@{revision}" if revision else repo
    where = f"{key}={name}"
    try:
        folder = Path(
            snapshot_download(repo, revision=revision, allow_patterns=CONFIG_FILES + (SAFE_FILES if weights else []))
        )
        if weights and not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(repo, revision=revision, allow_patterns=CONFIG_FILES + PICKLE_FILES))
    except GatedRepoError:
        raise BertkitError(
            f"{where}: the repo is gated or private; accept its terms on the Hub and log in (`hf auth login` or "
            "HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise BertkitError(
            f"{where}: not a local dir, and no such model on the Hub ({constants.ENDPOINT}); check the spelling, "
            "or log in (`hf auth login`) if it is private"
        ) from None
    except RevisionNotFoundError:
        raise BertkitError(f"{where}: the repo has no revision {revision!r}; give a branch, tag or commit") from None
    except LocalEntryNotFoundError as e:  # offline (HF_HUB_OFFLINE=1 or no network) and not cached
        why = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "the Hub could not be reached"
        raise BertkitError(
            f"{where}: not a local dir, not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and {why}; "
            f"download it once online (`hf download {repo}`), set HF_ENDPOINT to a mirror, or give a local dir"
        ) from e
    except HFValidationError:
        raise BertkitError(f"{where}: neither a local dir nor a valid Hub id; check the path") from None
    except (HfHubHTTPError, OSError) as e:
        raise BertkitError(
            f"{where}: download failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); check the network "
            "or HF_ENDPOINT, and try again"
        ) from e
    if not (folder / "config.json").is_file() and weights:
        raise BertkitError(f"{where}: the repo has no config.json; it is not a transformers model")
    return folder, f"{repo}@{folder.name}"


DATA_SET_PREFIX = "hf:"
# name (optionally @revision), optional config, split; the split may carry datasets' slicing: validation[:500].
DATA_SET_REF = re.compile(r"(?P<name>[^:\[\]]+)(?::(?P<config>[^:\[\]]+))?:(?P<split>[^:\[\]]+(?:\[[^\]]*\])?)")


class DataSet(NamedTuple):
    """A data set split by name: `hf:name[@revision][:config]:split`."""

    name: str
    config: str | None
    split: str
    revision: str | None

    def load(self, split: str | None = None, **kwargs):
        """datasets.load_dataset of this split (or `split` instead), e.g. streaming=True."""
        import datasets

        datasets.disable_progress_bars()
        return datasets.load_dataset(
            self.name, self.config, split=split or self.split, revision=self.revision, **kwargs
        )


def data_set_ref(path: Path | str) -> DataSet | None:
    """The data set a task file or corpus names as `hf:name[@revision][:config]:split` — on the Hub
    (`hf:clue/clue:tnews:train`, `hf:nyu-mll/glue:sst2:validation[:500]`, `hf:rajpurkar/squad:train`, a pinned
    or converted revision: `hf:eriktks/conll2003@refs/convert/parquet:conll2003:train`) or a local data set dir
    — else None (also for an `hf://` URL, a file in a Hub repo)."""
    text = str(path)
    if not text.startswith(DATA_SET_PREFIX) or text.startswith("hf://"):
        return None
    match = DATA_SET_REF.fullmatch(text[len(DATA_SET_PREFIX) :])
    if match is None:
        raise BertkitError(f"{text}: a data set is hf:<name>[:<config>]:<split>, e.g. hf:clue/clue:tnews:train")
    name, _, revision = match["name"].partition("@")
    return DataSet(name, match["config"], match["split"], revision or None)
