"""Training-time augmentation with keras-cv layers, run on the accelerator inside the step."""

import dataclasses

import keras
import keras_cv


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """The seed notebook's augmentations; 0 (or False) switches one off."""
  rotation_deg: float = 20.0
  zoom: float = 0.1
  shift: float = 0.1
  brightness: float = 0.2
  flip: bool = True


def build_augmenter(cfg: AugmentConfig, seed: int) -> keras.Sequential:
  """Returns a float32 Sequential over 0-255 RGB batches; identity if all off.

  Only keras-cv's geometric and colour layers are used: its RandAugment and
  AugMix fail inside a train step and under float16.
  """
  # keras-cv treats seed 0 as "no seed" and then shares TF's global generator,
  # which is bound to the first strategy that used it: every layer gets a seed >= 1.
  seed = abs(int(seed)) + 1
  aug = []
  if cfg.rotation_deg:
    aug.append(keras_cv.layers.RandomRotation(
        cfg.rotation_deg / 360.0, fill_mode="nearest", seed=seed))
  if cfg.zoom:
    aug.append(keras_cv.layers.RandomZoom(
        (-cfg.zoom, cfg.zoom), fill_mode="nearest", seed=seed + 1))
  if cfg.shift:
    aug.append(keras_cv.layers.RandomTranslation(
        cfg.shift, cfg.shift, fill_mode="nearest", seed=seed + 2))
  if cfg.brightness:
    aug.append(keras_cv.layers.RandomBrightness(
        cfg.brightness, value_range=(0, 255), seed=seed + 3))
  if cfg.flip:
    aug.append(keras_cv.layers.RandomFlip("horizontal", seed=seed + 4))
  return keras.Sequential(aug, name="augment")
