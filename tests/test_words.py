from bertkit.tokenizer.words import encode_with_words, segmenter


def _groups(tokenizer, text, name="rjieba"):
    ids, words = encode_with_words(tokenizer, [text], segmenter(name))
    tokens = tokenizer.convert_ids_to_tokens(ids[0])
    groups = {}
    for tok, w in zip(tokens, words[0], strict=True):
        groups.setdefault(w, []).append(tok)
    assert sorted(groups) == list(range(len(groups)))  # numbered 0.. in order
    return ["".join(t.removeprefix("##") for t in g) for g in groups.values()]


def test_chinese_multi_character_words_share_an_id(tokenizer):
    assert _groups(tokenizer, "北京是中国的首都。") == ["北京", "是", "中国", "的", "首都", "。"]


def test_without_segmenter_each_chinese_character_is_a_word(tokenizer):
    assert _groups(tokenizer, "北京是首都", "none") == ["北", "京", "是", "首", "都"]


def test_english_pieces_of_a_word_share_an_id(tokenizer):
    ids, words = encode_with_words(tokenizer, ["Superconductivity isn't simple."], segmenter("rjieba"))
    tokens = tokenizer.convert_ids_to_tokens(ids[0])
    assert tokens[1].startswith("##")  # the word is split into pieces …
    for i, tok in enumerate(tokens):  # … and every ## piece belongs to the word before it
        if tok.startswith("##"):
            assert words[0][i] == words[0][i - 1]
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
