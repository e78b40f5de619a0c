"""The BiLSTM baseline: padded-batch states equal to a packed bidirectional nn.LSTM's, weights of the earlier
layout still load, and it fine-tunes end to end from a tokenizer alone at its own learning rate."""

import json

import pytest
import torch
from conftest import ROOT, recipe_edits, run_cli
from safetensors.torch import save_file
from torch import nn

from bertkit.config import load_recipe
from bertkit.config.sections import BiLSTMConfig
from bertkit.modeling.bilstm import BiLSTMClassifier, load_bilstm, reverse_index, reverse_within_length
from bertkit.tokenizer.train import load_tokenizer

NER = ROOT / "recipes" / "finetune" / "zh-ner.yaml"


def _model(layers: int, head: str = "token") -> BiLSTMClassifier:
    cfg = BiLSTMConfig(embedding_dim=8, hidden_size=12, layers=layers, dropout=0)
    return BiLSTMClassifier.build(50, 0, {0: "O", 1: "B-PER", 2: "I-PER"}, head, cfg).eval()


def _packed_reference(model: BiLSTMClassifier) -> nn.LSTM:
    """The earlier model's LSTM, one bidirectional nn.LSTM, holding `model`'s weights under its own names."""
    c = model.config
    lstm = nn.LSTM(c.embedding_dim, c.hidden_size, num_layers=c.num_layers, bidirectional=True, batch_first=True)
    for k, (ahead, back) in enumerate(zip(model.forward_lstms, model.backward_lstms, strict=True)):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm, f"{name}_l{k}").data.copy_(getattr(ahead, f"{name}_l0"))
            getattr(lstm, f"{name}_l{k}_reverse").data.copy_(getattr(back, f"{name}_l0"))
    return lstm.eval()


def _batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random ids (pad 0) and their attention mask."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths) + 3  # padding after the longest row too
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    return torch.randint(1, 50, (len(lengths), width), generator=generator) * mask, mask


def test_reverse_within_length_flips_real_tokens_only():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    index = reverse_index(mask)
    assert index.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    x = torch.arange(12.0).view(3, 4, 1)
    assert reverse_within_length(x, index)[..., 0].tolist() == [[2, 1, 0, 3], [4, 5, 6, 7], [11, 10, 9, 8]]
    assert torch.equal(reverse_within_length(reverse_within_length(x, index), index), x)


@pytest.mark.parametrize("layers", [1, 2])
def test_padded_states_equal_packed_bidirectional_lstm(layers):
    torch.manual_seed(layers)
    model = _model(layers)
    lstm = _packed_reference(model)
    ids, mask = _batch([9, 1, 5, 9, 2, 7])
    lengths = mask.sum(1)
    with torch.no_grad():
        packed = nn.utils.rnn.pack_padded_sequence(
            model.embeddings(ids), lengths, batch_first=True, enforce_sorted=False
        )
        expected, _ = nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=ids.shape[1])
        states = model.states(ids, mask)
    assert states.shape == expected.shape == (6, 12, 24)
    real = mask.bool()
    torch.testing.assert_close(states[real], expected[real], atol=1e-5, rtol=0)
    assert not states[~real].any()  # zero at padding, as pad_packed_sequence left it
    # What padding follows a row does not change its states (the backward pass never reads it).
    with torch.no_grad():
        alone = model.states(ids[2:3, :5], mask[2:3, :5])
    torch.testing.assert_close(alone[0], states[2, :5], atol=1e-6, rtol=0)


def test_weights_of_the_bidirectional_layout_still_load(tmp_path):
    torch.manual_seed(0)
    model = _model(2, head="sequence")
    model.save_pretrained(tmp_path)
    lstm = _packed_reference(model)
    # The file as the earlier model (self.lstm = nn.LSTM(bidirectional=True)) wrote it.
    old = {k: v for k, v in model.state_dict().items() if "lstms." not in k}
    old |= {f"lstm.{k}": v.contiguous() for k, v in lstm.state_dict().items()}
    save_file(old, str(tmp_path / "model.safetensors"))
    loaded = load_bilstm(tmp_path)
    ids, mask = _batch([4, 8, 1])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask).logits, model(ids, mask).logits, atol=0, rtol=0)


def _finetune(tiny_run, tmp_path, model_dir, *extra):
    args = [
        NER,
        *recipe_edits(
            [
                f"output_dir={tmp_path}",
                f"finetune.model_dir={model_dir}",
                "finetune.train.max_steps=2",
                "finetune.train.batch_size=8",
                "finetune.train.log_every=1",
                "finetune.train.lr=1e-7",  # BERT's: not the BiLSTM's
                "finetune.task.max_seq_length=64",
                "finetune.task.stride=16",
                "finetune.model_type=bilstm",
                "finetune.bilstm.hidden_size=16",
                "finetune.bilstm.embedding_dim=16",
                *extra,
            ]
        ),
    ]
    return args, run_cli("finetune", *args)


def test_bilstm_from_a_tokenizer_dir_at_its_own_lr(tiny_run, tmp_path):
    tokenizer_dir = tiny_run[0] / "tokenizer"  # `bertkit tokenize`'s tokenizer: no config.json, no weights
    assert not (tokenizer_dir / "config.json").exists()
    args, result = _finetune(tiny_run, tmp_path, tokenizer_dir, "finetune.bilstm.lr=0.01")
    assert result.exit_code == 0, result.output
    assert f"training a BiLSTM baseline (tokenizer of {tokenizer_dir}; lr 0.01 from finetune.bilstm.lr" in result.output
    out = tmp_path / "finetune" / "ner"
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in log if "lr" in r]
    assert lrs and max(lrs) > 1e-3  # the BiLSTM's 1e-2 (decaying), not finetune.train.lr=1e-7
    result = run_cli("eval", *args)
    assert result.exit_code == 0, result.output
    report = json.loads(next((tmp_path / "eval").glob("*/report.json")).read_text())
    assert report["examples"] == 60 and 0 <= report["f1"] <= 1
    assert load_bilstm(out).embeddings.num_embeddings == len(load_tokenizer(tokenizer_dir))  # its vocabulary


def test_bilstm_lr_replaces_finetune_train_lr_in_the_optimizer(tiny_run, tmp_path):
    from bertkit.commands.finetune import setup

    overrides = [
        f"output_dir={tmp_path}",
        f"finetune.model_dir={tiny_run[0] / 'pretrain'}",  # a BERT dir: only its tokenizer is read
        "finetune.train.lr=5e-5",
        "finetune.train.layer_lr_decay=0.5",  # BERT's, by layer: not applied to the BiLSTM
        "finetune.model_type=bilstm",
        "finetune.bilstm.lr=3e-3",
    ]
    run = setup(load_recipe(NER, overrides, command="finetune"))
    assert run.train.lr == 3e-3
    assert {g["initial_lr"] for g in run.optimizer.param_groups} == {3e-3}


def test_a_dir_without_tokenizer_is_one_clear_error(tiny_run, tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    _, result = _finetune(tiny_run, tmp_path / "out", empty)
    assert result.exit_code != 0
    assert (
        f"{empty}: no tokenizer (vocab.txt or tokenizer.json); finetune.model_type=bilstm needs only that"
        in result.output
    )
    assert "Traceback" not in result.output
