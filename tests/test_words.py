from bertkit.tokenizer.words import encode_with_words, segmenter


def _groups(tokenizer, text, name="rjieba"):
    """The text's words as the tokenizer + segmenter see them (## pieces joined)."""
    ids, starts = encode_with_words(tokenizer, [text], segmenter(name))
    assert len(starts[0]) == len(ids[0]) and starts[0][0] == 1
    groups: list[str] = []
    for token, begins in zip(tokenizer.convert_ids_to_tokens(ids[0]), starts[0], strict=True):
        piece = token.removeprefix("##")
        if begins:
            groups.append(piece)
        else:
            groups[-1] += piece
    return groups


def test_chinese_multi_character_words_share_an_id(tokenizer):
    assert _groups(tokenizer, "北京是中国的首都。") == ["北京", "是", "中国", "的", "首都", "。"]


def test_without_segmenter_each_chinese_character_is_a_word(tokenizer):
    assert _groups(tokenizer, "北京是首都", "none") == ["北", "京", "是", "首", "都"]
    assert _groups(tokenizer, "Superconductivity works", "none") == ["superconductivity", "works"]


def test_english_pieces_of_a_word_share_an_id(tokenizer):
    ids, starts = encode_with_words(tokenizer, ["Superconductivity isn't simple."], segmenter("rjieba"))
    tokens = tokenizer.convert_ids_to_tokens(ids[0])
    assert tokens[1].startswith("##")  # the word is split into pieces …
    assert [s for t, s in zip(tokens, starts[0], strict=True) if t.startswith("##")] == [0] * sum(
        t.startswith("##") for t in tokens
    )  # … and no ## piece begins a word
    assert _groups(tokenizer, "Superconductivity isn't simple.") == [
        "superconductivity",
        "isn",
        "'",
        "t",
        "simple",
        ".",
    ]


def test_mixed_text_numbers_and_punctuation(tokenizer):
    groups = _groups(tokenizer, "2023年，BERT模型发布了。")
    # lower-cased; a number and an English word are one word however they are split into pieces
    assert groups == ["2023", "年", "，", "bert", "模型", "发布", "了", "。"]


def test_batches_keep_texts_apart(tokenizer):
    texts = ["北京是首都。", "首都北京。", "", "Tokenization"]
    ids, starts = encode_with_words(tokenizer, texts, segmenter("rjieba"))
    assert [len(s) for s in starts] == [len(i) for i in ids]
    assert all(s[0] == 1 for s in starts if s)  # every text begins with a new word
    assert ids[2] == [] and starts[2] == []
    assert ids[:2] == [encode_with_words(tokenizer, [t], segmenter("rjieba"))[0][0] for t in texts[:2]]
