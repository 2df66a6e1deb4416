"""The custom distributed training loop and what it stands on: the strategy and precision,
augmentation in the replica step, the phases, resume state, and fault points."""
