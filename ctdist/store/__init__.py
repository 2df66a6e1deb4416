"""A run's folder on disk (local or gs://): writes never seen half-done, and the one reader
of its JSON files (options, history, metrics)."""
