"""ELECTRA pretraining (model.objective=electra): the loss against a hand computation, shared embeddings, the
saved layout and what loads it, continued pretraining, exact resume, and the commands on its output."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from conftest import RECIPE, SMALL, recipe_edits, run_cli
from safetensors.torch import load_file
from transformers import BertForSequenceClassification, BertModel, ElectraForMaskedLM

from bertkit.config.sections import MaskingConfig, ModelConfig
from bertkit.data.masking import PretrainingCollator
from bertkit.data.padding import IGNORE_INDEX
from bertkit.modeling.electra import GENERATOR_SUBDIR, HEAD_FILE, electra_objective, generator_config
from bertkit.modeling.model import bert_config, build_pretraining_model

ELECTRA = recipe_edits(
    ["model.objective=electra", "model.hidden_dropout_prob=0", "model.attention_probs_dropout_prob=0"]
)
TINY = ModelConfig(objective="electra", hidden_size=64, num_hidden_layers=2, max_position_embeddings=64)


def _batch(tokenizer, pack_to=None):
    """Two sentence pairs of different lengths, padded (or packed), masked at 30%."""
    rows = [[2, *range(10, 10 + n), 3, *range(200, 200 + m), 3] for n, m in ((5, 9), (17, 12))]
    examples = [
        {
            "input_ids": r,
            "token_type_ids": [0] * (len(r) - m - 1) + [1] * (m + 1),
            "word_ids": [-1 if t in (2, 3) else i for i, t in enumerate(r)],
            "next_sentence_label": i % 2,
            "mask_seed": i,
        }
        for i, (r, m) in enumerate(zip(rows, (9, 12), strict=True))
    ]
    return PretrainingCollator(tokenizer, MaskingConfig(rate=0.3), pack_to=pack_to)(examples)


@pytest.mark.parametrize(
    "hidden,share,expected",
    [(128, 0.25, (32, 1, 128)), (768, 0.25, (192, 3, 768)), (800, 0.25, (201, 3, 804)), (64, 0.001, (1, 1, 4))],
)
def test_generator_size(tokenizer, hidden, share, expected):
    """H·share, heads max(1, H/64), H rounded to a multiple of them, FFN 4H; the layers and the embedding width
    are the discriminator's."""
    bert = bert_config(ModelConfig(hidden_size=hidden, num_attention_heads=1, num_hidden_layers=3), tokenizer)
    g = generator_config(bert, share)
    assert (g.hidden_size, g.num_attention_heads, g.intermediate_size) == expected
    assert (g.num_hidden_layers, g.embedding_size, g.vocab_size) == (3, hidden, len(tokenizer))


