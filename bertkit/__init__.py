"""bertkit: from a raw text corpus to a pretrained BERT and fine-tuned task models.

bertkit tokenize recipes/demo-zh.yaml      # vocabulary + sentence-pair examples
bertkit pretrain recipes/demo-zh.yaml      # MLM + NSP
bertkit finetune recipes/demo-zh.yaml      # a task head
bertkit eval     recipes/demo-zh.yaml      # metrics table, report.json, predictions
"""

__version__ = "0.1.0"
