"""run_tokenize end to end: objectives, determinism across worker counts, whole words on disk, bad input."""

import json
import os
import subprocess
import sys

import pytest
from conftest import DATA, RECIPE, ROOT, recipe_edits, run_cli
from datasets import load_from_disk
from transformers import BertTokenizerFast

import bertkit.commands.tokenize as prepare
from bertkit.config import load_recipe
from bertkit.errors import BertkitError

ZH = [str(DATA / "zh" / "corpus-a.txt"), str(DATA / "zh" / "corpus-b.txt")]


def _cfg(tmp_path, *extra):
    return load_recipe(
        RECIPE,
        [f"output_dir={tmp_path}", "tokenizer.vocab_size=1500", "data.max_seq_length=64", "data.dupe_factor=1", *extra],
        "tokenize",
    )


def _columns(path):
    splits = load_from_disk(str(path))
    return {name: split.to_dict() for name, split in splits.items()}


@pytest.mark.slow
def test_same_output_whatever_num_proc(tmp_path):
    outputs = []
    for n in (1, 2):
        reuse = [f"tokenizer.from_dir={tmp_path / 'p1' / 'tokenizer'}"] if n > 1 else []
        # 20 kB chunks: several from the small sample
        cfg = _cfg(tmp_path / f"p{n}", f"data.num_proc={n}", "data.chunk_kb=20", *reuse)
        _, dataset_dir = prepare.run_tokenize(cfg)
        outputs.append((_columns(dataset_dir), json.loads((dataset_dir / "statistics.json").read_text())))
    assert outputs[0] == outputs[1]
    assert outputs[0][1]["train"]["examples"] > 100


_TRAIN_ONE = """
import sys
from pathlib import Path
from bertkit.config.sections import TokenizerConfig
from bertkit.tokenizer.train import save_tokenizer, train_wordpiece
lines = [s for p in sys.argv[2:] for s in Path(p).read_text(encoding="utf-8").split("\\n") if s.strip()]
cfg = TokenizerConfig(vocab_size=3000, limit_alphabet=400)
save_tokenizer(train_wordpiece(lambda: lines, cfg), Path(sys.argv[1]))
"""


def test_same_vocabulary_in_every_process(tmp_path):
    """The `tokenizers` trainer breaks ties in hash-map order, seeded per process (huggingface/tokenizers #1794):
    before train_wordpiece fixed the order, six processes gave six different English vocabularies. The limit on
    the alphabet has ties too (Chinese characters seen once or twice)."""
    from bertkit.tokenizer.train import SPECIAL_TOKENS, _vocab_order

    corpus = [str(DATA / "en" / "corpus.txt"), *ZH]
    runs = [subprocess.Popen([sys.executable, "-c", _TRAIN_ONE, str(tmp_path / str(i)), *corpus]) for i in range(5)]
    assert [run.wait(timeout=300) for run in runs] == [0] * 5
    vocabs = {(tmp_path / str(i) / "vocab.txt").read_bytes() for i in range(5)}
    assert len(vocabs) == 1
    tokens = vocabs.pop().decode().split("\n")[:-1]
    assert len(tokens) == 3000 and tokens[:5] == SPECIAL_TOKENS and tokens[5:] == sorted(tokens[5:], key=_vocab_order)
    assert sum(len(t) == 1 for t in tokens) == 400  # the alphabet's limit held


def test_whole_chinese_words_share_an_id_on_disk(tmp_path):
    _, dataset_dir = prepare.run_tokenize(_cfg(tmp_path, f"data.files={ZH[0]}"))
    tok = BertTokenizerFast.from_pretrained(dataset_dir / "tokenizer")
    example = load_from_disk(str(dataset_dir))["train"][0]
    groups: dict[int, str] = {}
    for token, word in zip(tok.convert_ids_to_tokens(example["input_ids"]), example["word_ids"], strict=True):
        if word >= 0:
            groups[word] = groups.get(word, "") + token.removeprefix("##")
    assert sorted(groups) == list(range(len(groups)))
    assert sum(len(g) >= 2 and "\u4e00" <= g[0] <= "\u9fff" for g in groups.values()) >= 5  # multi-character words