def test_loss_equals_a_hand_computation(tokenizer):
    """Generator CE on the masked positions, Gumbel-max samples from torch's RNG, BCE of the discriminator over
    the real tokens ([CLS]/[SEP] included), loss = MLM + 50·BCE: recomputed from the modules' own weights."""
    torch.manual_seed(0)
    objective = electra_objective(TINY, tokenizer).eval()  # eval: no dropout, the sampler the only randomness
    batch = _batch(tokenizer)
    torch.manual_seed(1)
    out = objective(**batch)

    generator, discriminator, head = objective.generator, objective.discriminator, objective.head
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    with torch.no_grad():
        logits = generator(input_ids=ids, attention_mask=mask, token_type_ids=batch["token_type_ids"]).logits
        mlm = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=IGNORE_INDEX)
        predicted = labels != IGNORE_INDEX
        torch.manual_seed(1)
        noise = -torch.log(-torch.log(torch.rand(int(predicted.sum()), logits.size(-1)) + 1e-9) + 1e-9)
        samples = (logits[predicted] + noise).argmax(-1)
        original = torch.where(predicted, labels, ids)
        corrupted = original.clone()
        corrupted[predicted] = samples
        hidden = discriminator(input_ids=corrupted, attention_mask=mask, token_type_ids=batch["token_type_ids"])
        h = F.gelu(F.linear(hidden.last_hidden_state, head.dense.weight, head.dense.bias))
        rtd_logits = F.linear(h, head.dense_prediction.weight, head.dense_prediction.bias).squeeze(-1)
        replaced = (corrupted != original).float()
        bce = (F.binary_cross_entropy_with_logits(rtd_logits, replaced, reduction="none") * mask).sum() / mask.sum()

    assert 0 < replaced.sum() <= predicted.sum()  # some sampled tokens differ from the original
    assert out["mlm_loss"].item() == pytest.approx(mlm.item(), rel=1e-5)
    assert out["rtd_loss"].item() == pytest.approx(bce.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(mlm.item() + 50 * bce.item(), rel=1e-5)
    assert torch.equal(out["rtd_labels"], replaced[mask.bool()].bool())
    assert int(out["rtd_mask"].sum()) == int(mask.sum())  # every real token, [CLS] and [SEP] too
    # No NSP: the data's labels went unused.
    assert "nsp_loss" not in out


def test_packed_rows_score_the_same_tokens(tokenizer):
    """Packed rows (block-diagonal attention, [PAD] filling the rows' ends): the generator's loss as unpacked
    and the same real tokens judged."""
    torch.manual_seed(0)
    objective = electra_objective(TINY, tokenizer).eval()
    padded, packed = objective(**_batch(tokenizer)), objective(**_batch(tokenizer, pack_to=64))
    assert packed["mlm_loss"].item() == pytest.approx(padded["mlm_loss"].item(), rel=1e-5)
    assert int(packed["rtd_mask"].sum()) == int(padded["rtd_mask"].sum())


def test_embeddings_are_one_module_and_train_from_both_losses(tokenizer):
    torch.manual_seed(0)
    objective = electra_objective(TINY, tokenizer)
    generator, discriminator = objective.generator, objective.discriminator
    assert generator.electra.embeddings is discriminator.embeddings
    words = discriminator.embeddings.word_embeddings.weight
    assert generator.generator_lm_head.weight is words  # the generator decodes with the shared words
    assert sum(p is words for p in objective.parameters()) == 1  # the optimizer sees it once
    # The discriminator's loss alone reaches the shared embeddings (through the corrupted input) …
    objective(**_batch(tokenizer))["rtd_loss"].backward()
    assert discriminator.embeddings.position_embeddings.weight.grad.abs().sum() > 0
    # … and a step moves both views.
    before = words.detach().clone()
    optimizer = torch.optim.SGD(objective.parameters(), lr=1.0)
    optimizer.zero_grad()
    objective(**_batch(tokenizer))["loss"].backward()
    optimizer.step()
    assert not torch.equal(before, words)
    assert torch.equal(generator.electra.embeddings.word_embeddings.weight, words)


def test_saved_parts_load_with_transformers_and_restore(tokenizer, tmp_path):
    torch.manual_seed(0)
    objective = electra_objective(TINY, tokenizer).eval()
    objective.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertModel"]
    batch = _batch(tokenizer)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        expected = objective.discriminator(**inputs).last_hidden_state
        loaded = BertModel.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(loaded(**inputs).last_hidden_state, expected, rtol=0, atol=0)
        _, info = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=3, output_loading_info=True)
        assert all(k.startswith(("bert.pooler.", "classifier.")) for k in info["missing_keys"])  # every encoder weight
        generator = ElectraForMaskedLM.from_pretrained(tmp_path / GENERATOR_SUBDIR).eval()
        torch.testing.assert_close(generator(**inputs).logits, objective.generator(**inputs).logits, rtol=0, atol=0)
    assert set(load_file(tmp_path / HEAD_FILE)) == {
        f"{n}.{p}" for n in ("dense", "dense_prediction") for p in ("weight", "bias")
    }
    # model.init_from an ELECTRA output: all three parts as saved; the same loss for the same draws.
    restored = electra_objective(TINY.model_copy(update={"init_from": tmp_path}), tokenizer).eval()
    assert restored.generator.electra.embeddings is restored.discriminator.embeddings
    torch.manual_seed(3)
    a = objective(**batch)
    torch.manual_seed(3)
    b = restored(**batch)
    assert b["loss"].item() == pytest.approx(a["loss"].item(), rel=1e-6)


