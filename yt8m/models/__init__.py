"""Keras 3 models of the YouTube-8M zoo: layers, builders, the spec registry and training helpers.

`build(spec)` turns a `models/<id>.yaml` spec into a Keras model whose outputs are logits.
Keras is imported on first use, so importing this package stays cheap.
"""


def build(spec, num_classes=None):
    """The Keras model of a spec (path, mapping or `Spec`); see `yt8m.models.registry`."""
    from .registry import build as _build

    return _build(spec, num_classes)
