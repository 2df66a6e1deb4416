"""Audits a chest-CT folder before training: the Kaggle release or your own class folders.

Run: python -m tfds_ctscan.audit DIR [--json PATH]
     python -m tfds_ctscan.audit --layout=folder DIR [--classes=a,b,c]
         [--window_center=-600 --window_width=1500] [--split_seed=0]
DIR is Data/, the folder above it, or the downloaded zip (`kaggle`), or your folder of
class folders (`folder`: the options of `tfds build --config='{"name": "mine", ...}'`,
so the audit shows the splits and copies the build will write). Uses the builder's own
scanning and hashing code, so the audit reports what `tfds build` will write.
Exit status: 0 clean, 1 when images are unreadable (listed), 2 on a mistake (no such
folder, not the layout, a corrupt zip), with one `error:` line.
"""

import collections
import json
import pathlib
import sys
import tempfile
import zipfile

from absl import app
from absl import flags

from tfds_ctscan import dicom
from tfds_ctscan import hashing
from tfds_ctscan import layout
from tfds_ctscan import own_folder
from tfds_ctscan import scan
from tfds_ctscan import splitting


def report(result: scan.Scan) -> dict:
  """Returns the audit as a JSON-ready dict."""
  counts = collections.defaultdict(lambda: collections.Counter())
  for r in result.records:
    counts[r.file.split][r.file.label] += 1
  exact, near = scan.duplicate_groups(result)
  return {
      "data_root": str(result.data_root),
      "class_names": list(result.class_names),
      "split_assigned": result.pooled,
      "counts": {s: dict(sorted(counts[s].items())) for s in layout.SPLITS},
      "files_found": result.files_found,
      "examples": len(result.records),
      "ignored": [{"file": i.rel_name, "reason": i.reason} for i in result.ignored],
      "unreadable": result.unreadable,
      "exact_duplicate_groups": exact,
      "near_duplicate_groups": near,
      "near_duplicate_rule": (
          f"mean absolute difference <= {hashing.NEAR_DUPLICATE_MAD} gray levels "
          f"between {hashing.THUMB_SIZE}x{hashing.THUMB_SIZE} grayscale thumbnails"),
      "leaked": [r.file.rel_name for r, f in zip(result.records, result.leaked) if f],
      "label_conflicts": scan.label_conflicts(result),
      "format_mismatches": [{"file": f, "format": fmt}
                            for f, fmt in scan.format_mismatches(result)],
  }


def render(rep: dict) -> str:
  """The human-readable summary of `report`."""
  lines = [f"Audit of {rep['data_root']}", f"Classes: {', '.join(rep['class_names'])}"]
  if rep["split_assigned"]:
    lines.append("Splits assigned from one pool: grouped (copies stay together), "
                 "stratified, as `tfds build` will write them")
  lines.append("")
  for split, per_class in rep["counts"].items():
    total = sum(per_class.values())
    parts = ", ".join(f"{k} {v}" for k, v in per_class.items())
    lines.append(f"  {split:6s} {total:5d}  ({parts})")
  n_ok, n_ign, n_bad = rep["examples"], len(rep["ignored"]), len(rep["unreadable"])
  lines += ["", f"Files found {rep['files_found']} = usable images {n_ok} + "
            f"ignored {n_ign} + unreadable {n_bad}"]
  sections = [
      ("Ignored files", [f"{i['file']}: {i['reason']}" for i in rep["ignored"]]),
      ("Unreadable images (tfds build will refuse these)", rep["unreadable"]),
      ("Exact duplicate groups (same decoded pixels)",
       [", ".join(g) for g in rep["exact_duplicate_groups"]]),
      (f"Near-duplicate groups ({rep['near_duplicate_rule']})",
       [", ".join(g) for g in rep["near_duplicate_groups"]]),
      ("Leaked: valid/test images copied from an earlier split", rep["leaked"]),
      ("Same image filed under several classes",
       [", ".join(g) for g in rep["label_conflicts"]]),
      ("Extension does not match content",
       [f"{m['file']} is {m['format']}" for m in rep["format_mismatches"]]),
  ]
  for title, items in sections:
    lines += ["", f"{title}: {len(items)}"]
    lines += [f"  {item}" for item in items[:50]]
    if len(items) > 50:
      lines.append(f"  ... {len(items) - 50} more (see --json)")
  return "\n".join(lines)


def _define_flags():
  flags.DEFINE_string("json", None, "Also write the audit as JSON to this path.")
  flags.DEFINE_enum("layout", "kaggle", ["kaggle", "folder"],
                    "kaggle: the Kaggle release; folder: your own class folders.")
  flags.DEFINE_list("classes", None, "folder: the class folders in label order (default: "
                    "every folder, sorted).")
  flags.DEFINE_float("window_center", dicom.LUNG.center, "DICOM window centre (HU).")
  flags.DEFINE_float("window_width", dicom.LUNG.width, "DICOM window width (HU).")
  flags.DEFINE_integer("split_seed", 0, "folder without split folders: the split's seed.")


def _fail(error: Exception) -> None:
  """A user's mistake: one line, exit status 2 (as every ctdist command)."""
  print(f"error: {error}", file=sys.stderr)
  sys.exit(2)


def _extract(zip_path: pathlib.Path, into: str) -> None:
  try:
    with zipfile.ZipFile(zip_path) as z:
      z.extractall(into)
  except (zipfile.BadZipFile, EOFError) as e:
    raise layout.LayoutError(f"{zip_path}: not a readable zip ({e}); download it again or "
                             "pass the unpacked folder") from e


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: python -m tfds_ctscan.audit DIR_OR_ZIP [--json PATH]")
  source = pathlib.Path(argv[1])
  with tempfile.TemporaryDirectory() as tmp:
    try:
      if source.suffix == ".zip" and source.is_file():
        _extract(source, tmp)
        source = pathlib.Path(tmp)
      f = flags.FLAGS
      window = own_folder.window(f.window_center, f.window_width, "--window_width")
      lay = (own_folder.layout_of(source, f.classes) if f.layout == "folder"
             else layout.find_data_root(source))
      result = scan.scan(lay, window=window, split_seed=f.split_seed)
    except (layout.LayoutError, splitting.TooFewImagesError) as e:
      _fail(e)
    rep = report(result)
  print(render(rep))
  if flags.FLAGS.json:
    pathlib.Path(flags.FLAGS.json).write_text(json.dumps(rep, indent=2))
  if rep["unreadable"]:
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
