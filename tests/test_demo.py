"""The README's main job, shortened: synthetic data, random init, well above chance."""

import pytest

from ctdist import strategy as strategy_lib
from ctdist import train


@pytest.mark.slow
def test_short_synthetic_training_beats_chance(tmp_path):
  # The `make demo` recipe (see Makefile DEMO_FLAGS): 64 px, from scratch, BatchNorm trained.
  opts = train.make_options(
      model_dir=str(tmp_path / "run"), dataset="tfds_ctscan/synthetic",
      data_dir=str(tmp_path / "tfds"), weights="none", freeze_batchnorm=False,
      image_size=64, batch_size=32, head_epochs=0, finetune_layers=-1,
      finetune_lr=1e-3, finetune_epochs=10, patience=10, export=False,
      augmentation=train.augment.AugmentConfig(0, 0, 0, 0, True))
  result = train.run(opts, strategy_lib.make_strategy("cpu"))
  test = result["test"]
  # 4 classes: chance is 0.25, always answering the largest class 0.38.
  assert test["leak_free"]["accuracy"] > 0.45, test["leak_free"]
  assert test["leak_free"]["macro"]["f1"] > 0.35
  assert test["num_leaked"] > 0
