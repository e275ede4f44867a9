"""Evaluation: multi-label metrics as pure functions, and evaluating a saved model on a labelled file."""
