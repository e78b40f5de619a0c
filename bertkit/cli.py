"""The `bertkit` command line: thin commands that load a recipe and call a run_* function.

bertkit tokenize recipes/demo-zh.yaml data.files=my_corpus.txt output_dir=runs/mine
bertkit pretrain recipes/demo-zh.yaml train.max_steps=50 model.hidden_size=128
bertkit finetune recipes/demo-zh.yaml finetune.train.epochs=5
bertkit eval     recipes/demo-zh.yaml eval.model_dir=runs/mine/pretrain
bertkit embed    recipes/demo-zh.yaml embed.file=sentences.txt
bertkit probe    recipes/demo-zh.yaml probe.train_file=train.jsonl probe.test_file=dev.jsonl
bertkit export   recipes/demo-zh.yaml export.quantize=true
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from bertkit.atomic import release_outputs
from bertkit.errors import reported

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help text: the recipe key listing keeps its lines
    help="From a raw text corpus to a pretrained BERT and fine-tuned task models. Each command reads a recipe "
    "(YAML, see recipes/) plus key=value overrides, and saves its effective config next to its outputs.",
)

RECIPE = typer.Argument(..., help="Recipe YAML file, e.g. recipes/demo-zh.yaml.", show_default=False)
OVERRIDES = typer.Argument(
    None,
    help="Recipe overrides as section.key=value (value parsed as YAML), e.g. train.lr=5e-4 output_dir=runs/x.",
    show_default=False,
)
DEBUG = typer.Option(False, "--debug", help="Show the full traceback of an error.")


@contextlib.contextmanager
def _command(debug: bool) -> Iterator[None]:
    """A command's errors as one line (reported), and the outputs it claimed given up however it ends."""
    with reported(debug):
        try:
            yield
        finally:
            release_outputs()


def _keys(command: str) -> str:
    """The epilog of `bertkit COMMAND --help`: every key of the command's recipe model (bertkit/config/recipes.py)."""
    import textwrap

    from bertkit.config.reference import describe

    lines = [
        textwrap.fill(line, 100, subsequent_indent="    ", break_on_hyphens=False)
        for line in describe(command).splitlines()
    ]
    # "\b" keeps click from re-flowing the paragraph into one block.
    return "Recipe keys this command reads (section.key = default):\n\n\b\n" + "\n".join(lines)


def _load(recipe: Path, overrides: list[str] | None, command: str):
    from bertkit.config import load_recipe
    from bertkit.hub import resolve_hub_ids

    return resolve_hub_ids(load_recipe(recipe, overrides or [], command))


@app.command(epilog=_keys("tokenize"))
def tokenize(recipe: Path = RECIPE, overrides: list[str] = OVERRIDES, debug: bool = DEBUG) -> None:
    """Train a WordPiece vocabulary on data.files (or reuse tokenizer.from_dir) and build sentence-pair
    pretraining examples with whole-word ids. Writes <output_dir>/tokenizer and <output_dir>/data."""
    with _command(debug):
        cfg = _load(recipe, overrides, "tokenize")
        from bertkit.commands.tokenize import run_tokenize

        tokenizer_dir, dataset_dir = run_tokenize(cfg)
        print(f"tokenizer: {tokenizer_dir}\ndataset: {dataset_dir}")


@app.command(epilog=_keys("pretrain"))
def pretrain(recipe: Path = RECIPE, overrides: list[str] = OVERRIDES, debug: bool = DEBUG) -> None:
    """Pretrain BERT (masked LM + next sentence prediction) on the tokenized data; works under
    `accelerate launch`. Writes a Hugging Face model dir to <output_dir>/pretrain."""
    with _command(debug):
        cfg = _load(recipe, overrides, "pretrain")
        from bertkit.commands.pretrain import run_pretrain

        run_pretrain(cfg)


@app.command(epilog=_keys("finetune"))
def finetune(recipe: Path = RECIPE, overrides: list[str] = OVERRIDES, debug: bool = DEBUG) -> None:
    """Fine-tune a task head (finetune.task) from finetune.model_dir, default the recipe's pretrained model.
    Keeps the best dev checkpoint in <output_dir>/finetune/<task.name>."""
    with _command(debug):
        cfg = _load(recipe, overrides, "finetune")
        from bertkit.commands.finetune import run_finetune

        run_finetune(cfg)


@app.command("eval", epilog=_keys("eval"))
def evaluate(recipe: Path = RECIPE, overrides: list[str] = OVERRIDES, debug: bool = DEBUG) -> None:
    """Score eval.model_dir (default: the fine-tuned model): MLM/NSP for a pretrained model, the task family's
    metrics for a fine-tuned one (accuracy and F1, entity F1, EM/F1, Pearson/Spearman). Prints a table; writes
    report.json and predictions to <output_dir>/eval/<model>."""
    with _command(debug):
        cfg = _load(recipe, overrides, "eval")
        from bertkit.commands.eval import run_eval

        run_eval(cfg)


@app.command(epilog=_keys("embed"))
def embed(recipe: Path = RECIPE, overrides: list[str] = OVERRIDES, debug: bool = DEBUG) -> None:
    """Contextual embeddings of every text of embed.file from embed.model_dir: per text (cls/mean/max pooling)
    or per token with offsets, from one layer or a mix. Writes embeddings.npy and index.jsonl."""
    with _command(debug):
        cfg = _load(recipe, overrides, "embed")
        from bertkit.commands.embed import run_embed

        run_embed(cfg)


