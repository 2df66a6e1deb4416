"""Where a dataset's images are and what their folders mean: the Kaggle `Data/` folder
(its fixed class folders) or a user's own class folders (`own_folder`), and its files."""

import dataclasses
import os
import pathlib
from typing import Callable

from tfds_ctscan import images

SPLITS = ("train", "valid", "test")
# The split of every file of a folder without split folders until the builder assigns it
# (tfds_ctscan.splitting).
POOL = "pool"

# Label order of the `label` feature (alphabetical, as the Kaggle class folders sort).
CLASS_NAMES = (
    "adenocarcinoma",
    "large_cell_carcinoma",
    "normal",
    "squamous_cell_carcinoma",
)

# The class folders of the Kaggle release, per split (label -> folder): train and valid
# carry the TNM stage, test does not.
_STAGED = {
    "adenocarcinoma": "adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib",
    "large_cell_carcinoma": "large.cell.carcinoma_left.hilum_T2_N2_M0_IIIa",
    "normal": "normal",
    "squamous_cell_carcinoma": "squamous.cell.carcinoma_left.hilum_T1_N2_M0_IIIa",
}
KAGGLE_FOLDERS = {
    "train": _STAGED,
    "valid": _STAGED,
    "test": {"adenocarcinoma": "adenocarcinoma",
             "large_cell_carcinoma": "large.cell.carcinoma",
             "normal": "normal",
             "squamous_cell_carcinoma": "squamous.cell.carcinoma"},
}
# Every folder name accepted in any split: the release's, and the label names themselves.
FOLDER_TO_LABEL = {
    **{folder: label for folders in KAGGLE_FOLDERS.values()
       for label, folder in folders.items()},
    **{name: name for name in CLASS_NAMES},
}

# Files that operating systems and archivers leave behind.
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX"})


class LayoutError(ValueError):
  """The manual directory does not hold the Kaggle layout."""


@dataclasses.dataclass(frozen=True)
class Layout:
  """A dataset's folder and the meaning of its class folders.

  `root` holds train/, valid/ and test/, each holding class folders, or (`pooled`) the
  class folders themselves; `folder_to_label` maps a class folder's name to its class,
  `class_names` is the label order.
  """
  root: pathlib.Path
  class_names: tuple[str, ...]
  folder_to_label: dict
  pooled: bool = False
  # A class folder without a usable image is a mistake (a user's folder); the Kaggle
  # layout keeps its behaviour.
  require_images: bool = False

  @property
  def splits(self) -> tuple[str, ...]:
    return (POOL,) if self.pooled else SPLITS


def kaggle(data_root: pathlib.Path) -> Layout:
  """The Kaggle release's layout at its `Data/` folder (`find_data_root`)."""
  return Layout(pathlib.Path(data_root), CLASS_NAMES, FOLDER_TO_LABEL)


@dataclasses.dataclass(frozen=True)
class ImageFile:
  """One candidate image: where it is and which split and label its folder says."""
  path: pathlib.Path
  rel_name: str  # relative to Data/, e.g. "test/normal/7.png"
  split: str
  label: str


@dataclasses.dataclass(frozen=True)
class Ignored:
  """A file that is not part of the dataset, and why."""
  rel_name: str
  reason: str


def kaggle_root(path: os.PathLike | str,
                extract: Callable[[pathlib.Path], os.PathLike | str]) -> pathlib.Path:
  """The `Data/` folder of a Kaggle download, whichever form the user gives.

  Accepts the zip itself, a folder holding exactly one zip, a folder holding `Data/`
  (up to two levels up) or `Data/` itself. `extract(zip_path)` unpacks a zip and
  returns the folder it unpacked into (the builder passes TFDS's download manager).

  Raises:
    LayoutError: none of these forms, naming what was looked for.
  """
  path = pathlib.Path(path)
  if path.is_file() and path.suffix.lower() == ".zip":
    return find_data_root(extract(path))
  try:
    return find_data_root(path)
  except LayoutError:
    zips = sorted(path.glob("*.zip")) if path.is_dir() else []
    if len(zips) != 1:
      raise
    return find_data_root(extract(zips[0]))


