"""Recipe values that would train wrongly or crash later are one-line errors at load time; a tokenizer or a
length that does not fit the model is an error in every command; `eval_every=0` means "only at the end"."""

import json

import pytest
import torch
from conftest import RECIPE, ListLoader, TinyRegression, run_cli
from transformers import BertConfig, BertModel

from bertkit.config import RECIPES, load_recipe
from bertkit.config.loading import annotation, parse_override
from bertkit.config.sections import BiLSTMConfig, ProbeConfig, TrainConfig
from bertkit.errors import BertkitError
from bertkit.evaluation.features import layer_indices
from bertkit.evaluation.probe import read_probe_data
from bertkit.modeling.bilstm import BiLSTMClassifier
from bertkit.modeling.model import check_fits
from bertkit.training.loop import fit
from bertkit.training.runtime import make_accelerator
from bertkit.training.state import TrainState

FINITE = "Input should be a finite number"
DIR_NAME = "must be a plain directory name"

RULES = [
    # (override, expected in the error line)
    ("train.lr=.inf", f"command line: train.lr: {FINITE}, got inf"),
    ("train.lr=nan", f"command line: train.lr: {FINITE}, got 'nan'"),
    ("train.lr=1e999", f"command line: train.lr: {FINITE}, got '1e999'"),  # YAML 1.1 reads it as a string
    ("train.epochs=.inf", f"train.epochs: {FINITE}"),
    ("masking.rate=.nan", f"masking.rate: {FINITE}"),
    ("train.lr=0", "train.lr: Input should be greater than 0, got 0"),
    ("train.clip_grad_norm=-1", "train.clip_grad_norm: Input should be greater than 0, got -1"),
    ("train.clip_grad_norm=0", "train.clip_grad_norm: Input should be greater than 0, got 0"),
    ("train.weight_decay=-0.1", "train.weight_decay: Input should be greater than or equal to 0"),
    ("train.warmup_ratio=1.5", "train.warmup_ratio: Input should be less than or equal to 1"),
    ("train.epochs=0", "train.epochs: Input should be greater than 0"),
    ("train.keep_last=0", "train.keep_last: Input should be greater than or equal to 1"),
    ("train.batch_size=0", "train.batch_size: Input should be greater than or equal to 1"),
    ("train.eval_every=-1", "train.eval_every: Input should be greater than or equal to 0"),
    ("train.seed=-1", "train.seed: Input should be greater than or equal to 0"),
    ("train.seed=4294967296", "train.seed: Input should be less than 4294967296"),
    ("eval.batch_size=0", "eval.batch_size: Input should be greater than or equal to 1"),
    ("model.hidden_dropout_prob=2.0", "model.hidden_dropout_prob: Input should be less than 1, got 2.0"),
    ("model.attention_probs_dropout_prob=1", "model.attention_probs_dropout_prob: Input should be less than 1"),
    ("model.hidden_dropout_prob=-0.1", "model.hidden_dropout_prob: Input should be greater than or equal to 0"),
    ("model.hidden_size=0", "command line: model.hidden_size: Input should be greater than or equal to 1, got 0"),
    ("model.num_hidden_layers=-2", "model.num_hidden_layers: Input should be greater than or equal to 1"),
    ("model.num_attention_heads=0", "model.num_attention_heads: Input should be greater than or equal to 1"),
    ("model.intermediate_size=0", "model.intermediate_size: Input should be greater than or equal to 1"),
    ("model.max_position_embeddings=0", "model.max_position_embeddings: Input should be greater than or equal to 1"),
    ("tokenizer.vocab_size=5", "tokenizer.vocab_size: Input should be greater than 5"),
    ("tokenizer.limit_alphabet=0", "tokenizer.limit_alphabet: Input should be greater than or equal to 1"),
    ("embed.layers=[]", "embed.layers: List should have at least 1 item"),
    ("embed.max_seq_length=4", "embed.max_seq_length: Input should be greater than or equal to 8"),
    ("finetune.task.name=../x", f"command line: finetune.task.name: {DIR_NAME}"),
    ("finetune.task.name=.", f"finetune.task.name: {DIR_NAME}"),
    ("finetune.task.name=..", f"finetune.task.name: {DIR_NAME}"),
    ("finetune.task.name=''", f"finetune.task.name: {DIR_NAME}"),
    ("finetune.task.name=a/b", f"finetune.task.name: {DIR_NAME}"),
    ("finetune.task.name=a\\b", f"finetune.task.name: {DIR_NAME}"),
    ("finetune.task.name=.hidden", f"finetune.task.name: {DIR_NAME}"),
    (
        "masking={mask_prob: 0.9, random_prob: 0.2}",
        "command line: masking.mask_prob + masking.random_prob = 0.9 + 0.2 is over 1",
    ),
    (
        "finetune.task={type: token-classification, max_seq_length: 32, stride: 29}",
        "command line: finetune.task.stride=29 leaves no room for new tokens in windows of "
        "finetune.task.max_seq_length=32; set finetune.task.stride below 29",
    ),
    (
        "train={pack_sequences: false, packed_attention: varlen}",
        "command line: train.packed_attention=varlen keeps packed sequences apart, but train.pack_sequences=false "
        "packs none; set train.pack_sequences=true, or train.packed_attention=auto",
    ),
    ("train.precision=yes", "train.precision: Input should be 'no', 'bf16', 'fp16' or 'auto', got True"),
    ("train.lr=true", "command line: train.lr: must be a number, not true/false (YAML reads yes/no/on/off as those)"),
    ("train.max_steps=yes", "train.max_steps: must be a number, not true/false"),
    ("train.eval_every=off", "train.eval_every: must be a number, not true/false"),
]