def test_user_dictionary_keeps_domain_words_whole(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("我们研究自然语言处理。\n它很有趣。\n\n自然语言处理很难。\n但是值得。\n", encoding="utf-8")
    user_dict = tmp_path / "dict.txt"
    user_dict.write_text("自然语言处理 10 n\n", encoding="utf-8")
    cfg = _cfg(
        tmp_path,
        f"data.files={corpus}",
        f"tokenizer.user_dict={user_dict}",
        "tokenizer.min_frequency=1",
        "data.validation_fraction=0",
        "data.num_proc=1",
    )
    _, dataset_dir = prepare.run_tokenize(cfg)
    tok = BertTokenizerFast.from_pretrained(dataset_dir / "tokenizer")
    found = False
    for example in load_from_disk(str(dataset_dir))["train"]:
        tokens = tok.convert_ids_to_tokens(example["input_ids"])
        if "自" in tokens:
            start = tokens.index("自")
            assert len(set(example["word_ids"][start : start + 6])) == 1
            found = True
    assert found


@pytest.mark.parametrize("objective,label", [("sop", True), ("packed", False)])
def test_objectives_write_their_columns(tmp_path, objective, label):
    _, dataset_dir = prepare.run_tokenize(_cfg(tmp_path, f"data.objective={objective}", f"data.files={ZH[0]}"))
    train = load_from_disk(str(dataset_dir))["train"]
    assert ("next_sentence_label" in train.column_names) == label
    assert json.loads((dataset_dir / "bertkit_data.json").read_text())["objective"] == objective
    if objective == "packed":
        stats = json.loads((dataset_dir / "statistics.json").read_text())
        assert stats["train"]["padding_fraction"] < 0.02  # dense rows


def test_bad_corpus_input_through_the_cli(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(open(ZH[0], "rb").read() + b"\n\xff\xfe\n")
    result = run_cli("tokenize", RECIPE, f"output_dir={tmp_path / 'o'}", f"data.files={bad}", "data.max_seq_length=64")
    assert result.exit_code == 0, result.output
    assert f"skipped 1 lines (not UTF-8: 1); first at {bad}:" in result.output
    result = run_cli(
        "tokenize",
        RECIPE,
        f"output_dir={tmp_path / 'o'}",
        f"data.files={bad}",
        "data.on_error=strict",
        "overwrite=true",
    )
    assert result.exit_code == 2 and "not UTF-8" in result.stderr
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(BertkitError, match="corpus holds no text"):
        prepare.run_tokenize(_cfg(tmp_path, f"data.files={tmp_path / 'empty.txt'}"))
    assert not (tmp_path / "tokenizer").exists()  # nothing written for an unusable corpus


def test_vocabulary_sample_stops_at_its_size(tmp_path):
    cfg = _cfg(tmp_path, "tokenizer.train_sample_mb=0.01")  # 10 kB of a 130 kB corpus
    from bertkit.data.corpus import resolve_files

    sampled = list(prepare._training_sentences(resolve_files(cfg.data.files), cfg))
    size = sum(len(s.encode()) for s in sampled)
    assert 10_000 <= size < 12_000 and sampled[0] == open(ZH[0], encoding="utf-8").readline().strip()


def test_a_vocab_only_tokenizer_gets_the_models_length(tiny_run, tmp_path):
    """A release dir with only vocab.txt has no model_max_length (transformers says 1e30); the saved tokenizer
    takes model.max_position_embeddings instead, as a trained one does."""
    release = tmp_path / "release"
    release.mkdir()
    (release / "vocab.txt").write_bytes((tiny_run[0] / "pretrain" / "vocab.txt").read_bytes())
    args = [RECIPE, *tiny_run[1], *recipe_edits([f"output_dir={tmp_path}", f"tokenizer.from_dir={release}"])]
    result = run_cli("tokenize", *args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "tokenizer" / "tokenizer_config.json").read_text())
    assert saved["model_max_length"] == 64  # the tiny run's model.max_position_embeddings


def test_two_ranks_write_shards_equal_to_one_process(tmp_path, tiny_run):
    """torchrun with 2 processes: each encodes a consecutive share of the chunks into its own shard of the
    output (saved as one file per rank); loaded, the examples and statistics are one process's."""
    fixed = [f"tokenizer.from_dir={tiny_run[0] / 'tokenizer'}", "data.chunk_kb=20", "data.num_proc=1"]
    common = [str(RECIPE), *fixed, "data.max_seq_length=64", "data.dupe_factor=1", f"data.files=[{ZH[0]},{ZH[1]}]"]
    assert run_cli("tokenize", *common, f"output_dir={tmp_path / 'one'}").exit_code == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "bertkit", "tokenize"]
    proc = subprocess.run(
        [*cmd, *common, f"output_dir={tmp_path / 'two'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = sorted(p.name for p in (tmp_path / "two" / "data" / "train").glob("*.arrow"))
    assert shards == ["data-00000-of-00002.arrow", "data-00001-of-00002.arrow"]
    one, two = (_columns(tmp_path / name / "data") for name in ("one", "two"))
    assert one == two and len(one["train"]["input_ids"]) > 100
    stats = [json.loads((tmp_path / name / "data" / "statistics.json").read_text()) for name in ("one", "two")]
    assert stats[0] == stats[1]
    vocab = [(tmp_path / name / "tokenizer" / "vocab.txt").read_text() for name in ("one", "two")]
    assert vocab[0] == vocab[1]


def test_world_size_without_a_launcher_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    result = run_cli("tokenize", RECIPE, f"output_dir={tmp_path / 'o'}", "data.max_seq_length=64")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "WORLD_SIZE=2 is set but MASTER_ADDR" in errors[0] and "torchrun" in errors[0]
    assert not (tmp_path / "o").exists()