def test_init_from_a_bert_gives_its_encoder_a_fresh_generator(tokenizer, tmp_path):
    torch.manual_seed(0)
    bert = build_pretraining_model(ModelConfig(hidden_size=64, num_hidden_layers=2), tokenizer)
    bert.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    objective = electra_objective(TINY.model_copy(update={"init_from": tmp_path}), tokenizer)
    ours = objective.discriminator.state_dict()
    assert ours and all(torch.equal(v, bert.bert.state_dict()[k]) for k, v in ours.items())
    assert objective.generator.config.hidden_size == 16  # 0.25 of 64, built afresh


@pytest.mark.parametrize(
    "override,expected",
    [
        ("model.generator_size=0", "model.generator_size: Input should be greater than 0"),
        ("model.generator_size=1.5", "model.generator_size: Input should be less than or equal to 1"),
        ("model.discriminator_weight=0", "model.discriminator_weight: Input should be greater than 0"),
    ],
)
def test_bad_settings_are_one_line(override, expected, tmp_path):
    result = run_cli("pretrain", RECIPE, f"output_dir={tmp_path}", "model.objective=electra", override)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert expected in result.stderr


def test_electra_keys_under_mlm_are_an_error(tmp_path):
    result = run_cli("pretrain", RECIPE, f"output_dir={tmp_path}", "model.generator_size=0.5")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: command line: model.generator_size is for model.objective=electra; remove it, or set "
        "model.objective=electra"
    ]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("electra")
    assert run_cli("tokenize", RECIPE, f"output_dir={out}", *SMALL).exit_code == 0
    return out / "data"


def _pretrain(out, data_dir, *extra):
    result = run_cli("pretrain", RECIPE, f"output_dir={out}", f"data.dataset_dir={data_dir}", *SMALL, *ELECTRA, *extra)
    assert result.exit_code == 0, result.output
    return result.output


def _log(out):
    return [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]


STEPS = ("train.max_steps=6", "train.save_every=3", "train.batch_size=8", "train.eval_every=3")


@pytest.fixture(scope="module")
def electra_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, _pretrain(out, data_dir, *STEPS)


def test_pretrain_writes_a_bert_and_the_generator(electra_run):
    out, output = electra_run
    model_dir = out / "pretrain"
    assert "ELECTRA (replaced-token detection + generator MLM)" in output
    assert "leaves the data's sentence-pair labels unused" in output  # NSP data: one note
    for directory in (model_dir, model_dir / "checkpoints" / "step-3"):
        assert (directory / GENERATOR_SUBDIR / "config.json").is_file() and (directory / HEAD_FILE).is_file()
    log = _log(out)
    train = [r for r in log if "loss" in r]
    assert all(r["loss"] == pytest.approx(r["mlm_loss"] + 50 * r["rtd_loss"], rel=1e-5) for r in train)
    evals = [r for r in log if "eval/rtd_accuracy" in r]
    assert [r["step"] for r in evals] == [3, 6]
    assert 0.5 < evals[-1]["eval/rtd_accuracy"] <= 1 and "eval/mlm_accuracy" in evals[-1]
    card = (model_dir / "README.md").read_text()
    assert "Objective: ELECTRA's replaced-token detection" in card and "pipeline_tag: feature-extraction" in card
    assert "rtd_accuracy" in card


def test_eval_of_the_pretrain_dir_scores_generator_and_discriminator(electra_run, data_dir, tmp_path):
    out, _ = electra_run
    data = (f"output_dir={out}", f"eval.file={data_dir}")
    result = run_cli("eval", RECIPE, *data, f"eval.model_dir={out / 'pretrain'}", f"eval.output_dir={tmp_path}")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    last = [r for r in _log(out) if "eval/rtd_accuracy" in r][-1]
    for key in ("rtd_accuracy", "rtd_f1", "mlm_loss", "masked_tokens"):  # seeded draws: pretraining's last eval
        assert report[key] == pytest.approx(last[f"eval/{key}"], rel=1e-6)
    # Without its generator the dir is an encoder alone: said in one line.
    bare = tmp_path / "bare"
    shutil.copytree(out / "pretrain", bare, ignore=shutil.ignore_patterns("generator", "checkpoints"))
    result = run_cli("eval", RECIPE, *data, f"eval.model_dir={bare}", f"eval.output_dir={tmp_path / 'e'}")
    assert result.exit_code == 2 and "a BertModel, an encoder without a head" in result.stderr


