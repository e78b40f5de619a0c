"""The networks: BERT and the pretraining objective (model.py), its attention, dropout and initialization, and the
BiLSTM and CRF of the baselines and taggers."""
