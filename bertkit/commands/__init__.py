"""One module per `bertkit` command, each with its `run_<command>(cfg)`: tokenize, pretrain, finetune, eval, embed,
probe, export, convert."""
