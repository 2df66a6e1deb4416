"""The report's gallery: the misclassified images, most confident first, each with the map
of where the model looked (the method that passes the pointing game, named under each
picture), and the lines saying which map that is and why."""

import keras
import numpy as np

from ctdist.data import examples
from ctdist.reporting import html
from ctdist.saliency import choice
from ctdist.saliency import explainers
from ctdist.saliency import gradcam
from ctdist.saliency import overlay
from ctdist.scoring import predictions


def misclassified(models: list[keras.Model], p: predictions.Predictions, b, limit: int,
                  pick: choice.Choice | None = None) -> str:
  """The misclassified examples of `p` (most confident first), each with the map of the
  predicted class: `pick`'s method for one model (its label under each picture), or the
  Grad-CAM averaged over `models` (the folds of an ensemble; no pointing game)."""
  wrong = np.flatnonzero(p.probs.argmax(1) != p.labels)
  if not len(wrong):
    return f"<p>No misclassified image in {html.esc(p.split)} ({len(p.labels)} images).</p>"
  wrong = wrong[np.argsort(-p.probs[wrong].max(1), kind="stable")]
  shown = wrong[:limit]
  if not len(shown):
    return f"<p>{len(wrong)} misclassified; the gallery is off (--gallery=0).</p>"
  size = int(models[0].input_shape[1])
  names = [str(p.file_names[i]) for i in shown]
  split = p.split.removesuffix("_ensemble")
  images = examples.images_named(b, split, size, names)
  batch = np.stack([images[n] for n in names])
  predicted = p.probs[shown].argmax(1)
  if pick is not None:
    explainers_ = [pick.explainer]
    label, drawn = pick.label(), explainers.describe_text(explainers.describe(pick.explainer))
  else:
    explainers_ = [gradcam.Explainer(m, gradcam.choose_layer(m)) for m in models]
    layer = explainers_[0].layer
    drawn = (f"Grad-CAM at {layer.name} ({layer.height}\u00d7{layer.width} map"
             + (f", averaged over {len(models)} fold models" if len(models) > 1 else "") + ")")
    label = "Grad-CAM - pointing game not played"
  cams = np.mean([ex.maps(batch, predicted)[0] for ex in explainers_], axis=0)
  figures = []
  for i, name, image, cam in zip(shown, names, batch, cams):
    true, pred = p.class_names[p.labels[i]], p.class_names[p.probs[i].argmax()]
    pictures = overlay.caption(overlay.enlarge(
        np.concatenate([image, overlay.blend(image, cam)], axis=1), 112), label)
    figures.append(
        f"<figure>{html.image(overlay.png(pictures), name)}"
        f"<figcaption><b>{html.esc(name)}</b><br>true {html.esc(true)} "
        f"(p {p.probs[i, p.labels[i]]:.2f}), predicted <b>{html.esc(pred)}</b> "
        f"(p {p.probs[i].max():.2f})" + (" \u00b7 leaked copy" if p.leaked[i] else "")
        + "</figcaption></figure>")
  note = (f'<p class="note">{len(wrong)} of {len(p.labels)} {html.esc(p.split)} images '
          f"misclassified; {len(shown)} shown (most confident first). Left: the model's "
          f"input; right: {html.esc(drawn)} of the predicted class, red = raised the score "
          "most.</p>")
  return note + '<div class="gallery">' + "".join(figures) + "</div>"


def choice_line(pick: choice.Choice, split: str) -> str:
  """Which map the gallery shows and why: each pointing game played, against chance."""
  lines = []
  for game in pick.games.values():
    iv = game.get("interval")
    lines.append(
        f"<p><b>Pointing game, {html.esc(explainers.describe_text(game))}</b> (where the "
        f"findings were drawn): the map's peak falls inside the finding's box for "
        f"{game['hits']} of {game['images']} correctly classified {html.esc(split)} images "
        f"with a finding = {game['share']:.3f}"
        + (f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else "")
        + f"; chance (share of the map's cells touching the box) {game['chance']:.3f}: "
        + ("passes" if choice.passes(game) else "<b>fails</b>") + ". Per class: "
        + html.esc(", ".join(f"{k} {c['hits']}/{c['images']}"
                             for k, c in game["per_class"].items())) + ".</p>")
  drawn = explainers.describe_text(explainers.describe(pick.explainer))
  lines.append(f"<p><b>The pictures below</b>: {html.esc(drawn)} \u2014 {html.esc(pick.why)} "
               f'<span class="note">(a map passes when its hits\u2019 95 % interval lies '
               "above chance)</span>.</p>")
  return "".join(lines)
