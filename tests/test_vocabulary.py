"""A released vocabulary extended with domain words: old ids and outputs unchanged, new words one token each,
their embeddings the mean of the pieces they replace; then continued pretraining through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import DATA, RECIPE, recipe_edits, run_cli
from transformers import BertConfig, BertForPreTraining

from bertkit.config.loading import load_recipe
from bertkit.errors import BertkitError
from bertkit.tokenizer.train import load_tokenizer
from bertkit.tokenizer.vocabulary import add_words, extend_embeddings, extends, frequent_split_words

OLD_TEXT = ["北京是中国的首都。", "Tokenization matters."]


def test_old_text_keeps_its_ids_and_new_words_are_one_token(tokenizer):
    new = add_words(tokenizer, ["首都机场", "pembrolizumab", "的"])  # 的 is one token already: not added
    assert extends(tokenizer, new) and len(new) == len(tokenizer) + 2
    for text in OLD_TEXT:
        assert new(text)["input_ids"] == tokenizer(text)["input_ids"]
    ids = new("去首都机场的路")["input_ids"]
    assert new.convert_ids_to_tokens(ids) == ["[CLS]", "去", "首都机场", "的", "路", "[SEP]"]
    assert new.tokenize("Pembrolizumab")[0] == "pembrolizumab"  # lower-cased like the rest
    assert "pembrolizumab" not in new.tokenize("pembrolizumabs")  # an English word matches only whole


def test_new_rows_are_the_mean_of_their_pieces_and_old_outputs_are_unchanged(tokenizer):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    model = BertForPreTraining(config).eval()
    ids = torch.tensor([tokenizer(OLD_TEXT[0])["input_ids"]])
    with torch.no_grad():
        before = model(input_ids=ids).prediction_logits
    new = add_words(tokenizer, ["首都机场"])
    assert extend_embeddings(model, tokenizer, new) == 1
    with torch.no_grad():
        after = model(input_ids=ids).prediction_logits
    torch.testing.assert_close(after[..., : len(tokenizer)], before, rtol=0, atol=0)
    pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("首都机场"))
    word = new.convert_tokens_to_ids("首都机场")
    embeddings = model.get_input_embeddings().weight
    torch.testing.assert_close(embeddings[word], embeddings[pieces].mean(0))
    torch.testing.assert_close(model.cls.predictions.bias[word], model.cls.predictions.bias[pieces].mean())
    assert model.get_output_embeddings().weight.shape[0] == len(new)  # the tied decoder grew too


def test_frequent_split_words_are_the_corpus_words_the_vocabulary_splits(tokenizer):
    sentences = ["阿司匹林和布洛芬", "阿司匹林的剂量", "布洛芬", "阿司匹林"]

    def cut(s):
        return {"阿司匹林和布洛芬": ["阿司匹林", "和", "布洛芬"], "阿司匹林的剂量": ["阿司匹林", "的", "剂量"]}.get(
            s, [s]
        )

    assert frequent_split_words(tokenizer, sentences, cut, n=5, min_count=2) == ["阿司匹林", "布洛芬"]
    assert frequent_split_words(tokenizer, sentences, cut, n=1, min_count=2) == ["阿司匹林"]


def test_tokenize_and_continue_pretraining_with_an_extended_vocabulary(tiny_run, tmp_path):
    released = tiny_run[0] / "pretrain"
    words = tmp_path / "words.txt"
    words.write_text("人民代表大会\n\n", encoding="utf-8")
    args = [
        RECIPE,
        *tiny_run[1],
        *recipe_edits(
            [
                f"output_dir={tmp_path}",
                f"tokenizer.from_dir={released}",
                "tokenizer.add_words=[中华人民共和国]",
                f"tokenizer.add_words_file={words}",
                "tokenizer.add_frequent_words=3",
                f"data.files={DATA / 'zh' / 'corpus-a.txt'}",
            ]
        ),
    ]
    result = run_cli("tokenize", *args)
    assert result.exit_code == 0, result.output
    assert "vocabulary extended by 5 words" in result.output
    old, new = load_tokenizer(released), load_tokenizer(tmp_path / "tokenizer")
    assert extends(old, new) and len(new) == len(old) + 5
    assert new.tokenize("中华人民共和国人民代表大会") == ["中华人民共和国", "人民代表大会"]
    result = run_cli("pretrain", *args, f"model.init_from={released}", "train.max_steps=1")
    assert result.exit_code == 0, result.output
    assert "5 tokens added to its vocabulary" in result.output
    config = json.loads((tmp_path / "pretrain" / "config.json").read_text())
    assert config["vocab_size"] == len(new)
    assert BertForPreTraining.from_pretrained(tmp_path / "pretrain").get_input_embeddings().num_embeddings == len(new)


def test_a_word_with_a_space_is_refused_with_the_reason():
    """The tokenizer splits text at whitespace before it matches tokens: "a b" could never match."""
    assert load_recipe(None, ["tokenizer.add_words=[' 首都机场 ', pembrolizumab]"], "tokenize").tokenizer.add_words
    with pytest.raises(BertkitError) as error:
        load_recipe(None, ["tokenizer.add_words=[ok, 'a b']"], "tokenize")
    assert str(error.value).startswith(
        "command line: tokenizer.add_words: 'a b' holds whitespace; a vocabulary entry is one word without spaces"
    )


def test_a_word_file_line_with_a_space_is_refused_naming_the_line(tokenizer, tmp_path):
    from bertkit.commands.tokenize import _extended

    words = tmp_path / "words.txt"
    words.write_text("首都机场\r\n\nNew York\n", encoding="utf-8")
    cfg = load_recipe(None, [f"tokenizer.add_words_file={words}"], "tokenize")
    with pytest.raises(BertkitError) as error:
        _extended(tokenizer, [], cfg)
    assert str(error.value) == (
        f"{words}:3: 'New York' holds whitespace; a vocabulary entry is one word without spaces, one a line"
    )


def test_a_released_tokenizer_that_pads_and_truncates_is_read_unpadded(tiny_run, tmp_path):
    """sentence-transformers' tokenizer.json pads every text to 128 and truncates: tokenize once read every
    sentence as its tokens followed by [PAD]s (examples all padding, MLM accuracy 0.98 on predicting [PAD])."""
    import shutil

    from datasets import load_from_disk

    released = tmp_path / "released"
    shutil.copytree(tiny_run[0] / "pretrain", released)
    spec = json.loads((released / "tokenizer.json").read_text())
    spec["padding"] = {
        "strategy": {"Fixed": 128},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }
    spec["truncation"] = {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0}
    (released / "tokenizer.json").write_text(json.dumps(spec))
    result = run_cli(
        "tokenize", RECIPE, *tiny_run[1], *recipe_edits([f"output_dir={tmp_path}", f"tokenizer.from_dir={released}"])
    )
    assert result.exit_code == 0, result.output
    pad = load_tokenizer(released).pad_token_id
    rows = load_from_disk(str(tmp_path / "data"))["train"]["input_ids"]
    assert rows and not any(pad in ids for ids in rows)
