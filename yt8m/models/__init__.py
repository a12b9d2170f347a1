"""Keras 3 models, layers and training helpers (imports Keras lazily, per module)."""