def find_data_root(path: os.PathLike | str) -> pathlib.Path:
  """Returns the folder holding `train/`, `valid/` and `test/`.

  Accepts `Data/` itself or any folder up to two levels above it (the Kaggle
  zip extracts to `Data/`; some unzip tools add a folder named after the zip).

  Raises:
    LayoutError: no such folder, naming what was looked for.
  """
  root = pathlib.Path(path)
  if not root.is_dir():
    raise LayoutError(f"{root} is not a directory")
  candidates = [root]
  for _ in range(2):
    candidates += [c for parent in candidates for c in sorted(parent.iterdir())
                   if c.is_dir() and c.name not in JUNK_NAMES]
    candidates = list(dict.fromkeys(candidates))
  for c in candidates:
    if any((c / s).is_dir() for s in SPLITS):
      missing = [s for s in SPLITS if not (c / s).is_dir()]
      if missing:
        raise LayoutError(
            f"{c} has no split folder(s) {missing}; the Kaggle layout is "
            f"Data/{{{','.join(SPLITS)}}}/<class folder>/<image>")
      return c
  raise LayoutError(
      f"no Data/ folder with {'/, '.join(SPLITS)}/ found in {root} (searched two "
      "levels down); point --manual_dir at the unzipped Kaggle download "
      "(the folder that contains Data/) or at the zip's folder")


def is_junk(name: str) -> bool:
  return name in JUNK_NAMES or name.startswith(".") or name.startswith("._")


def _files_under(path: pathlib.Path) -> list[pathlib.Path]:
  """`path` if it is a file, else every file below it, sorted."""
  if not path.is_dir():
    return [path]
  return sorted(pathlib.Path(d) / f for d, _, names in os.walk(path) for f in names)


def list_outside_splits(lay: Layout) -> list[Ignored]:
  """Every file in `Data/` that is not inside train/, valid/ or test/ (a README, ...);
  none for a pool (a file beside its class folders is listed by `list_split`)."""
  if lay.pooled:
    return []
  return [Ignored(p.relative_to(lay.root).as_posix(), "outside train/, valid/ and test/")
          for entry in sorted(lay.root.iterdir()) if entry.name not in SPLITS
          for p in _files_under(entry)]


def list_split(lay: Layout, split: str) -> tuple[list[ImageFile], list[Ignored]]:
  """Lists one split's candidate images and the files ignored in it (`POOL`: the class
  folders of a pooled layout).

  A file counts as a candidate if its extension is an image extension or its
  content is an image; other files are ignored and reported.

  Raises:
    LayoutError: a class folder with an unknown name, or (a user's layout) a class
      folder without any image.
  """
  data_root = lay.root
  split_dir = data_root if split == POOL else data_root / split
  files, ignored = [], []
  unknown, empty = [], []
  for entry in sorted(split_dir.iterdir()):
    rel = entry.relative_to(data_root).as_posix()
    if is_junk(entry.name):  # a file, or a folder such as .ipynb_checkpoints/: each file
      ignored += [Ignored(p.relative_to(data_root).as_posix(), "hidden or system file")
                  for p in _files_under(entry)]
      continue
    if not entry.is_dir():
      ignored.append(Ignored(rel, "file outside any class folder"))
      continue
    if entry.name not in lay.folder_to_label:
      unknown.append(entry.name)
      continue
    label = lay.folder_to_label[entry.name]
    before = len(files)
    for dirpath, dirnames, filenames in os.walk(entry):
      dirnames.sort()
      for fname in sorted(filenames):
        path = pathlib.Path(dirpath) / fname
        rel_name = path.relative_to(data_root).as_posix()
        if is_junk(fname) or any(is_junk(p) for p in path.relative_to(entry).parts):
          ignored.append(Ignored(rel_name, "hidden or system file"))
        elif (path.suffix.lower() in images.IMAGE_EXTENSIONS
              or _looks_like_image(path)):
          files.append(ImageFile(path, rel_name, split, label))
        else:
          ignored.append(Ignored(
              rel_name, f"not an image (extension {path.suffix or 'none'!r}, "
              "content not a known image format)"))
    if len(files) == before:
      empty.append(str(entry))
  if unknown:
    raise LayoutError(
        f"unknown class folder(s) {unknown} in {split_dir}; accepted names: "
        f"{sorted(lay.folder_to_label)}")
  if empty and lay.require_images:
    raise LayoutError(f"class folder(s) without any image: {', '.join(empty)}; put the "
                      "class's images there, or remove the folder")
  return files, ignored


def _looks_like_image(path: pathlib.Path) -> bool:
  with open(path, "rb") as f:
    head = f.read(64 * 1024)
  return images.sniff_format(head) is not None
