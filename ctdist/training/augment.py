"""Training-time augmentation as stateless TensorFlow ops that XLA compiles.

It runs inside the replica step on every accelerator, a TPU included: the geometric part
is one affine map per image, sampled bilinearly with gathers (keras' and keras-cv's
rotation, zoom and translation layers lower to `ImageProjectiveTransformV3`, which has no
XLA kernel in released TensorFlow). Randomness comes from an explicit seed, so a step's
augmentation depends on (seed, step, replica) only: runs repeat and resume exactly.
"""

import math

import tensorflow as tf

from ctdist.config import training as training_config

# One generator on every device and under XLA ("auto_select" may pick another on each).
ALG = "philox"


def describe(cfg: training_config.AugmentConfig) -> str:
  """One log line: what is on, and where it runs."""
  parts = [f"rotation +-{cfg.rotation:g} deg" if cfg.rotation else "",
           f"zoom +-{cfg.zoom:g}" if cfg.zoom else "",
           f"shift +-{cfg.shift:g}" if cfg.shift else "",
           f"brightness +-{cfg.brightness:g}" if cfg.brightness else "",
           "horizontal flip" if cfg.flip else ""]
  on = ", ".join(p for p in parts if p)
  if not on:
    return "off"
  return f"{on}; inside the replica step on the accelerator (XLA-compilable, TPU included)"


def affine_transforms(seed, batch, height: int, width: int, cfg: training_config.AugmentConfig):
  """Random [batch, 8] projective transforms mapping output pixels to input pixels.

  Rotation by an angle uniform in +-rotation degrees, zoom 1 + uniform(+-zoom) (below 1 zooms
  in) about the image centre, then a shift uniform in +-shift of the height and width: the
  ranges of keras' RandomRotation, RandomZoom and RandomTranslation. The layout is
  `ImageProjectiveTransformV3`'s: x_in = a0 x + a1 y + a2, y_in = b0 x + b1 y + b2.
  """
  seeds = tf.random.experimental.stateless_split(seed, 4, alg=ALG)
  angle = tf.random.stateless_uniform([batch], seeds[0], -1.0, 1.0, alg=ALG) * (
      cfg.rotation * math.pi / 180.0)
  scale = 1.0 + tf.random.stateless_uniform([batch], seeds[1], -1.0, 1.0, alg=ALG) * cfg.zoom
  tx = tf.random.stateless_uniform([batch], seeds[2], -1.0, 1.0, alg=ALG) * (cfg.shift * width)
  ty = tf.random.stateless_uniform([batch], seeds[3], -1.0, 1.0, alg=ALG) * (cfg.shift * height)
  cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
  cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
  zero = tf.zeros_like(angle)
  return tf.stack([cos, -sin, cx - cos * cx + sin * cy - tx,
                   sin, cos, cy - sin * cx - cos * cy - ty, zero, zero], axis=1)


def apply_transforms(images, transforms):
  """Warps float [B, H, W, C] images by affine `transforms` ([B, 8], output -> input).

  Bilinear, with coordinates clamped to the image (the edge pixel repeats): the same
  result as `ImageProjectiveTransformV3` with fill_mode NEAREST, from gathers XLA compiles.
  """
  shape = tf.shape(images)
  b, h, w = shape[0], shape[1], shape[2]
  hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
  ys, xs = tf.meshgrid(tf.range(hf), tf.range(wf), indexing="ij")  # [H, W]
  t = transforms[:, :, None, None]  # [B, 8, 1, 1]
  x_in = tf.clip_by_value(t[:, 0] * xs + t[:, 1] * ys + t[:, 2], 0.0, wf - 1.0)
  y_in = tf.clip_by_value(t[:, 3] * xs + t[:, 4] * ys + t[:, 5], 0.0, hf - 1.0)
  x0, y0 = tf.floor(x_in), tf.floor(y_in)
  wx, wy = (x_in - x0)[..., None], (y_in - y0)[..., None]
  x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
  x1, y1 = tf.minimum(x0 + 1, w - 1), tf.minimum(y0 + 1, h - 1)
  flat = tf.reshape(images, [-1, shape[3]])
  base = (tf.range(b) * h * w)[:, None, None]

  def pick(y, x):
    return tf.gather(flat, base + y * w + x)

  top = pick(y0, x0) * (1.0 - wx) + pick(y0, x1) * wx
  bottom = pick(y1, x0) * (1.0 - wx) + pick(y1, x1) * wx
  return top * (1.0 - wy) + bottom * wy


def draw(seed, images, cfg: training_config.AugmentConfig) -> dict:
  """The random part of the augmentation of `images` ([B, H, W, C], H and W static), from
  a shape-[2] integer `seed`.

  Random draws are the one part whose values depend on where they run (TensorFlow's
  stateless generators give other numbers under XLA than in its CPU kernels): the loop
  draws outside the XLA-compiled computation on CPU and GPU, so a run with and without
  `--jit_compile` augments alike; on a TPU everything is compiled, draws included.
  """
  seeds = tf.random.experimental.stateless_split(seed, 3, alg=ALG)
  batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
  return {"transforms": affine_transforms(seeds[0], batch, height, width, cfg),
          "brightness": tf.random.stateless_uniform([batch, 1, 1, 1], seeds[1], -1.0, 1.0,
                                                    alg=ALG) * (cfg.brightness * 255.0),
          "flip": tf.random.stateless_uniform([batch, 1, 1, 1], seeds[2], alg=ALG) < 0.5}


def apply(images, params: dict, cfg: training_config.AugmentConfig):
  """Augments a float32 batch of 0-255 RGB images with drawn `params`: the geometric warp,
  then a brightness shift per image (clipped to 0-255, keras' RandomBrightness), then a
  horizontal flip of the images drawn for it."""
  if cfg.geometric:
    images = apply_transforms(images, params["transforms"])
  if cfg.brightness:
    images = tf.clip_by_value(images + params["brightness"], 0.0, 255.0)
  if cfg.flip:
    images = tf.where(params["flip"], tf.reverse(images, axis=[2]), images)
  return images


def augment(images, seed, cfg: training_config.AugmentConfig):
  """draw, then apply: augments a batch from a shape-[2] integer `seed`."""
  if not cfg.enabled:
    return images
  return apply(images, draw(seed, images, cfg), cfg)


def step_seed(seed: int, phase, step, replica, replicas):
  """The augmentation seed of one replica at one optimizer step of one phase: every
  (phase, step, replica) gets its own stream, the same on every run and after a resume."""
  key = tf.stack([tf.constant(seed, tf.int64), tf.cast(phase, tf.int64)])
  index = tf.cast(step, tf.int64) * tf.cast(replicas, tf.int64) + tf.cast(replica, tf.int64)
  return tf.random.experimental.stateless_fold_in(key, index, alg=ALG)
