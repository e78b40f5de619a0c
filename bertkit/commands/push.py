"""`bertkit push`: publish a model dir on the Hugging Face Hub (or the mirror HF_ENDPOINT names).

    bertkit push runs/demo-zh/finetune/topic someone/zh-topic --private

The repo is created when missing, then the dir is uploaded as one commit through huggingface_hub, with the
user's token (HF_TOKEN or `hf auth login`). What a user of the model needs goes up — weights, config,
tokenizer, vocab.txt, the model card, bertkit.yaml (so `bertkit predict owner/name` knows the task), metrics
and plots; pretraining's checkpoints/ (optimizer and RNG states) and TensorBoard logs only with
push.checkpoints=true.
"""

from __future__ import annotations

from pathlib import Path

from bertkit.atomic import MARKER
from bertkit.config import PushRecipe
from bertkit.errors import BertkitError
from bertkit.modeling.model import check_model_dir

# Never published: the marker of a bertkit output dir, and the leftovers of an interrupted atomic write.
ALWAYS_LEFT = [MARKER, "*.tmp", ".*.tmp*"]
TRAINING_STATE = ["checkpoints/**", "tensorboard/**"]


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection failures of the HTTP client huggingface_hub uses (httpx2 in huggingface_hub 2), which are not
    HfHubHTTPError."""
    try:
        import httpx2
    except ImportError:
        return ()
    return (httpx2.TransportError,)


def run_push(cfg: PushRecipe, model_dir: Path, repo_id: str) -> str:
    """The commit URL of `model_dir` uploaded to the model repo `repo_id`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    model_dir = check_model_dir(model_dir)
    ignore = ALWAYS_LEFT + ([] if cfg.push.checkpoints else TRAINING_STATE)
    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=cfg.push.private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=model_dir,
            ignore_patterns=ignore,
            commit_message=cfg.push.commit_message or f"Upload {model_dir.name} with bertkit",
        )
    except HfHubHTTPError as e:
        raise BertkitError(
            f"{repo_id}: the Hub refused the upload ({str(e).splitlines()[0][:200]}); check the repo id, your token "
            "(HF_TOKEN or `hf auth login`) and HF_ENDPOINT"
        ) from None
    except (OSError, *_transport_errors()) as e:
        raise BertkitError(
            f"{repo_id}: the Hub could not be reached ({type(e).__name__}: {str(e)[:200]}); check the network and "
            "HF_ENDPOINT, and push again (the upload is one commit: nothing half-published)"
        ) from None
    print(f"pushed {model_dir} to {url}\ncommit: {commit.commit_url}")
    return commit.commit_url
