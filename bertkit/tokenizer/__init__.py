"""Vocabulary training (train.py) and whole-word ids (words.py)."""