def _load(path, overrides: list[str]):
    """The recipe of the first command that reads every key of the overrides."""
    keys = [".".join(parse_override(o)[0]) for o in overrides]
    command = next(c for c, recipe in RECIPES.items() if all(annotation(recipe, k) for k in keys))
    return load_recipe(path, overrides, command)


@pytest.mark.parametrize("override,expected", RULES, ids=[r[0] for r in RULES])
def test_out_of_range_values_are_one_line_errors(override, expected):
    with pytest.raises(BertkitError) as e:
        _load(None, [override])
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_values_at_the_edges_load():
    cfg = _load(
        None,
        [
            "masking.mask_prob=0.9",
            "masking.random_prob=0.1",  # 1.0 exactly: no token left unchanged
            "train.clip_grad_norm=null",
            "model.hidden_dropout_prob=0",
        ],
    )
    assert (cfg.masking.mask_prob + cfg.masking.random_prob, cfg.train.clip_grad_norm) == (1.0, None)
    task = [
        "finetune.task.stride=40",  # classification has no windows
        "finetune.task.n_best=20",  # a question-answering key at its default: a saved bertkit.yaml loads
        "finetune.task.max_seq_length=32",
    ]
    assert _load(None, task).finetune.task.stride == 40
    assert _load(None, ["finetune.task.name=topic-v2"]).finetune_dir.name == "topic-v2"


def test_a_rule_names_the_recipe_file_when_it_comes_from_there(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("masking:\n  mask_prob: 0.95\n", encoding="utf-8")
    rule = "masking.mask_prob + masking.random_prob = 0.95 + {} is over 1"
    with pytest.raises(BertkitError) as e:
        load_recipe(recipe, [], "pretrain")
    assert str(e.value).startswith(f"{recipe}: {rule.format(0.1)}")
    with pytest.raises(BertkitError) as e:
        load_recipe(recipe, ["masking.random_prob=0.2"], "eval")
    assert str(e.value).startswith(f"command line: {rule.format(0.2)}")


@pytest.mark.parametrize("typed", ["no", "off", "false", "null", "~"])
def test_yaml_booleans_mean_off(typed, tmp_path):
    """YAML 1.1 reads `no` and `off` as False: the documented 'no' of train.precision must still load."""
    assert _load(None, [f"train.precision={typed}"]).train.precision == "no"
    assert _load(None, [f"tokenizer.segmenter={typed}"]).tokenizer.segmenter == "none"
    assert _load(None, [f"embed.pooling={typed}"]).embed.pooling == "none"
    assert _load(None, [f"eval.precision={typed}"]).eval.precision == "no"
    assert _load(None, [f"train.resume={typed}"]).train.resume is None
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"train:\n  precision: {typed}\nfinetune:\n  train:\n    precision: {typed}\n", encoding="utf-8")
    assert load_recipe(recipe, [], "pretrain").train.precision == "no"
    assert load_recipe(recipe, [], "finetune").finetune.train.precision == "no"


