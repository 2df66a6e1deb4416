"""The report's gallery: the misclassified images, most confident first, each with the map
of where the model looked; and the pointing game's line where the data has findings."""

import keras
import numpy as np

from ctdist.data import examples
from ctdist.reporting import html
from ctdist.saliency import explainers
from ctdist.saliency import gradcam
from ctdist.saliency import overlay
from ctdist.scoring import predictions


def misclassified(models: list[keras.Model], p: predictions.Predictions, b,
            limit: int) -> str:
  """The misclassified examples of `p` (most confident first), each with the Grad-CAM
  of the predicted class (averaged over `models`, the folds of an ensemble)."""
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
  explainers = [gradcam.Explainer(m, gradcam.choose_layer(m)) for m in models]
  cams = np.mean([ex.maps(batch, predicted)[0] for ex in explainers], axis=0)
  figures = []
  for i, name, image, cam in zip(shown, names, batch, cams):
    true, pred = p.class_names[p.labels[i]], p.class_names[p.probs[i].argmax()]
    pictures = np.concatenate([image, overlay.blend(image, cam)], axis=1)
    figures.append(
        f"<figure>{html.image(overlay.png(overlay.enlarge(pictures, 112)), name)}"
        f"<figcaption><b>{html.esc(name)}</b><br>true {html.esc(true)} "
        f"(p {p.probs[i, p.labels[i]]:.2f}), predicted <b>{html.esc(pred)}</b> "
        f"(p {p.probs[i].max():.2f})" + (" \u00b7 leaked copy" if p.leaked[i] else "")
        + "</figcaption></figure>")
  layer = explainers[0].layer
  note = (f'<p class="note">{len(wrong)} of {len(p.labels)} {html.esc(p.split)} images '
          f"misclassified; {len(shown)} shown (most confident first). Left: the model's "
          f"input; right: Grad-CAM of the predicted class at {html.esc(layer.name)} "
          f"({layer.height}\u00d7{layer.width} map"
          + (f", averaged over {len(models)} fold models" if len(models) > 1 else "")
          + "), red = raised the score most.</p>")
  return note + '<div class="gallery">' + "".join(figures) + "</div>"


def pointing_line(model: keras.Model, b, split: str) -> str:
  """The pointing game's line where the dataset records its findings' boxes."""
  if "findings" not in b.info.features:
    return ""
  try:
    r = explainers.pointing_game(explainers.explainer(model), b, split)
  except ValueError as e:  # no correctly classified image with a finding
    return f"<p><b>Pointing game</b>: not played ({html.esc(e)}).</p>"
  iv = r.get("interval")
  return (f"<p><b>Pointing game</b> (where the findings were drawn): the Grad-CAM peak "
          f"falls inside the finding's box for {r['hits']} of {r['images']} correctly "
          f"classified {html.esc(split)} images with a finding = {r['share']:.3f}"
          + (f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else "")
          + f"; chance (share of the map's cells touching the box) {r['chance']:.3f}. "
          f"Per class: "
          + html.esc(", ".join(f"{k} {c['hits']}/{c['images']}"
                               for k, c in r["per_class"].items()))
          + ". <span class=\"note\">python -m ctdist.explain --pointing_game "
          "--method=occlusion checks it without gradients.</span></p>")
