"""bertkit embed and bertkit probe: shapes, offsets, pooling, and a probe that finds a planted signal."""

import json

import numpy as np
import pytest
import torch
from conftest import DATA, ROOT, run_cli

from bertkit.evaluation.features import pool
from bertkit.evaluation.probe import probe_layers

RECIPE = ROOT / "recipes" / "demo-zh.yaml"


def test_pooling():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (B=1, T=3, H=2), last token is padding
    mask = torch.tensor([[1, 1, 0]])
    assert pool(states, mask, "cls").tolist() == [[1.0, 2.0]]
    assert pool(states, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(states, mask, "max").tolist() == [[3.0, 4.0]]


def test_probe_finds_the_layer_that_holds_the_signal():
    rng = np.random.default_rng(0)
    n, hidden, layers = 300, 16, 4
    y = rng.integers(0, 2, size=2 * n)
    features = rng.normal(size=(layers, 2 * n, hidden))
    features[2, :, 0] += 3.0 * (2 * y - 1)  # only layer 2 carries the label
    scores = probe_layers(features[:, :n], list(y[:n]), features[:, n:], list(y[n:]))
    assert int(np.argmax(scores)) == 2 and scores[2] > 0.95
    assert all(s < 0.7 for i, s in enumerate(scores) if i != 2)


def test_embed_per_text_and_per_token(tiny_run, tmp_path):
    out, overrides = tiny_run
    texts = tmp_path / "texts.txt"
    texts.write_text("北京是中国的首都。\nBERT 模型\n", encoding="utf-8")
    common = ["embed", RECIPE, *overrides, f"embed.model_dir={out / 'pretrain'}", f"embed.file={texts}"]
    result = run_cli(*common, f"embed.output_dir={tmp_path / 'sent'}", "embed.layers=[0, -1]")
    assert result.exit_code == 0, result.output
    vectors = np.load(tmp_path / "sent" / "embeddings.npy")
    assert vectors.shape == (2, 64)
    index = [json.loads(line) for line in (tmp_path / "sent" / "index.jsonl").read_text(encoding="utf-8").splitlines()]
    assert index[0] == {"text": 0, "content": "北京是中国的首都。"}
    result = run_cli(*common, f"embed.output_dir={tmp_path / 'tok'}", "embed.pooling=none")
    assert result.exit_code == 0, result.output
    vectors = np.load(tmp_path / "tok" / "embeddings.npy")
    rows = [json.loads(line) for line in (tmp_path / "tok" / "index.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == vectors.shape[0] and rows[0]["token"] == "[CLS]"
    lines = ["北京是中国的首都。", "BERT 模型"]
    for r in rows:  # every token's offsets point at its text
        if r["token"] not in ("[CLS]", "[SEP]", "[UNK]"):
            assert lines[r["text"]][r["start"] : r["end"]].lower() == r["token"].removeprefix("##")
    assert {r["text"] for r in rows} == {0, 1}


def test_embed_runs_in_the_recipes_precision(tiny_run, tmp_path):
    """embed.precision=bf16: the model runs under bf16 autocast (vectors close to fp32's, not equal to them)."""
    out, overrides = tiny_run
    texts = tmp_path / "texts.txt"
    texts.write_text("北京是中国的首都。\n今天天气很好，我们去公园散步吧。\n", encoding="utf-8")
    common = ["embed", RECIPE, *overrides, f"embed.model_dir={out / 'pretrain'}", f"embed.file={texts}"]
    vectors = {}
    for precision in ("no", "bf16"):
        result = run_cli(*common, f"embed.output_dir={tmp_path / precision}", f"embed.precision={precision}")
        assert result.exit_code == 0, result.output
        vectors[precision] = np.load(tmp_path / precision / "embeddings.npy")
    assert vectors["bf16"].dtype == np.float32 and not np.array_equal(vectors["bf16"], vectors["no"])
    cosine = (vectors["bf16"] * vectors["no"]).sum(1) / np.linalg.norm(vectors["bf16"], axis=1)
    assert (cosine / np.linalg.norm(vectors["no"], axis=1) > 0.99).all()


def test_probe_command(tiny_run, tmp_path):
    out, overrides = tiny_run
    result = run_cli(
        "probe",
        RECIPE,
        *overrides,
        f"embed.model_dir={out / 'pretrain'}",
        f"probe.train_file={DATA / 'zh/topic/train.jsonl'}",
        f"probe.test_file={DATA / 'zh/topic/dev.jsonl'}",
        f"probe.output_dir={tmp_path / 'probe'}",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert report["majority_baseline"] == pytest.approx(0.2)
    # Embeddings + 1 layer of the 6-step tiny BERT; 100 test headlines, ±1.
    assert report["accuracy_by_layer"] == pytest.approx([0.57, 0.58], abs=0.011) and report["best_layer"] == 1
    assert (tmp_path / "probe" / "probe.png").stat().st_size > 5000


def test_word_features_take_each_words_first_piece(tiny_run):
    from transformers import BertModel

    from bertkit.config import ProbeRecipe
    from bertkit.evaluation.features import word_features
    from bertkit.tokenizer.train import load_tokenizer

    out, _ = tiny_run
    model = BertModel.from_pretrained(out / "pretrain").eval()
    tokenizer = load_tokenizer(out / "pretrain")
    sentences = [["北京", "unbelievably", "。"], ["BERT", "模型", "很", "好"]]
    features, where = word_features(model, tokenizer, sentences, ProbeRecipe())
    assert where == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert features.shape == (2, 7, 64)  # (embeddings + 1 layer, words, H)
    enc = tokenizer(sentences[0], is_split_into_words=True, return_tensors="pt")
    states = torch.stack(model(**enc, output_hidden_states=True).hidden_states)[:, 0]
    firsts = [enc.word_ids(0).index(w) for w in range(3)]
    assert firsts[1] - firsts[0] == 2  # "北京" is two pieces (北, 京): the first is taken
    np.testing.assert_allclose(features[:, :3], states[:, firsts].detach().numpy(), atol=1e-5)


@pytest.mark.slow
def test_token_level_probe_command(tiny_run, tmp_path):
    out, overrides = tiny_run
    common = [
        "probe",
        RECIPE,
        *overrides,
        f"embed.model_dir={out / 'pretrain'}",
        "probe.level=token",
        "probe.text_column=tokens",
        "probe.label_column=tags",
        f"probe.output_dir={tmp_path / 'probe'}",
    ]
    ner = DATA / "zh" / "ner"
    result = run_cli(*common, f"probe.train_file={ner / 'train.jsonl'}", f"probe.test_file={ner / 'dev.jsonl'}")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert report["level"] == "token"
    # Barely above the majority tag (O, 0.784) at both layers: 1 of 326 words is 0.003.
    assert report["accuracy_by_layer"] == pytest.approx([0.803681, 0.803681], abs=0.0031)
    tags = [
        t for line in (ner / "dev.jsonl").read_text(encoding="utf-8").splitlines() for t in json.loads(line)["tags"]
    ]
    assert report["majority_baseline"] == pytest.approx(tags.count("O") / len(tags))  # one label per word
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tokens": "不是列表", "tags": ["O"]}\n', encoding="utf-8")
    result = run_cli(*common, f"probe.train_file={bad}", f"probe.test_file={ner / 'dev.jsonl'}")
    assert result.exit_code == 2 and "row 1: probe.level=token needs a list of words" in result.output


@pytest.mark.slow
def test_probe_during_pretraining(tiny_run, tmp_path):
    out, overrides = tiny_run
    result = run_cli(
        "pretrain",
        RECIPE,
        *overrides,
        f"output_dir={tmp_path}",
        f"data.dataset_dir={out / 'data'}",
        "probe.during_pretraining=true",
        f"probe.train_file={DATA / 'zh/topic/train.jsonl'}",
        f"probe.test_file={DATA / 'zh/topic/dev.jsonl'}",
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    probed = [r for r in records if "eval/probe/layer_0" in r]
    assert [r["step"] for r in probed] == [3, 6]
    # The final probe is the probe command's on the final model (test_probe_command), ±1 headline …
    assert [probed[-1]["eval/probe/layer_0"], probed[-1]["eval/probe/layer_1"]] == pytest.approx(
        [0.57, 0.58], abs=0.011
    )
    assert [probed[0]["eval/probe/layer_0"], probed[0]["eval/probe/layer_1"]] == pytest.approx([0.59, 0.59], abs=0.011)
    # … and probing changes nothing in training: the tiny run's losses and evaluations, number for number.
    tiny = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    keys = ("step", "loss", "eval/mlm_loss", "eval/nsp_accuracy")
    assert [{k: r[k] for k in keys if k in r} for r in records] == [{k: r[k] for k in keys if k in r} for r in tiny]
    assert (tmp_path / "pretrain" / "probe-during-pretraining.png").stat().st_size > 5000
    result = run_cli("pretrain", RECIPE, *overrides, f"output_dir={tmp_path / 'x'}", "probe.during_pretraining=true")
    assert result.exit_code == 2 and "needs probe.train_file" in result.output


def test_length_grouped_batches_keep_each_texts_vectors_in_order(tiny_run):
    """Texts are batched longest first; every vector is still its own text's, at its text's place."""
    from transformers import BertModel

    from bertkit.evaluation.features import embed_texts
    from bertkit.tokenizer.train import load_tokenizer

    out, _ = tiny_run
    model = BertModel.from_pretrained(out / "pretrain").eval()
    tokenizer = load_tokenizer(out / "pretrain")
    texts = ["短", "北京是中国的首都，也是一座很大的城市。", "模型", "今天天气很好。", "好"]
    pooled, index = embed_texts(model, tokenizer, texts, [-1], "mean", batch_size=2)
    alone = np.concatenate([embed_texts(model, tokenizer, [t], [-1], "mean")[0] for t in texts])
    np.testing.assert_allclose(pooled, alone, atol=1e-5)
    assert index == [{"text": i} for i in range(5)]
    tokens, rows = embed_texts(model, tokenizer, texts, [-1], "none", batch_size=2)
    assert [r["text"] for r in rows] == sorted(r["text"] for r in rows) and len(rows) == len(tokens)
    assert "".join(r["token"] for r in rows if r["text"] == 2 and r["token"] not in ("[CLS]", "[SEP]")) == "模型"


def test_a_text_files_lines_end_at_newlines_only(tmp_path):
    """U+2028, U+0085 and \\x1c are characters of a line, not its end: embed's rows match the file's lines."""
    from bertkit.commands.embed import read_texts

    path = tmp_path / "texts.txt"
    path.write_bytes("一\u2028二\r\n\n三\x85四\x1c五\n".encode())
    assert read_texts(path, "text") == ["一\u2028二", "三\x85四\x1c五"]
