"""Measurements behind `python -m ctdist.bench`: each returns plain dicts, asserts nothing."""
