"""Which map the pictures show: the method that passes the pointing game for the model at
hand, said on every picture.

A method passes when the 95 % interval of its hit share lies above chance (the share of
the map's cells touching the box). Grad-CAM is tried first and kept where it passes;
otherwise occlusion, where it passes. Each game is kept beside the run
(explain/pointing_game_<split>[_occlusion].json, with the weights' checksum) and played
again only when the weights changed. Data without drawn findings (the Kaggle slices)
cannot be checked: the pictures are Grad-CAM's and say that they are unchecked.
"""

import dataclasses
import os

import keras
import tensorflow as tf

from ctdist.config import commands as commands_config
from ctdist.model import saved
from ctdist.saliency import explainers
from ctdist.saliency import pointing
from ctdist.store import atomic
from ctdist.store import run_files

RULE = "95 % interval above chance"


def passes(game: dict) -> bool:
  """Whether a pointing game's hit share is above chance beyond its 95 % interval."""
  low = game["interval"]["low"] if "interval" in game else game["share"]
  return low > game["chance"]


def game_file(out_dir: str, split: str, method: str) -> str:
  """Where ctdist.explain --pointing_game keeps a method's game on `split`."""
  suffix = "" if method == "gradcam" else f"_{method}"
  return os.path.join(out_dir, f"pointing_game_{split}{suffix}.json")


def play(ex, b, split: str, out_dir: str) -> dict:
  """`ex`'s pointing game on `split`: the one kept in `out_dir` if it was played on these
  weights with this method (its layer, or its squares), else played now and kept."""
  method = explainers.describe(ex)
  path = game_file(out_dir, split, method["method"])
  checksum = saved.weights_checksum(ex.model)
  kept = run_files.read_json(out_dir, os.path.basename(path), {})
  if (kept.get("weights_checksum") == checksum and kept.get("dataset") == b.info.full_name
      and all(kept.get(k) == v for k, v in method.items())):
    return kept
  game = {**explainers.pointing_game(ex, b, split), "weights_checksum": checksum}
  game["passes"] = passes(game)
  tf.io.gfile.makedirs(out_dir)
  atomic.write_json(path, game)
  return game


@dataclasses.dataclass(frozen=True)
class Choice:
  """The explainer the pictures use, why, and every pointing game played to choose it
  (by method; none when no game could be played)."""
  explainer: object
  why: str
  games: dict = dataclasses.field(default_factory=dict)

  @property
  def method(self) -> str:
    return explainers.describe(self.explainer)["method"]

  @property
  def game(self) -> dict | None:
    """The pointing game of the method the pictures use (None: not played)."""
    return self.games.get(self.method)

  def label(self) -> str:
    """One short line written on each picture: the method and its pointing-game score."""
    name = "Grad-CAM" if self.method == "gradcam" else "occlusion"
    if self.game is None:
      return f"{name} - pointing game not played"
    verdict = "passes" if passes(self.game) else "FAILS"
    return (f"{name} - pointing game {self.game['share']:.2f} vs chance "
            f"{self.game['chance']:.2f}: {verdict}")


def _score(game: dict) -> str:
  return (f"{game['hits']}/{game['images']} = {game['share']:.3f}, chance "
          f"{game['chance']:.3f}")


def choose(model: keras.Model, b, split: str, out_dir: str, layer: str | None = None,
           min_size: int = commands_config.MIN_MAP_SIZE, unavailable: str = "") -> Choice:
  """Grad-CAM if it passes the pointing game on `split`, else occlusion if it passes; the
  failing Grad-CAM when neither does; Grad-CAM unchecked when `b` is None (`unavailable`
  says why) or has no findings. `why` says which case it was."""
  gradcam = explainers.explainer(model, "gradcam", layer, min_size)
  if b is None:
    return Choice(gradcam, f"pointing game not played: {unavailable}")
  if "findings" not in b.info.features:
    return Choice(gradcam, f"pointing game not played: {b.info.full_name} has no "
                  "drawn findings to check the map against")
  try:
    gc = play(gradcam, b, split, out_dir)
  except pointing.NoImageToScoreError as e:
    return Choice(gradcam, f"pointing game not played: {e}")
  if passes(gc):
    return Choice(gradcam, f"Grad-CAM passes the pointing game on {split} "
                  f"({_score(gc)})", {"gradcam": gc})
  occluder = explainers.explainer(model, "occlusion")
  oc = play(occluder, b, split, out_dir)
  games = {"gradcam": gc, "occlusion": oc}
  if passes(oc):
    return Choice(occluder, f"Grad-CAM fails the pointing game on {split} "
                  f"({_score(gc)}); occlusion passes ({_score(oc)})", games)
  return Choice(gradcam, f"neither map passes the pointing game on {split} (Grad-CAM "
                f"{_score(gc)}; occlusion {_score(oc)}): the pictures are Grad-CAM's",
                games)
