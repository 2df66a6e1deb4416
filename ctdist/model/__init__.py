"""The ResNet50 classifier: its layers, its two-phase build, and its files."""
