"""Raw-video model specs (`models/<id>.yaml` naming a model of `registry.clip_models()`).

    model: stnet
    preset: demo            # paper (the reference's ResNet-50 StNet and training) or demo
    seed: 0
    data: input/kinetics    # a Kinetics-style dataset (see `yt8m.input.kinetics.dataset`)
    architecture:           # keyword arguments of `build_stnet`
      segments: 4
    training:               # see `TRAINING_KEYS`
      epochs: 30

The same file conventions as the YouTube-8M specs: an unknown key, preset or a wrong type is an
error naming the file and the key.
"""

import hashlib
import inspect
import json
from dataclasses import dataclass, field

from ..errors import Yt8mError
from .registry import check_keys, check_settings, check_types, clip_models, read_spec_file

DEFAULT_DATA = "input/kinetics"
SPEC_KEYS = ("model", "preset", "seed", "data", "architecture", "training")
TRAINING_KEYS = {
    "epochs": int, "batch_size": int, "learning_rate": float, "lr_decay": float,
    "momentum": float, "short_side": int, "long_side": int, "test_segments": int, "test_crop": int,
    "test_clips": int, "eval_batch_size": int, "workers": int, "use_multiprocessing": bool,
    "pretrained": str, "skip_bad_videos": bool, "cache_frames": bool, "mixed_precision": str,
}
OPTIONAL_KEYS = ("long_side", "pretrained")
def is_video_spec(path):
    """Whether the YAML at `path` names a raw-video model (without validating the rest)."""
    try:
        data = read_spec_file(path)
    except Yt8mError:
        return False
    return isinstance(data, dict) and data.get("model") in clip_models()


@dataclass
class VideoSpec:
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


def parse_video_spec(data, source="<spec>"):
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
    return VideoSpec(model=name, preset=preset, seed=data.get("seed", 0),
                     data=data.get("data", DEFAULT_DATA), architecture=arch, training=train,
                     source=source)


def load_video_spec(path):
    return parse_video_spec(read_spec_file(path), str(path))
