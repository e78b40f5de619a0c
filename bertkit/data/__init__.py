"""Corpus reading, pretraining examples, masking, and fine-tuning task data."""