def test_duplicate_keys_name_file_line_and_key(tmp_path):
    recipe = tmp_path / "dup.yaml"
    recipe.write_text("train:\n  lr: 1.0e-3\n  batch_size: 8\n  lr: 2.0e-3\n", encoding="utf-8")
    with pytest.raises(BertkitError) as e:
        load_recipe(recipe, [], "pretrain")
    assert str(e.value) == f"{recipe} line 4: not valid YAML (duplicate key 'lr', first on line 2; keep one)"
    recipe.write_text("train: {lr: 1.0e-3, lr: 2.0e-3}\n", encoding="utf-8")
    with pytest.raises(BertkitError, match="line 1: not valid YAML \\(duplicate key 'lr', first on line 1"):
        load_recipe(recipe, [], "pretrain")
    recipe.write_text("train: &t\n  lr: 1.0e-3\nfinetune:\n  train:\n    <<: *t\n    lr: 2.0e-3\n", encoding="utf-8")
    assert load_recipe(recipe, [], "finetune").finetune.train.lr == 2e-3  # a key after a merge overrides it
    recipe.write_text("train:\n  lr: 1.0e-3\nfinetune:\n  train:\n    lr: 2.0e-3\n", encoding="utf-8")
    assert load_recipe(recipe, [], "finetune").finetune.train.lr == 2e-3  # the same key in two sections: no duplicate


@pytest.mark.parametrize("every,expected", [(0, [6]), (None, [6]), (4, [4, 6])])
def test_fit_evaluates_and_saves_every_n_steps_or_only_at_the_end(every, expected):
    torch.manual_seed(0)
    train = TrainConfig(eval_every=every, log_every=100)
    accelerator = make_accelerator(train.precision, "train.precision", train.grad_accum)
    model = TinyRegression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batch = {"x": torch.ones(2, 2), "y": torch.zeros(2), "attention_mask": torch.ones(2, 1, dtype=torch.long)}
    evaluated, saved = [], []
    state = fit(
        accelerator,
        model,
        optimizer,
        scheduler,
        ListLoader([dict(batch) for _ in range(3)]),
        train,
        6,
        evaluate=lambda s: evaluated.append(s.step) or {},
        save=lambda s: saved.append(s.step),
        save_every=every,
    )
    assert (state.step, state.epoch, evaluated, saved) == (6, 1, expected, expected)
    assert isinstance(state, TrainState)


def test_finetune_eval_every_0_evaluates_only_at_the_end(tiny_run, tmp_path):
    run, overrides = tiny_run
    rows = [{"text": f"{topic}新闻{i}", "label": topic} for i in range(8) for topic in ("体育", "教育")]
    train, dev = _jsonl(tmp_path / "train.jsonl", rows), _jsonl(tmp_path / "dev.jsonl", rows[:4])
    common = [
        *overrides,
        f"output_dir={tmp_path}",
        f"finetune.model_dir={run / 'pretrain'}",
        f"finetune.task.train_file={train}",
        f"finetune.task.validation_file={dev}",
        "finetune.train.batch_size=4",  # 16 rows: 4 steps an epoch
        "finetune.train.epochs=2",
        "finetune.train.log_every=1",
    ]
    steps = {}
    for name, every in (("at-end", "0"), ("epochs", "null")):
        result = run_cli(
            "finetune", RECIPE, *common, f"finetune.task.name={name}", f"finetune.train.eval_every={every}"
        )
        assert result.exit_code == 0, result.output
        records = [
            json.loads(line) for line in (tmp_path / "finetune" / name / "metrics.jsonl").read_text().splitlines()
        ]
        assert [r["step"] for r in records if "loss" in r] == list(range(1, 9))
        steps[name] = [r["step"] for r in records if "eval/accuracy" in r]
    assert steps == {"at-end": [8], "epochs": [4, 8]}


