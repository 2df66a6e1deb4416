"""Whole jobs the commands run: a training run (train, save, calibrate, evaluate, report)
and a cross-validation (a training run per fold, then their summary)."""
