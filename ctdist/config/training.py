"""A training run's options: one frozen tree, whose fields are `python -m ctdist.train`'s
flags and whose JSON is the run's options.json (`ctdist.store.options_file`).

  from ctdist.config import training
  opts = training.Options(model_dir="runs/a", schedule=training.Schedule(head_epochs=2))
  opts = training.from_flat(model_dir="runs/b", head_epochs=2)  # by flag name
"""

import dataclasses

from ctdist.config import flagtree
from ctdist.config import shared

option = flagtree.option
# ResNet50 without its top: five stride-2 stages need at least 32 pixels a side.
MIN_IMAGE_SIZE = 32
STRATEGIES = ("auto", "cpu", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# Where decoded, resized examples are kept between epochs: in memory (fastest; 224 px x
# 613 images = 92 MB), in files under a local folder (data larger than memory), or
# nowhere (decode every epoch).
CACHES = ("memory", "disk", "none")
LR_SCHEDULES = ("constant", "cosine")
PHASE_NAMES = ("head", "finetune")  # in training order (ctdist.training.phases)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Head, then fine-tune: epochs, learning rates, what unfreezes, when to stop."""
  head_epochs: int = option(10, "Phase 1 epochs (base frozen).")
  head_lr: float = option(1e-4, "Phase 1 Adam learning rate.")
  finetune_epochs: int = option(10, "Phase 2 epochs.")
  finetune_lr: float = option(1e-5, "Phase 2 Adam learning rate.")
  finetune_layers: int = option(
      50, "Top base layers unfrozen in phase 2 (-1: all); BatchNorm stays frozen.")
  freeze_batchnorm: bool = option(
      True, "Keep BatchNorm frozen in inference mode; --nofreeze_batchnorm only to train "
      "from scratch with --weights=none.")
  patience: int = option(3, "Early-stopping patience in epochs (val loss).")
  warmup_epochs: float = option(
      0.0, "Both phases: linear learning-rate warm-up from 0 over this many epochs.")
  lr_schedule: str = option(
      "constant", "Both phases, after the warm-up: constant, or cosine decay to 0 at the "
      "phase's last step.", choices=LR_SCHEDULES)
  weight_decay: float = option(
      0.0, "Decoupled weight decay (AdamW) if > 0; not on biases and BatchNorm.")
  label_smoothing: float = option(0.0, "Label smoothing of the loss.")
  clip_norm: float = option(0.0, "Clip gradients to this global norm (0: off).")

  def __post_init__(self):
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"lr_schedule={self.lr_schedule!r}; expected one of {LR_SCHEDULES}")
    for name in ("warmup_epochs", "weight_decay", "label_smoothing", "clip_norm"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
    if self.label_smoothing >= 1:
      raise ValueError(f"label_smoothing={self.label_smoothing} must be below 1")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """The seed notebook's augmentations; 0 (or False) switches one off."""
  rotation: float = option(20.0, "Max rotation in degrees (0: off).")
  zoom: float = option(0.1, "Max zoom fraction (0: off).")
  shift: float = option(0.1, "Max shift, a fraction of the side (0: off).")
  brightness: float = option(0.2, "Max brightness change, a fraction of 255 (0: off).")
  flip: bool = option(True, "Random horizontal flips.")

  def __post_init__(self):
    for name in ("rotation", "zoom", "shift", "brightness"):
      value = getattr(self, name)
      if not 0 <= value < (180 if name == "rotation" else 1):
        raise ValueError(f"augmentation {name}={value} is out of range: use 0 (off) or more, "
                         f"below {'180 degrees' if name == 'rotation' else '1 (a fraction)'}")

  @property
  def geometric(self) -> bool:
    return bool(self.rotation or self.zoom or self.shift)

  @property
  def enabled(self) -> bool:
    return bool(self.geometric or self.brightness or self.flip)


AUGMENT_OFF = AugmentConfig(rotation=0, zoom=0, shift=0, brightness=0, flip=False)


@dataclasses.dataclass(frozen=True)
class Options:
  """Everything a training run is told; flags of the same names fill it."""
  model_dir: str = option(None, "Output and checkpoint folder.", required=True)
  data: shared.DataSource = flagtree.group(
      shared.DataSource, default=shared.DataSource(dataset="tfds_ctscan/kaggle"))
  manual_dir: str | None = option(
      None, "Build the Kaggle dataset from this download first, if not built.")
  subset_file: str | None = option(
      None, "Train and validate on the files this JSON lists (python -m ctdist.cv writes "
      "one per fold) instead of the train and valid splits.")
  strategy: str = option("auto", "auto: TPU, else all GPUs, else one GPU, else CPU.",
                         choices=STRATEGIES)
  tpu: str = option("local", "TPU address for --strategy=tpu: 'local' on a TPU VM.")
  precision: str = option(
      "auto", "auto: mixed_float16 on GPU, mixed_bfloat16 on TPU, float32 on CPU.",
      choices=PRECISIONS)
  weights: str = option("imagenet", "imagenet, none (random init) or a local .h5 path.")
  image_size: int = option(224, "Input height and width in pixels.")
  cache: str = option(
      "memory", "Keep decoded examples between epochs: memory, disk (files under "
      "--cache_dir; for data larger than memory) or none (decode every epoch).",
      choices=CACHES)
  cache_dir: str | None = option(
      None, "Local folder for --cache=disk; default: a temporary one, removed at exit.")
  batch_size: int = option(32, "Global batch; divisible by the replicas.")
  schedule: Schedule = flagtree.group(Schedule)
  class_weight: str = option("balanced", "Loss weights for the imbalanced classes.",
                             choices=("balanced", "none"))
  steps_per_loop: int = option(1, "Train steps per tf.function call (raise on TPU).")
  log_every_steps: int = option(0, "Progress line every N steps (0: off).")
  checkpoint_every_steps: int = option(
      0, "Also checkpoint every N steps inside an epoch (0: per epoch only).")
  seed: int = option(42, "Seed for weights, shuffling and augmentation.")
  deterministic: bool = option(
      False, "TensorFlow op determinism: the same flags on the same machine repeat a run "
      "exactly (slower; see README).")
  jit_compile: bool = option(
      False, "XLA-compile the replica step: augmentation, forward, backward, update.")
  augment: AugmentConfig = flagtree.group(AugmentConfig, prefix="augment_")
  eval_split: str = option("test", "Split evaluated after training.")
  calibrate: bool = option(
      False, "After training, fit a softmax temperature on the validation split and store "
      "it in model.keras (see python -m ctdist.calibrate).")
  export: bool = option(True, "Also export a SavedModel for serving.")
  report: bool = option(True, "Write report.html when training ends (python -m "
                        "ctdist.report writes it again).")
  baseline: bool = option(True, "When training ends, also fit trivial baselines (raw "
                          "pixels, majority class) on the training split and compare the "
                          "model with them on --eval_split, paired (as ctdist.evaluate).")

  def __post_init__(self):
    if self.image_size < MIN_IMAGE_SIZE:
      raise ValueError(f"--image_size={self.image_size}: ResNet50 takes images of "
                       f"{MIN_IMAGE_SIZE} pixels or more; use --image_size={MIN_IMAGE_SIZE} "
                       "or larger (224 for ImageNet weights)")
    for name in ("batch_size", "steps_per_loop"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name}={getattr(self, name)}; use 1 or more")
    for name in ("log_every_steps", "checkpoint_every_steps"):
      if getattr(self, name) < 0:
        raise ValueError(f"--{name}={getattr(self, name)}; use 0 (off) or more")
    if self.calibrate and self.eval_split == "valid" and self.subset_file is None:
      raise ValueError("--calibrate fits the temperature on valid and --eval_split=valid "
                       "would score it on the same images; use --eval_split=test")


def from_flat(**values) -> Options:
  """Options from values named like the flags (head_epochs=2, augment_zoom=0, ...)."""
  return flagtree.from_flat(Options, values)
