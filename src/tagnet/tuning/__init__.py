"""Hyperparameter search over the trainer."""
