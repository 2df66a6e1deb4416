"""Exact and perceptual image hashes, duplicate groups and cross-split leaks."""

import hashlib

import numpy as np
from PIL import Image
from scipy import sparse
from scipy.sparse import csgraph

THUMB_SIZE = 16  # perceptual hash: a 16 x 16 box-downsampled grayscale thumbnail
# Two images whose thumbnails differ by at most this mean absolute gray level
# (0-255 scale) are near duplicates. Measured on the synthetic config: copies
# rescaled to 70 % and re-saved as JPEG quality 70 stay <= 1.34; distinct
# slices are >= 2.18 apart. See tfds_ctscan/README.md.
NEAR_DUPLICATE_MAD = 1.6


def exact_hash(image: np.ndarray) -> str:
  """SHA-256 of the decoded pixels and shape: equal for byte-identical images
  and for the same pixels stored in another format or mode."""
  h = hashlib.sha256(str(image.shape).encode())
  h.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
  return h.hexdigest()


def perceptual_hash(image: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
  """Returns the image's size x size grayscale thumbnail, flattened, uint8."""
  gray = Image.fromarray(image).convert("L").resize(
      (size, size), Image.Resampling.BOX)
  return np.asarray(gray, dtype=np.uint8).reshape(-1)


def distances(a: np.ndarray, b: np.ndarray, chunk: int = 128) -> np.ndarray:
  """Mean absolute differences between hashes `a` [N, D] and `b` [M, D] -> [N, M]."""
  a, b = a.astype(np.float32), b.astype(np.float32)
  out = np.zeros((len(a), len(b)), np.float32)
  for i in range(0, len(a), chunk):
    out[i:i + chunk] = np.abs(a[i:i + chunk, None, :] - b[None, :, :]).mean(-1)
  return out


def groups(keys: list) -> list[list[int]]:
  """Indices sharing a key, for keys that occur more than once."""
  by_key = {}
  for i, k in enumerate(keys):
    by_key.setdefault(k, []).append(i)
  return [idx for idx in by_key.values() if len(idx) > 1]


def component_ids(hashes: np.ndarray, max_distance: float = NEAR_DUPLICATE_MAD
                  ) -> np.ndarray:
  """[N] ids, equal for images linked by a chain of near (or exact) copies: the groups
  that must stay on one side of any split (exact copies have identical thumbnails)."""
  near = distances(hashes, hashes) <= max_distance
  _, component = csgraph.connected_components(sparse.csr_matrix(near), directed=False)
  return component


def near_groups(hashes: np.ndarray, max_distance: float = NEAR_DUPLICATE_MAD
                ) -> list[list[int]]:
  """Connected groups of images within `max_distance` of each other."""
  return groups(component_ids(hashes, max_distance).tolist())


def leaked(split_of: list[str], exact: list[str], hashes: np.ndarray,
           split_order: tuple[str, ...],
           max_distance: float = NEAR_DUPLICATE_MAD) -> list[bool]:
  """Flags each image that is an exact or near copy of one in an earlier split.

  Args:
    split_of: the split of each image.
    exact: the exact hash of each image.
    hashes: the perceptual hash of each image, [N, D].
    split_order: splits in order, e.g. ("train", "valid", "test"): valid is
      checked against train, test against train and valid; the first split is
      never flagged.
    max_distance: near-duplicate threshold (see `distances`).

  Returns:
    One bool per image.
  """
  rank = {s: i for i, s in enumerate(split_order)}
  ranks = np.array([rank[s] for s in split_of])
  first_rank = {}
  for r, e in zip(ranks, exact):
    first_rank[e] = min(first_rank.get(e, r), r)
  near = distances(hashes, hashes) <= max_distance
  flags = []
  for i, (r, e) in enumerate(zip(ranks, exact)):
    flags.append(bool(first_rank[e] < r or (near[i] & (ranks < r)).any()))
  return flags