@app.command(epilog=_keys("probe"))
def probe(recipe: Path = RECIPE, overrides: list[str] = OVERRIDES, debug: bool = DEBUG) -> None:
    """Layer-wise probing: a logistic regression per layer on frozen features of probe.train_file, scored on
    probe.test_file. Prints accuracy by layer; writes probe.json and probe.png."""
    with _command(debug):
        cfg = _load(recipe, overrides, "probe")
        from bertkit.commands.probe import run_probe

        run_probe(cfg)


@app.command(epilog=_keys("export"))
def export(recipe: Path = RECIPE, overrides: list[str] = OVERRIDES, debug: bool = DEBUG) -> None:
    """ONNX export of export.model_dir (default: the fine-tuned model) with dynamic batch and sequence axes,
    checked against PyTorch in onnxruntime; export.quantize=true adds an int8 model, timed and scored."""
    with _command(debug):
        cfg = _load(recipe, overrides, "export")
        from bertkit.commands.export import run_export

        run_export(cfg)


@app.command(epilog=_keys("convert"))
def convert(recipe: Path = RECIPE, overrides: list[str] = OVERRIDES, debug: bool = DEBUG) -> None:
    """A google-research/bert TensorFlow release (bert_model.ckpt.*, bert_config.json, vocab.txt) as a Hugging
    Face BERT dir (BertForPreTraining, safetensors); no TensorFlow needed."""
    with _command(debug):
        cfg = _load(recipe, overrides, "convert")
        from bertkit.commands.convert import run_convert

        run_convert(cfg)


OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=")  # `finetune.task.text_column=review`, not a file name
MODEL = typer.Argument(
    ...,
    help="A model dir that `bertkit finetune` wrote, or the Hub id of one (owner/name[@revision]).",
    show_default=False,
)
INPUTS = typer.Argument(
    None,
    help="Input files (.txt: a text a line; .jsonl/.json/.csv/.tsv/.parquet or hf:name:split with the task's "
    "columns), - for standard input, and section.key=value overrides.",
    show_default=False,
)
TEXT = typer.Option(None, "--text", help="A text to predict (repeatable).", show_default=False)
OUTPUT = typer.Option(None, "--output", help="Write the JSON lines to this new file, not stdout.")
SKIP_BAD = typer.Option(
    False, "--skip-bad", help="Report each bad input line (not UTF-8, not JSON, a missing column) and skip it."
)
TOP_K = typer.Option(
    None, "--top-k", help="Classifiers: also list the k most probable classes (as predict.top_k=k).", show_default=False
)


@app.command(epilog=_keys("predict"))
def predict(
    model: str = MODEL,
    inputs: list[str] = INPUTS,
    text: list[str] = TEXT,
    output: Path = OUTPUT,
    skip_bad: bool = SKIP_BAD,
    top_k: int = TOP_K,
    debug: bool = DEBUG,
) -> None:
    """Predict new text with a fine-tuned model: one JSON line per input, in input order (label and every class's
    probability for a classifier). The model's own bertkit.yaml says its task and columns."""
    with _command(debug):
        from contextlib import redirect_stdout

        from bertkit.commands.predict import run_predict
        from bertkit.hub import local_or_hub
        from bertkit.tasks.predictor import load_predict_recipe

        model_dir = local_or_hub(model, "MODEL")
        overrides = [i for i in inputs or [] if OVERRIDE.match(i)] + (
            [f"predict.top_k={top_k}"] if top_k is not None else []
        )
        files = [i for i in inputs or [] if not OVERRIDE.match(i)]
        with redirect_stdout(sys.stderr):  # stdout is the predictions' alone
            cfg = load_predict_recipe(model_dir, overrides)
        run_predict(cfg, model_dir, files, text or [], output, skip_bad)


REPO = typer.Argument(..., help="The Hub repo to publish to, owner/name.", show_default=False)
PUSH_MODEL = typer.Argument(..., help="The model dir to publish.", show_default=False)
PRIVATE = typer.Option(False, "--private", help="Create the repo as private (as push.private=true).")


@app.command(epilog=_keys("push"))
def push(
    model: Path = PUSH_MODEL,
    repo_id: str = REPO,
    overrides: list[str] = OVERRIDES,
    private: bool = PRIVATE,
    debug: bool = DEBUG,
) -> None:
    """Publish a model dir on the Hugging Face Hub (HF_ENDPOINT for a mirror; HF_TOKEN or `hf auth login`):
    weights, config, tokenizer, model card and bertkit.yaml; checkpoints only with push.checkpoints=true."""
    with _command(debug):
        from bertkit.commands.push import run_push
        from bertkit.config import load_recipe

        cfg = load_recipe(None, [*(overrides or []), *(["push.private=true"] if private else [])], "push")
        run_push(cfg, model, repo_id)


@app.command(epilog=_keys("serve"))
def serve(model: str = MODEL, overrides: list[str] = OVERRIDES, debug: bool = DEBUG) -> None:
    """Serve a fine-tuned model over HTTP: POST /predict (predict's JSON, concurrent requests batched), GET /health,
    the API's docs at /docs, and a page at / to try it by hand. The model's own bertkit.yaml says its task."""
    with _command(debug):
        from bertkit.commands.serve import run_serve
        from bertkit.hub import local_or_hub
        from bertkit.tasks.predictor import load_predict_recipe

        model_dir = local_or_hub(model, "MODEL")
        run_serve(load_predict_recipe(model_dir, overrides or [], "serve"), model_dir)


def main() -> None:
    app()
