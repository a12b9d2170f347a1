"""How big a model spec is: its parameters and its checkpoint against the 2018 challenge's
1 GB limit."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yt8m.models.clip_specs import is_clip_spec, load_clip_spec, parse_clip_spec
from yt8m.models.registry import clip_models, load_spec, parse_spec

LIMIT_BYTES = 1024**3  # the 2018 challenge's model size limit
CHECKPOINT_DTYPES = (("float32", 4), ("float16", 2))  # (name, bytes per parameter)
CLIP_CLASSES = 400  # a raw-video model's classes when none are given: Kinetics-400's


@dataclass(frozen=True)
class ModelSize:
    """A built spec's model, preset and parameter counts."""

    model: str
    preset: str
    trainable: int
    total: int

    def checkpoint_bytes(self, width):
        """Bytes of a checkpoint storing every parameter in `width` bytes."""
        return self.total * width


def _parameters(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def build_model(spec, preset="paper", num_classes=None):
    """(spec, Keras model) of a spec file (models/<id>.yaml) or of a zoo model name at `preset`;
    a raw-video model (`clip_models`) is built with `CLIP_CLASSES` classes unless told otherwise."""
    named = {"model": spec, "preset": preset}
    if is_clip_spec(spec) or spec in clip_models():
        parsed = load_clip_spec(spec) if spec.endswith(".yaml") else parse_clip_spec(named, spec)
        return parsed, parsed.build(num_classes or CLIP_CLASSES)
    from yt8m.models import build

    parsed = load_spec(spec) if Path(spec).exists() or spec.endswith(".yaml") \
        else parse_spec(named, spec)
    return parsed, build(parsed, num_classes)


def model_size(spec, preset="paper", num_classes=None):
    """The `ModelSize` of a spec file or zoo model name (see `build_model`)."""
    parsed, model = build_model(spec, preset, num_classes)
    return ModelSize(parsed.model, parsed.preset, _parameters(model.trainable_weights),
                     _parameters(model.weights))
