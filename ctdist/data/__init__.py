"""TFRecords (the tfds_ctscan builder's) -> batches: the builder, splits and subsets, the
input pipeline, how a batch spreads over replicas, and cross-validation folds."""
