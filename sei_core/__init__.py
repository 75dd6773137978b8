"""sei-review: find mislabeled images with the Signed Entropy Integral (see README.md)."""

from . import threads as _threads

_threads.apply_defaults()  # before anything imports torch: OpenMP reads it when it loads
