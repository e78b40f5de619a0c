"""Fine-tuning task families: what each reads, which transformers head it trains, how it scores.

    task = get_task("token-classification")
    examples = task.read(path, cfg.finetune.task)                    # file → examples (gold or not)
    labels = task.labels(examples)                                   # label names, or None (regression, QA, …)
    model = load_model(task.model_class, model_dir, **task.model_kwargs(labels))
    features = task.encode(tokenizer, examples, labels, cfg.finetune.task, train=True)
    metrics, predictions = task.evaluate(model, tokenizer, examples, labels, cfg.finetune.task, batch_size)

One module per family (classification.py: classification and regression; tagging.py; qa.py; choice.py) and
one explicit dict, TASKS; models.py builds and loads a family's model (its BERT head or the BiLSTM baseline).
"""

from __future__ import annotations

from bertkit.errors import BertkitError
from bertkit.tasks import choice, classification, qa, tagging
from bertkit.tasks.common import Task

TASKS: dict[str, Task] = {
    "classification": classification.CLASSIFICATION,
    "multi-label-classification": classification.MULTI_LABEL,
    "regression": classification.REGRESSION,
    "token-classification": tagging.TASK,
    "question-answering": qa.TASK,
    "multiple-choice": choice.TASK,
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise BertkitError(f"unknown finetune.task.type '{name}'; use one of {', '.join(TASKS)}")
    return TASKS[name]