def _bert(vocab_size: int, positions: int) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=32,
        max_position_embeddings=positions,
    )
    return BertModel(config)


def test_check_fits(tokenizer, tmp_path):
    check_fits(_bert(len(tokenizer), 64), tokenizer, tmp_path, 64, "embed.max_seq_length")
    check_fits(_bert(len(tokenizer) + 10, 64), tokenizer, tmp_path)  # a padded vocabulary is fine
    with pytest.raises(BertkitError) as e:
        check_fits(_bert(len(tokenizer) - 1, 64), tokenizer, tmp_path, 32, "embed.max_seq_length")
    assert str(e.value) == (
        f"{tmp_path}: its tokenizer has {len(tokenizer)} tokens but the model only {len(tokenizer) - 1} embeddings; "
        "put the tokenizer the model was trained with in the dir"
    )
    with pytest.raises(BertkitError) as e:
        check_fits(_bert(len(tokenizer), 64), tokenizer, tmp_path, 65, "finetune.task.max_seq_length")
    assert str(e.value) == (
        f"finetune.task.max_seq_length=65 exceeds the model's 64 positions ({tmp_path}); set "
        "finetune.task.max_seq_length to 64 or less"
    )
    id2label = {0: "a", 1: "b"}
    bilstm = BiLSTMClassifier.build(len(tokenizer), tokenizer.pad_token_id, id2label, "sequence", BiLSTMConfig())
    check_fits(bilstm, tokenizer, tmp_path, 100_000, "finetune.task.max_seq_length")  # no positions to exceed


def test_embed_layers_are_checked_against_the_model():
    assert layer_indices([0, -1], 2) == [0, 2]
    assert layer_indices([-3, 1, 1], 2) == [0, 1]
    for layers in ([3], [-4], [99], []):
        with pytest.raises(BertkitError) as e:
            layer_indices(layers, 2)
        assert str(e.value) == (
            f"embed.layers={layers}: the model has 2 layers; give indices from 0 (the embeddings) to 2, or -3 to -1 "
            "from the end"
        )
    with pytest.raises(BertkitError, match=r"^embed.layers=\[2\]: the model has 1 layer;"):
        layer_indices([2], 1)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_probe_files_are_checked_before_features(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    test = _jsonl(tmp_path / "test.jsonl", [{"text": "c", "label": "z"}, {"text": "d", "label": "w"}])
    data = read_probe_data(ProbeConfig(train_file=train, test_file=train))
    assert data == {"train": (["a", "b"], ["x", "y"]), "test": (["a", "b"], ["x", "y"])}
    with pytest.raises(BertkitError) as e:
        read_probe_data(ProbeConfig(train_file=train, test_file=test))
    assert str(e.value) == (
        f"{test}: label(s) 'w', 'z' not seen in training (known: x, y); fix the file or add examples to the train file"
    )
    one = _jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}])
    with pytest.raises(BertkitError) as e:
        read_probe_data(ProbeConfig(train_file=one, test_file=train))
    assert (
        str(e.value)
        == f"{one}: only label(s) 'x' in 'label'; a probe needs two classes at least (check probe.label_column)"
    )
    words = _jsonl(tmp_path / "words.jsonl", [{"text": ["a", "b"], "label": ["N", "V"]}])
    unseen = _jsonl(tmp_path / "unseen.jsonl", [{"text": ["c"], "label": ["ADJ"]}])
    with pytest.raises(BertkitError, match=r"unseen.jsonl: label\(s\) 'ADJ' not seen in training \(known: N, V\)"):
        read_probe_data(ProbeConfig(train_file=words, test_file=unseen, level="token"))
