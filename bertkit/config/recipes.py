"""Each command's recipe: a typed model of exactly the keys the command reads, composed from the sections.

    cfg = load_recipe("recipes/demo-zh.yaml", ["finetune.train.lr=1e-4"], "finetune")   # a FinetuneRecipe
    RECIPES["finetune"].model_fields    # output_dir, overwrite, allow_pickle_weights, finetune, eval

One YAML file may hold the sections of a whole pipeline: each command takes from it what its recipe declares.
`bertkit COMMAND --help` and docs/configuration.md list the recipe's keys, and a command-line override of a key
that the recipe does not declare is refused, naming the command that reads it (loading.py).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import PrivateAttr

from bertkit.config.sections import (
    ConvertConfig,
    DataConfig,
    DataDirConfig,
    EmbedConfig,
    EncoderConfig,
    EvalBatchConfig,
    EvalConfig,
    EvalTaskConfig,
    ExportConfig,
    ExportTaskConfig,
    FeaturesConfig,
    FinetuneConfig,
    MaskingConfig,
    ModelConfig,
    PositionsConfig,
    PredictConfig,
    PredictTaskConfig,
    PretrainDataConfig,
    PretrainEvalConfig,
    PretrainProbeConfig,
    PretrainTrainConfig,
    ProbeConfig,
    PushConfig,
    Section,
    ServeConfig,
    TokenizerConfig,
)


class Recipe(Section):
    """What every command reads: where its outputs go, and whether an earlier output may be replaced."""

    output_dir: Path = Path("runs/default")
    """Root of the run's outputs."""
    overwrite: bool = False
    """Replace an earlier bertkit output in the command's output dir (`pretrain`: start afresh in a dir holding
    another run's checkpoints, which are deleted); a dir bertkit did not write is never replaced."""
    # Recipe key → "repo@commit" of each model/tokenizer key given as a Hub id (bertkit/hub.py): save_config
    # writes these instead of the local cache paths they were resolved to.
    _hub_sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def hub_sources(self) -> dict[str, str]:
        return self._hub_sources

    # Where each stage writes by default, for the commands whose recipe has the section a path depends on.
    @property
    def tokenizer_dir(self) -> Path:
        return self.output_dir / "tokenizer"

    @property
    def pretrain_dir(self) -> Path:
        return self.output_dir / "pretrain"

    @property
    def dataset_dir(self) -> Path:
        return self.data.dataset_dir or self.output_dir / "data"

    @property
    def finetune_dir(self) -> Path:
        return self.output_dir / "finetune" / self.finetune.task.name


class LoadsWeights(Section):
    """A command that loads model weights."""

    allow_pickle_weights: bool = False
    """Load a pytorch_model.bin that holds more than tensors with Python's full unpickler, which can run code. By
    default a .bin loads through torch's weights-only unpickler (tensors and plain containers, no code) and a
    file that needs more is refused; safetensors are always preferred."""


class WeightsRecipe(LoadsWeights, Recipe):
    """A command that loads model weights and writes into the run's output dir."""


class TokenizeRecipe(Recipe):
    """`bertkit tokenize`: a WordPiece vocabulary and the pretraining examples of a corpus."""

    tokenizer: TokenizerConfig = TokenizerConfig()
    data: DataConfig = DataConfig()
    model: PositionsConfig = PositionsConfig()


class PretrainRecipe(WeightsRecipe):
    """`bertkit pretrain`: masked-LM (+ NSP/SOP) pretraining of a BERT on tokenize's examples."""

    data: PretrainDataConfig = PretrainDataConfig()
    model: ModelConfig = ModelConfig()
    masking: MaskingConfig = MaskingConfig()
    train: PretrainTrainConfig = PretrainTrainConfig()
    eval: PretrainEvalConfig = PretrainEvalConfig()
    probe: PretrainProbeConfig = PretrainProbeConfig()
    embed: FeaturesConfig = FeaturesConfig()
    """The features of the probe during pretraining."""


class FinetuneRecipe(WeightsRecipe):
    """`bertkit finetune`: a task head (or the BiLSTM baseline) trained on labelled files."""

    finetune: FinetuneConfig = FinetuneConfig()
    eval: EvalBatchConfig = EvalBatchConfig()
    """The dev evaluations' batches."""


class EvalRecipe(WeightsRecipe):
    """`bertkit eval`: a fine-tuned model on a labelled file, or a pretrained one on MLM/NSP."""

    eval: EvalConfig = EvalConfig()
    finetune: EvalTaskConfig = EvalTaskConfig()
    data: DataDirConfig = DataDirConfig()
    masking: MaskingConfig = MaskingConfig()
    """The masking of a pretrained model's evaluation."""


class EmbedRecipe(WeightsRecipe):
    """`bertkit embed`: contextual embeddings of a file's texts."""

    embed: EmbedConfig = EmbedConfig()


class ProbeRecipe(WeightsRecipe):
    """`bertkit probe`: a linear probe per layer on frozen features."""

    probe: ProbeConfig = ProbeConfig()
    embed: EncoderConfig = EncoderConfig()
    """The model and its features."""


class ExportRecipe(WeightsRecipe):
    """`bertkit export`: ONNX (and int8) of a model dir."""

    export: ExportConfig = ExportConfig()
    finetune: ExportTaskConfig = ExportTaskConfig()


class ConvertRecipe(Recipe):
    """`bertkit convert`: a google-research/bert TensorFlow release as a Hugging Face BERT dir."""

    convert: ConvertConfig = ConvertConfig()


class PredictRecipe(LoadsWeights):
    """`bertkit predict`: a fine-tuned model dir on new text; the model's own bertkit.yaml is the recipe (its task
    family, columns and lengths), overrides change it."""

    predict: PredictConfig = PredictConfig()
    finetune: PredictTaskConfig = PredictTaskConfig()
    """How the model's task reads its inputs (columns) and decodes its predictions."""


class ServeRecipe(PredictRecipe):
    """`bertkit serve`: a fine-tuned model dir over HTTP (POST /predict, a page to try it at /); as predict, the
    model's own bertkit.yaml is the recipe."""

    serve: ServeConfig = ServeConfig()


class PushRecipe(Section):
    """`bertkit push`: a model dir published on the Hugging Face Hub."""

    push: PushConfig = PushConfig()


RECIPES: dict[str, type[Section]] = {
    "tokenize": TokenizeRecipe,
    "pretrain": PretrainRecipe,
    "finetune": FinetuneRecipe,
    "eval": EvalRecipe,
    "embed": EmbedRecipe,
    "probe": ProbeRecipe,
    "export": ExportRecipe,
    "convert": ConvertRecipe,
    "predict": PredictRecipe,
    "serve": ServeRecipe,
    "push": PushRecipe,
}
