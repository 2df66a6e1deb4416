"""Numbers about a trained model: predictions on a split, metrics with intervals,
calibration, paired comparison, cross-validation summaries, and their charts."""
