"""Scoring models: held-out pretraining scores (pretraining.py), frozen features (features.py), the layer probe
(probe.py)."""
