"""Training: the loop (loop.py), its state (state.py), optimizers and schedules, checkpoints, the runtime settings
and the model card."""
