"""Training: the trainer's stages and recipes, time budgets, head selection by cross-validation, losses, the run folder."""
