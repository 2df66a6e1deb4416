"""Reads every image of a dataset's folder once: labels, formats, hashes, problems; splits
a pool of class folders into train, valid and test."""

import dataclasses
import pathlib

import numpy as np

from tfds_ctscan import dicom
from tfds_ctscan import hashing
from tfds_ctscan import images
from tfds_ctscan import layout
from tfds_ctscan import parallel
from tfds_ctscan import splitting


@dataclasses.dataclass(frozen=True)
class Record:
  """One readable image with what the audit and the builder need to know."""
  file: layout.ImageFile
  format: str  # the decoded format, e.g. "PNG"
  shape: tuple[int, int]  # (height, width)
  exact: str
  encoded: pathlib.Path | None = None  # its pixels as PNG, when scanned with `encode_to`


@dataclasses.dataclass
class Scan:
  """Everything found in a dataset's folder."""
  data_root: pathlib.Path
  records: list[Record]
  phashes: np.ndarray  # [len(records), 256] perceptual hashes
  ignored: list[layout.Ignored]
  unreadable: list[str]  # one message per file that could not be decoded
  leaked: list[bool]
  class_names: tuple[str, ...] = layout.CLASS_NAMES
  pooled: bool = False  # its splits were assigned (`splitting.split_pool`)

  @property
  def files_found(self) -> int:
    return len(self.records) + len(self.ignored) + len(self.unreadable)


class UnreadableImagesError(ValueError):
  """One or more image files could not be decoded; lists all of them."""


def _read(f: layout.ImageFile, max_pixels: int, png: pathlib.Path | None,
          window: dicom.Window):
  """(Record, perceptual hash) of one file, or the ImageError that refuses it; with
  `png`, its decoded pixels are also written there as PNG."""
  try:
    pixels, fmt = images.read(f.path, max_pixels, window)
  except images.ImageError as e:
    return e
  if png is not None:
    png.write_bytes(images.encode_png(pixels))
  return (Record(f, fmt, pixels.shape[:2], hashing.exact_hash(pixels), png),
          hashing.perceptual_hash(pixels))


def scan(data_root: "pathlib.Path | layout.Layout", max_pixels: int = images.MAX_PIXELS,
         threads: int | None = None, encode_to: pathlib.Path | None = None,
         window: dicom.Window = dicom.LUNG, split_seed: int = 0) -> Scan:
  """Decodes every candidate image of a layout (a path: the Kaggle `Data/` folder), on
  `threads` threads (default: the CPU count); the result does not depend on them.

  With `encode_to` (a folder), each image is also written there as PNG while it is
  decoded (`Record.encoded`): the builder writes those bytes, so no image is decoded
  twice. DICOM slices go through `window`. A pooled layout's images are split into
  train, valid and test by `splitting.split_pool` (seeded by `split_seed`): copies stay
  in one split, so none is flagged leaked.

  Raises:
    layout.LayoutError: see `layout.list_split`.
    splitting.TooFewImagesError: a pool with too few images of a class to split.
  """
  lay = data_root if isinstance(data_root, layout.Layout) else layout.kaggle(data_root)
  records, hashes, unreadable = [], [], []
  files, ignored = [], layout.list_outside_splits(lay)
  for split in lay.splits:
    split_files, split_ignored = layout.list_split(lay, split)
    files += split_files
    ignored += split_ignored
  def read(item):
    i, f = item
    return _read(f, max_pixels, None if encode_to is None
                 else pathlib.Path(encode_to) / f"{i:07d}.png", window)

  for result in parallel.ordered_map(read, enumerate(files), threads):
    if isinstance(result, images.ImageError):
      unreadable.append(str(result))
    else:
      records.append(result[0])
      hashes.append(result[1])
  phashes = (np.stack(hashes) if hashes
             else np.zeros((0, hashing.THUMB_SIZE ** 2), np.uint8))
  if lay.pooled and records:
    labels = [lay.class_names.index(r.file.label) for r in records]
    split_of = splitting.split_pool(labels, hashing.component_ids(phashes), split_seed,
                                    lay.class_names)
    records = [dataclasses.replace(r, file=dataclasses.replace(r.file, split=s))
               for r, s in zip(records, split_of)]
  leaked = hashing.leaked([r.file.split for r in records],
                          [r.exact for r in records], phashes, layout.SPLITS)
  return Scan(lay.root, records, phashes, ignored, unreadable, leaked,
              lay.class_names, lay.pooled)


def raise_if_unreadable(result: Scan) -> None:
  """Raises one error naming every unreadable or refused image."""
  if result.unreadable:
    listing = "\n  ".join(result.unreadable)
    raise UnreadableImagesError(
        f"{len(result.unreadable)} image file(s) under {result.data_root} cannot "
        f"be used:\n  {listing}\nRemove or replace them (re-download the "
        "dataset if they came from Kaggle), then build again.")


def format_mismatches(result: Scan) -> list[tuple[str, str]]:
  """(file, actual format) for files whose extension names another format."""
  out = []
  for r in result.records:
    expected = images.EXTENSION_FORMATS.get(r.file.path.suffix.lower())
    if expected is None and r.format == "DICOM":
      continue  # DICOM files are often exported without an extension
    if expected != r.format:
      out.append((r.file.rel_name, r.format))
  return out


def duplicate_groups(result: Scan) -> tuple[list[list[str]], list[list[str]]]:
  """(exact groups, near groups) of file names; near groups exclude the exact ones."""
  names = [r.file.rel_name for r in result.records]
  exact = [[names[i] for i in g]
           for g in hashing.groups([r.exact for r in result.records])]
  exact_sets = {frozenset(g) for g in exact}
  near = []
  for g in hashing.near_groups(result.phashes):
    group = [names[i] for i in g]
    distinct = {result.records[i].exact for i in g}
    if len(distinct) > 1 and frozenset(group) not in exact_sets:
      near.append(group)
  return exact, near


def label_conflicts(result: Scan) -> list[list[str]]:
  """Groups of identical images filed under more than one class."""
  out = []
  for g in hashing.groups([r.exact for r in result.records]):
    if len({result.records[i].file.label for i in g}) > 1:
      out.append([f"{result.records[i].file.rel_name} ({result.records[i].file.label})"
                  for i in g])
  return out
