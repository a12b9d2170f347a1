"""Raw-video model specs (`models/<id>.yaml` naming a model of `VIDEO_MODELS`).

    model: stnet
    preset: demo            # paper (the reference's ResNet-50 StNet and training) or demo
    seed: 0
    data: input/kinetics    # a Kinetics-style dataset (see `yt8m.kinetics.dataset`)
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
from ..models.registry import check_keys, check_settings, check_types, read_spec_file

DEFAULT_DATA = "input/kinetics"
SPEC_KEYS = ("model", "preset", "seed", "data", "architecture", "training")
TRAINING_KEYS = {
    "epochs": int, "batch_size": int, "learning_rate": float, "lr_decay": float,
    "momentum": float, "short_side": int, "long_side": int, "test_segments": int, "test_crop": int,
    "test_clips": int, "eval_batch_size": int, "workers": int, "use_multiprocessing": bool,
    "pretrained": str, "skip_bad_videos": bool, "cache_frames": bool, "mixed_precision": str,
}
OPTIONAL_KEYS = ("long_side", "pretrained")
# The reference's training (PaddleVideo configs/stnet.yaml): SGD with momentum, lr x0.1 at 1/3
# and 2/3 of the epochs; frames scaled to 341 x 256 (a fixed 4:3, whatever the video's aspect;
# leave `long_side` out to keep it); test on 25 segments of a 256 centre crop. `test_crop` and
# `test_segments` default to `short_side` and the training segments.
TRAINING = {
    "paper": dict(epochs=60, batch_size=128, learning_rate=0.01, lr_decay=0.1, momentum=0.9,
                  short_side=256, long_side=341, test_segments=25, test_crop=256, test_clips=1,
                  eval_batch_size=4, workers=8, use_multiprocessing=False,
                  skip_bad_videos=False, cache_frames=False),
    "demo": dict(epochs=40, batch_size=16, learning_rate=0.02, lr_decay=0.1, momentum=0.9,
                 short_side=64, test_clips=2, eval_batch_size=16, workers=2,
                 use_multiprocessing=False, skip_bad_videos=False, cache_frames=True),
}


def _video_models():
    from ..models.zoo.stnet import PRESETS, build_stnet

    return {"stnet": (build_stnet, PRESETS)}


def is_video_spec(path):
    """Whether the YAML at `path` names a raw-video model (without validating the rest)."""
    try:
        data = read_spec_file(path)
    except Yt8mError:
        return False
    return isinstance(data, dict) and data.get("model") in _video_models()


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
        builder, presets = _video_models()[self.model]
        defaults = {name: p.default for name, p in inspect.signature(builder).parameters.items()
                    if p.default is not inspect.Parameter.empty and name != "num_classes"}
        arch = defaults | presets[self.preset] | self.architecture
        train = dict(TRAINING[self.preset]) | self.training
        train.setdefault("test_crop", train["short_side"])
        train.setdefault("test_segments", arch["segments"])
        return arch, train

    def build(self, num_classes, **overrides):
        builder, _ = _video_models()[self.model]
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
    models = _video_models()
    name = data.get("model")
    if name not in models:
        raise Yt8mError(f"{source}: model: {name!r} is not a raw-video model "
                        f"({', '.join(models)})")
    builder, presets = models[name]
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
