"""What the Task record and the model types (bertkit/tasks/models.py) answer for a family, so that finetune and
eval need not know it: what of a feature the model takes, which model a run trains, and which a dir holds."""

import pytest
import torch
from transformers import BertConfig, BertForPreTraining

from bertkit.config import EvalRecipe, FinetuneRecipe
from bertkit.config.sections import BiLSTMConfig, TaskConfig
from bertkit.errors import BertkitError
from bertkit.modeling.bilstm import BiLSTMClassifier
from bertkit.tasks import TASKS
from bertkit.tasks.models import MODEL_TYPES, load_finetuned

CONTEXT = "The Great Wall is in China. It is long."
EXAMPLES = {
    "classification": ({"text": "a good day", "text_pair": None, "label": "pos"}, ["neg", "pos"]),
    "multi-label-classification": ({"text": "a good day", "text_pair": None, "label": ["pos"]}, ["neg", "pos"]),
    "regression": ({"text": "a good day", "text_pair": "a fine day", "label": 0.5}, None),
    "token-classification": ({"tokens": ["Paris", "is", "big"], "label": ["B-LOC", "O", "O"]}, ["B-LOC", "O"]),
    "question-answering": (
        {"id": "1", "question": "Where is it?", "context": CONTEXT, "label": [("China", CONTEXT.index("China"))]},
        None,
    ),
    "multiple-choice": ({"context": "It rains.", "question": "Take", "choices": ["a coat", "a fan"], "label": 0}, None),
}


@pytest.mark.parametrize("family", list(TASKS))
def test_training_features_keep_only_what_the_collator_batches(tokenizer, family):
    task = TASKS[family]
    example, labels = EXAMPLES[family]
    feature = task.encode(tokenizer, [example], labels, TaskConfig(type=family), train=True)[0]
    kept = task.model_inputs(feature)
    assert set(kept) == set(task.collate([kept], pad_id=tokenizer.pad_token_id)) - {"attention_mask"}


def _finetune(family: str) -> FinetuneRecipe:
    return FinetuneRecipe.model_validate({"finetune": {"model_type": "bilstm", "task": {"type": family}}})


def test_the_bilstm_is_built_only_for_a_family_with_its_head():
    cfg = _finetune("question-answering")
    with pytest.raises(BertkitError) as e:
        MODEL_TYPES["bilstm"].build(cfg, TASKS["question-answering"], None, None, None, {})
    with_head = "classification, token-classification"
    assert str(e.value) == (
        f"finetune.model_type=bilstm is for {with_head}, not question-answering; set finetune.model_type=bert"
    )


def test_each_model_type_says_what_loads_its_output():
    tagging = TaskConfig(type="token-classification", crf=True)
    assert MODEL_TYPES["bilstm"].loads_with(TASKS["token-classification"], tagging) == (
        "bertkit.modeling.bilstm.load_bilstm"
    )
    assert MODEL_TYPES["bert"].loads_with(TASKS["token-classification"], tagging) == (
        "BertCrfForTokenClassification.from_pretrained"
    )


def test_a_saved_bilstm_loads_for_its_family_only(tmp_path):
    cfg = BiLSTMConfig(embedding_dim=8, hidden_size=8, layers=1)
    BiLSTMClassifier.build(50, 0, {0: "O", 1: "B-PER"}, "token", cfg).save_pretrained(tmp_path)
    architectures = ["BiLSTMForTokenClassification"]

    def recipe(family: str) -> EvalRecipe:
        return EvalRecipe.model_validate({"finetune": {"task": {"type": family}}})

    tagger = load_finetuned(recipe("token-classification"), TASKS["token-classification"], tmp_path, architectures)
    assert isinstance(tagger, BiLSTMClassifier)
    with pytest.raises(BertkitError, match="not a BiLSTM for finetune.task.type=classification; set the recipe"):
        load_finetuned(recipe("classification"), TASKS["classification"], tmp_path, architectures)


@pytest.mark.parametrize(("dropout", "expected"), [(None, 0.0), (0.1, 0.1)])
def test_finetune_dropout_replaces_the_pretrained_models(tmp_path, dropout, expected):
    """A model pretrained without dropout (the laptop-hour recipe) fine-tunes with finetune.dropout when set."""
    config = BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    BertForPreTraining(config).save_pretrained(tmp_path)
    cfg = FinetuneRecipe.model_validate({"finetune": {"dropout": dropout, "task": {"type": "classification"}}})
    model = MODEL_TYPES["bert"].build(cfg, TASKS["classification"], None, tmp_path, ["neg", "pos"], {})
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {expected}
    assert model.config.hidden_dropout_prob == model.config.attention_probs_dropout_prob == expected
