"""Regenerates tfds_ctscan/dummy_data: `python -m tfds_ctscan.dummy_data_generation`."""

import pathlib
import shutil

from tfds_ctscan import synthetic

DUMMY_COUNTS = {
    "train": {"adenocarcinoma": 2, "large_cell_carcinoma": 2, "normal": 2,
              "squamous_cell_carcinoma": 2},
    "valid": {"adenocarcinoma": 1, "large_cell_carcinoma": 1, "normal": 1,
              "squamous_cell_carcinoma": 1},
    # 7 normal test images: the first is a copy of a train image (leaked).
    "test": {"adenocarcinoma": 1, "large_cell_carcinoma": 1, "normal": 7,
             "squamous_cell_carcinoma": 1},
}


def main():
  out = pathlib.Path(__file__).parent / "dummy_data"
  shutil.rmtree(out, ignore_errors=True)
  data = synthetic.write_kaggle_layout(out, seed=1, counts=DUMMY_COUNTS,
                                       size_range=(40, 64))
  (data / "train" / "normal" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")


if __name__ == "__main__":
  main()
