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

from ctdist.cli import user_errors
from ctdist.config import commands as commands_config
from ctdist.config import flagtree
from ctdist.data import builders
from ctdist.data import examples
from ctdist.saliency import choice
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
  split = o.split.split
  try:
    model = console.run_model(o.run)
    model_dir = o.run.folder
    out = o.out or os.path.join(model_dir, "explain")
    b, unavailable = _dataset(model_dir, o, required=o.pointing_game)
    if o.pointing_game:
      examples.check_findings(b)
    if o.method == "auto":
      pick = choice.choose(model, b, split, out, o.layer, o.min_map_size, unavailable)
      if o.pointing_game and pick.game is None:
        raise pointing.NoImageToScoreError(pick.why)
    else:
      ex = explainers.explainer(model, o.method, o.layer, o.min_map_size)
      game = choice.play(ex, b, split, out) if o.pointing_game else None
      pick = choice.Choice(ex, f"--method={o.method}", {o.method: game} if game else {})
    if not o.pointing_game:
      results = explainers.explain_files(pick.explainer, paths, out, o.class_, pick.label())
  except (*user_errors.READING_A_RUN, gradcam.NoFeatureMapError, examples.NoFindingsError,
          pointing.NoImageToScoreError, explainers.UnknownClassError) as e:
    console.fail(e)
  if o.pointing_game:
    for game in pick.games.values():
      print(f"{game['dataset']} {split}, {explainers.describe_text(game)}, "
            f"{game['image_size']} px input; {game['misclassified']} misclassified and "
            f"{game['without_finding']} without a finding left out")
      print(pointing.render(game))
    print(f"pictures: {explainers.describe_text(explainers.describe(pick.explainer))}; "
          f"{pick.why}")
    return
  atomic.write_json(os.path.join(out, "explain.json"),
                    {"model": o.run.model_file, **explainers.describe(pick.explainer),
                     "label": pick.label(), "why": pick.why, "images": results})
  print(f"{explainers.describe_text(explainers.describe(pick.explainer))}; {pick.why}")
  print(explainers.render(results))
  if any("error" in r for r in results):
    sys.exit(1)


def _dataset(model_dir: str, o, required: bool):
  """The run's dataset (or --dataset's) and "" - or, when the pictures alone are asked
  for and it is not built here, None and the reason (the pictures then say they are
  unchecked). None and "" when no dataset is needed (image files, a named method)."""
  if not (required or o.method == "auto"):
    return None, ""
  try:
    return builders.builder(*options_file.run_dataset(model_dir, o.data.dataset,
                                                      o.data.data_dir)), ""
  except (builders.DatasetNotBuiltError, options_file.NoOptionsError) as e:
    if required:
      raise
    return None, str(e).split(";")[0]


if __name__ == "__main__":
  flagtree.define_flags(commands_config.ExplainOptions)
  app.run(main, flags_parser=console.parse_flags)
