"""ctdist: chest-CT classification with ResNet50 transfer learning, on one CPU to a TPU."""

__version__ = "0.1.0"