def test_resuming_with_the_other_objective_is_an_error(electra_run, data_dir):
    out, _ = electra_run
    result = run_cli(
        "pretrain", RECIPE, f"output_dir={out}", f"data.dataset_dir={data_dir}", *SMALL, *STEPS, "train.resume=auto"
    )
    assert result.exit_code == 2
    assert "a checkpoint of model.objective=electra, resumed with model.objective=mlm" in result.stderr


@pytest.mark.slow
def test_resume_after_a_crash_equals_an_uninterrupted_run(electra_run, data_dir, tmp_path):
    straight, _ = electra_run
    crashed = tmp_path / "crashed"
    shutil.copytree(straight / "pretrain", crashed / "pretrain", symlinks=True)
    # What a run killed between steps 3 and 6 leaves: checkpoint step-3, no final model.
    shutil.rmtree(crashed / "pretrain" / "checkpoints" / "step-6")
    (crashed / "pretrain" / "model.safetensors").unlink()
    output = _pretrain(crashed, data_dir, *STEPS, "train.resume=auto")
    assert "resuming from" in output and "step-3" in output

    def curve(out):
        return {(r["step"], k): r[k] for r in _log(out) if "loss" in r for k in ("loss", "mlm_loss", "rtd_loss")}

    assert len(curve(crashed)) == 18 and curve(crashed) == pytest.approx(curve(straight), rel=1e-6)
    for name in ("model.safetensors", f"{GENERATOR_SUBDIR}/model.safetensors", HEAD_FILE):
        a, b = load_file(straight / "pretrain" / name), load_file(crashed / "pretrain" / name)
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_finetune_and_eval_from_the_electra_output(electra_run, tmp_path):
    out, _ = electra_run
    task = [f"finetune.model_dir={out / 'pretrain'}", "finetune.train.epochs=1", "finetune.task.max_seq_length=32"]
    common = (f"output_dir={tmp_path}", *recipe_edits(task))
    result = run_cli("finetune", RECIPE, *common)
    assert result.exit_code == 0, result.output
    result = run_cli("eval", RECIPE, *common)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "topic" / "report.json").read_text())
    assert report["examples"] == 100 and 0 <= report["accuracy"] <= 1


@pytest.mark.slow
def test_continued_pretraining_from_an_electra_output(electra_run, data_dir, tmp_path):
    out, _ = electra_run
    _pretrain(tmp_path, data_dir, "train.max_steps=1", f"model.init_from={out / 'pretrain'}")
    first = [r for r in _log(tmp_path) if "loss" in r][0]
    fresh = [r for r in _log(out) if "loss" in r][0]
    assert first["mlm_loss"] < fresh["mlm_loss"]  # the trained generator, not a fresh one


@pytest.mark.slow
def test_export_of_the_discriminator_has_no_random_pooler(electra_run, tmp_path):
    out, _ = electra_run
    result = run_cli(
        "export", RECIPE, f"output_dir={out}", f"export.model_dir={out / 'pretrain'}", f"export.output_dir={tmp_path}"
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "export.json").read_text())["outputs"] == ["last_hidden_state"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings",
    [
        ("train.precision=bf16",),
        ("train.packed_attention=varlen", "train.gradient_checkpointing=true"),
    ],
)
def test_mixed_precision_varlen_and_checkpointing_train_as_fp32(electra_run, data_dir, tmp_path, settings):
    """bf16 autocast, varlen packing and recomputed layers: step 1's generator loss as the fp32 run's (before any
    update, and before any sample can differ); the run ends with a model."""
    out, _ = electra_run
    _pretrain(tmp_path, data_dir, "train.max_steps=2", *STEPS[1:], *settings)
    first, fp32 = [r for r in _log(tmp_path) if "loss" in r][0], [r for r in _log(out) if "loss" in r][0]
    assert first["mlm_loss"] == pytest.approx(fp32["mlm_loss"], rel=1e-2 if "bf16" in settings[0] else 1e-5)
    assert (tmp_path / "pretrain" / "model.safetensors").is_file()
