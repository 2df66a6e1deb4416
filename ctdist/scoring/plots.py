"""Training curves and confusion matrices as PNG files."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay
import tensorflow as tf


def _save(fig, path: str) -> None:
  with tf.io.gfile.GFile(path, "wb") as f:  # local paths and gs://
    fig.savefig(f, format="png", dpi=100)
  plt.close(fig)


def training_curves(history: list[dict], path: str) -> None:
  """Loss and accuracy per epoch, train and validation, phases marked."""
  if not history:
    return
  x = np.arange(1, len(history) + 1)
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, key in zip(axes, ("loss", "accuracy")):
    ax.plot(x, [h[key] for h in history], label=f"train {key}")
    ax.plot(x, [h[f"val_{key}"] for h in history], label=f"val {key}")
    switches = [i + 1 for i in range(1, len(history))
                if history[i]["phase"] != history[i - 1]["phase"]]
    for s in switches:
      ax.axvline(s - 0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("epoch (head, then fine-tune)")
    ax.set_title(key)
    ax.legend()
  fig.tight_layout()
  _save(fig, path)


def confusion_matrix(matrix, class_names: list[str], path: str, title: str) -> None:
  """Counts (rows true, columns predicted) as scikit-learn draws them."""
  fig, ax = plt.subplots(figsize=(6, 5))
  ConfusionMatrixDisplay(np.asarray(matrix), display_labels=class_names).plot(
      ax=ax, cmap="Blues", xticks_rotation=30, colorbar=False)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title)
  fig.tight_layout()
  _save(fig, path)


def reliability_diagram(bars: list[dict], path: str, title: str) -> None:
  """Accuracy against mean confidence per confidence bin (`stats.reliability`); the
  diagonal is perfect calibration, bar labels are the bins' example counts."""
  fig, ax = plt.subplots(figsize=(5, 5))
  ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
  for bar in bars:
    ax.bar(bar["low"], bar["accuracy"], width=bar["high"] - bar["low"], align="edge",
           color="tab:blue", alpha=0.7, edgecolor="black")
    ax.plot((bar["low"] + bar["high"]) / 2, bar["confidence"], "k.")
    ax.text((bar["low"] + bar["high"]) / 2, bar["accuracy"] + 0.02, str(bar["count"]),
            ha="center", fontsize=7)
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.08)
  ax.set_xlabel("confidence (top probability); dots: mean confidence")
  ax.set_ylabel("accuracy")
  ax.set_title(title)
  fig.tight_layout()
  _save(fig, path)
