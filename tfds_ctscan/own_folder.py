"""A user's own class folders as a dataset layout: which folders are classes (the folder
names, a list in label order, or a mapping that merges folders), and whether the folder
is split (train/, valid/, test/) or one pool for the builder to split."""

import os
import pathlib

from tfds_ctscan import dicom
from tfds_ctscan import layout


def _class_folders(path: pathlib.Path) -> list[str]:
  return sorted(e.name for e in path.iterdir() if e.is_dir() and not layout.is_junk(e.name))


def _mapping(root: pathlib.Path, found: list[str], classes) -> dict:
  """folder -> class for the folders found, from `classes`: None (each folder is its
  class), a list of folder names (that order) or a dict folder -> class name."""
  if classes is None:
    return {f: f for f in found}
  given = dict(classes) if isinstance(classes, dict) else {c: c for c in classes}
  for name in given.values():
    if not isinstance(name, str) or not name.strip() or "\n" in name:
      raise layout.LayoutError(f"class name {name!r} in the given classes: use a "
                               "non-empty name on one line")
  missing = [f for f in found if f not in given]
  if missing:
    raise layout.LayoutError(f"class folder(s) {missing} in {root} are not in the given "
                             f"classes {list(given)}: add them, or move them out of the folder")
  if not isinstance(classes, dict):
    absent = [c for c in given if c not in found]
    if absent:
      raise layout.LayoutError(f"the given class(es) {absent} have no folder in {root} "
                               f"(found {found}): name the class folders as the classes")
  return {f: given[f] for f in found}


def layout_of(path: os.PathLike | str, classes=None) -> layout.Layout:
  """The layout of a user's folder of class folders.

  `path` holds train/, valid/ and test/ (all three), each with the same classes, or the
  class folders directly (a single pool the builder splits). Class names are the
  folder names (sorted) unless `classes` gives them: a list of folder names in label
  order, or a dict folder -> class name (several folders may share a class: the Kaggle
  release's staged and plain names).

  Raises:
    layout.LayoutError: not a folder, some split folders only, classes that differ between
      splits, fewer than two classes, or folders the given classes do not name.
  """
  root = pathlib.Path(path)
  if not root.is_dir():
    raise layout.LayoutError(f"{root} is not a directory; give the folder that holds your "
                             "class folders (or train/, valid/ and test/ with class folders "
                             "in each)")
  present = [s for s in layout.SPLITS if (root / s).is_dir()]
  if present:
    missing = [s for s in layout.SPLITS if s not in present]
    if missing:
      raise layout.LayoutError(
          f"{root} has {'/, '.join(present)}/ but no {'/, '.join(missing)}/: give all of "
          f"{'/, '.join(layout.SPLITS)}/ with the same class folders in each, or only the "
          "class folders (the builder then splits them, grouped and stratified)")
    found = sorted({f for s in layout.SPLITS for f in _class_folders(root / s)})
    mapping = _mapping(root, found, classes)
    by_split = {s: sorted({mapping[f] for f in _class_folders(root / s)})
                for s in layout.SPLITS}
    for s in layout.SPLITS[1:]:
      if by_split[s] != by_split[layout.SPLITS[0]]:
        raise layout.LayoutError(
            f"the class folders differ between splits: {root / layout.SPLITS[0]} has "
            f"{by_split[layout.SPLITS[0]]}, {root / s} has {by_split[s]}; give every split "
            "the same classes (or map folder names to classes with the `classes` option)")
  else:
    found = _class_folders(root)
    mapping = _mapping(root, found, classes)
  order = list(classes.values() if isinstance(classes, dict) else classes or sorted(found))
  names = tuple(n for n in dict.fromkeys(order) if n in mapping.values())
  if len(names) < 2:
    raise layout.LayoutError(
        f"{root} holds {len(names)} class folder(s) {list(names)}: a classifier needs at "
        "least 2; put each class's images in a folder of its own")
  return layout.Layout(root, names, {f: mapping[f] for f in found}, pooled=not present,
                require_images=True)


def window(center, width, option: str) -> dicom.Window:
  """The DICOM window of a user's options; `option` names the width in the error.

  Raises:
    layout.LayoutError: a width of 0 or less.
  """
  try:
    return dicom.Window(float(center), float(width))
  except ValueError as e:
    raise layout.LayoutError(f"{option}={width}: {e}") from e
