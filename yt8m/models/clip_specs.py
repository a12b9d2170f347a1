"""Raw-video model specs (`models/<id>.yaml` naming a model of `registry.clip_models()`).

    model: stnet
    preset: demo            # paper (the reference's ResNet-50 StNet and training) or demo
    seed: 0
    data: input/kinetics    # a Kinetics-style dataset (see `yt8m.input.kinetics.dataset`)
    architecture:           # keyword arguments of `build_stnet`
      segments: 4
    training:               # see `settings.ClipTrainingSettings`
      epochs: 30

The same file conventions as the YouTube-8M specs: an unknown key, preset or a wrong type is an
error naming the file and the key.
"""

import hashlib
import inspect
import json
from dataclasses import dataclass, field

from ..errors import Yt8mError
from .registry import check_settings, clip_models, read_spec_file
from .settings import CLIP_TRAINING_KEYS as TRAINING_KEYS
from .settings import ClipTrainingSettings, check_keys, check_types

DEFAULT_DATA = "input/kinetics"
SPEC_KEYS = ("model", "preset", "seed", "data", "architecture", "training")
# the settings a spec may set to null to turn its preset's value off
OPTIONAL_KEYS = ("long_side", "pretrained")


def is_clip_spec(path):
    """Whether the YAML at `path` names a raw-video model (without validating the rest)."""
    try:
        data = read_spec_file(path)
    except Yt8mError:
        return False
    return isinstance(data, dict) and data.get("model") in clip_models()


@dataclass
class ClipSpec:
    model: str
    preset: str = "demo"
    seed: int = 0
    data: str = DEFAULT_DATA
    architecture: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    source: str = "<spec>"

    def settings(self):
        """(architecture kwargs, training settings): the builder's defaults, then the preset,
        then the spec's overrides."""
        entry = clip_models()[self.model]
        builder, presets = entry.builder, entry.presets
        defaults = {name: p.default for name, p in inspect.signature(builder).parameters.items()
                    if p.default is not inspect.Parameter.empty and name != "num_classes"}
        arch = defaults | presets[self.preset] | self.architecture
        train = dict(entry.training[self.preset]) | self.training
        train.setdefault("test_crop", train["short_side"])
        train.setdefault("test_segments", arch["segments"])
        return arch, train

    def training_settings(self):
        """The training settings of `settings()`, typed and checked (`ClipTrainingSettings`)."""
        return ClipTrainingSettings.of(self.settings()[1], f"{self.source}: training")

    def build(self, num_classes, **overrides):
        builder = clip_models()[self.model].builder
        arch = self.settings()[0] | overrides
        try:
            return builder(num_classes=num_classes, **arch)
        except (TypeError, ValueError) as e:
            raise Yt8mError(f"{self.source}: cannot build {self.model}: {e}") from None

    def config_hash(self):
        """A short hash of everything that determines the trained model (the data folder's
        contents are fingerprinted separately)."""
        arch, train = self.settings()
        text = json.dumps({"model": self.model, "architecture": arch, "training": train,
                           "seed": self.seed, "data": self.data}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_clip_spec(data, source="<spec>"):
    if not isinstance(data, dict):
        raise Yt8mError(f"{source}: a spec is a mapping with keys {', '.join(SPEC_KEYS)}")
    check_keys(source, data, SPEC_KEYS)
    models = clip_models()
    name = data.get("model")
    if name not in models:
        raise Yt8mError(f"{source}: model: {name!r} is not a raw-video model "
                        f"({', '.join(models)})")
    builder, presets = models[name].builder, models[name].presets
    # `long_side: null` and `pretrained: null` turn the preset's value off
    preset, arch, train = check_settings(source, name, builder, presets, data, TRAINING_KEYS,
                                         optional=OPTIONAL_KEYS)
    check_types(source, {k: data[k] for k in ("seed", "data") if k in data},
                {"seed": int, "data": str})
    spec = ClipSpec(model=name, preset=preset, seed=data.get("seed", 0),
                     data=data.get("data", DEFAULT_DATA), architecture=arch, training=train,
                     source=source)
    spec.training_settings()  # the merged settings' values, checked now
    return spec


def load_clip_spec(path):
    return parse_clip_spec(read_spec_file(path), str(path))
