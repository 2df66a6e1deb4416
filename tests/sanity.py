"""Sanity checks for saliency maps (Adebayo et al. 2018): a map worth showing changes
when the model's top layers are re-initialised and when the input changes; a map that
passes neither is an edge detector or a constant, whatever it looks like."""

import keras
import numpy as np
from scipy import stats as scipy_stats


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman's rank correlation of two maps' pixels; 1 for two equal constant maps,
  0 when one of them is constant and the other not (no ranking to agree on)."""
  a, b = np.ravel(a), np.ravel(b)
  flat_a, flat_b = np.ptp(a) == 0, np.ptp(b) == 0
  if flat_a or flat_b:
    return float(flat_a and flat_b and np.array_equal(a, b))
  return float(scipy_stats.spearmanr(a, b).statistic)


def median_similarity(maps_a: np.ndarray, maps_b: np.ndarray) -> float:
  """Median over images of `rank_correlation(maps_a[i], maps_b[i])`."""
  return float(np.median([rank_correlation(a, b) for a, b in zip(maps_a, maps_b)]))


def top_layers(model: keras.Model, count: int) -> list[str]:
  """Names of the model's last `count` top-level layers that have weights (the head)."""
  weighted = [layer.name for layer in model.layers
              if layer.weights and not isinstance(layer, keras.Model)]
  if count > len(weighted):
    raise ValueError(f"{count} top layers asked; {model.name!r} has {len(weighted)} "
                     f"with weights outside nested models: {weighted}")
  return weighted[len(weighted) - count:]


def randomized_copy(model: keras.Model, layer_names: list[str], seed: int = 0
                    ) -> keras.Model:
  """A copy of `model` (which is left as it is) whose `layer_names` ("fc1", or
  "resnet50/conv5_block3_3_conv" inside a nested model) get new random trainable weights
  (Glorot-uniform kernels, normal(0, 0.1) biases and scales: nonzero even where the model
  started at zero)."""
  copy = keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  rng = np.random.default_rng(seed)
  for name in layer_names:
    layer = copy
    for part in name.split("/"):
      layer = layer.get_layer(part)
    for w in layer.trainable_weights:  # not BatchNorm's moving statistics
      shape = tuple(w.shape)
      if len(shape) >= 2:  # a kernel: its receptive field counts on both sides
        field = int(np.prod(shape[:-2]))
        fan_in, fan_out = field * shape[-2], field * shape[-1]
        limit = np.sqrt(6 / (fan_in + fan_out))
        w.assign(rng.uniform(-limit, limit, shape).astype(w.dtype))
      else:
        w.assign(rng.normal(0, 0.1, shape).astype(w.dtype))
  return copy
