"""Where a trained model looked: Grad-CAM (or occlusion) per image, or the pointing game
against the synthetic findings' boxes.

Run: python -m ctdist.explain --model_dir=runs/demo/model IMAGE [IMAGE ...] --out=DIR
     python -m ctdist.explain --model_dir=runs/demo/model --pointing_game
     python -m ctdist.explain --model_dir=... --pointing_game --method=occlusion   (the check)
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist.cli import console  # pylint: disable=g-bad-import-order

import os
import sys

from absl import app
from absl import flags
import tensorflow as tf

from ctdist.cli import user_errors
from ctdist.config import commands as commands_config
from ctdist.config import flagtree
from ctdist.data import builders
from ctdist.data import examples
from ctdist.model import saved
from ctdist.saliency import explainers
from ctdist.saliency import gradcam
from ctdist.saliency import pointing
from ctdist.store import atomic
from ctdist.store import options_file


def main(argv):
  console.setup(flags.FLAGS.verbosity)
  paths = argv[1:]
  o = console.options(commands_config.ExplainOptions)
  if bool(paths) == o.pointing_game:
    raise app.UsageError("give image files, or --pointing_game (not both)")
  try:
    console.note_old_spelling(o.run)
    model_dir = o.run.folder
    out = o.out or os.path.join(model_dir, "explain")
    model = saved.load(o.run.model_file, o.run.flag)
    ex = explainers.explainer(model, o.method, o.layer, o.min_map_size)
    if o.pointing_game:
      b = builders.builder(*options_file.run_dataset(model_dir, o.data.dataset,
                                                     o.data.data_dir))
      result = explainers.pointing_game(ex, b, o.split.split)
    else:
      results = explainers.explain_files(ex, paths, out, o.class_)
  except (*user_errors.READING_A_RUN, gradcam.NoFeatureMapError, examples.NoFindingsError,
          pointing.NoImageToScoreError, explainers.UnknownClassError) as e:
    console.fail(e)
  if o.pointing_game:
    split = o.split.split
    tf.io.gfile.makedirs(out)
    suffix = "" if o.method == "gradcam" else f"_{o.method}"
    atomic.write_json(os.path.join(out, f"pointing_game_{split}{suffix}.json"), result)
    print(f"{result['dataset']} {split}, {explainers.describe_text(result)}, "
          f"{result['image_size']} px input; {result['misclassified']} misclassified and "
          f"{result['without_finding']} without a finding left out")
    print(pointing.render(result))
    return
  atomic.write_json(os.path.join(out, "explain.json"),
                    {"model": o.run.model_file, **explainers.describe(ex), "images": results})
  print(explainers.describe_text(explainers.describe(ex)))
  print(explainers.render(results))
  if any("error" in r for r in results):
    sys.exit(1)


if __name__ == "__main__":
  flagtree.define_flags(commands_config.ExplainOptions)
  app.run(main)
