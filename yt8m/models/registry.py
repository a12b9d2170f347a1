"""Model specs (`models/<id>.yaml`) validated into typed objects, and `build(spec)`.

A spec names a model of the zoo and a preset, and may override any architecture or training
setting:

    model: nextvlad          # see `MODELS`
    preset: demo             # paper (the reference's hyperparameters) or demo (two CPU cores)
    seed: 7
    architecture:            # keyword arguments of the model's builder
      clusters: 32
    training:                # see `settings.TrainingSettings`
      epochs: 4

Unknown models, presets or keys are errors that name the file, the key and what is allowed.
"""

import hashlib
import importlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import Yt8mError
from ..predictions import MIN_TOP_K
from .settings import AFTER_FOLDS_KEYS as AFTER_FOLDS_KEYS
from .settings import POSITIVE_KEYS as POSITIVE_KEYS
from .settings import TRAINING_KEYS as TRAINING_KEYS
from .settings import TrainingSettings, check_keys, check_ranges, check_types


@dataclass(frozen=True)
class Entry:
    builder: object
    presets: dict
    training: dict
    level: str = "frame"  # frame: uint8 frames + mask; video: mean features; clips: raw video
    reference: str = ""


# A model id is its module's name under `yt8m.models.zoo`.
ZOO = ("nextvlad", "mix_nextvlad", "attention_cluster", "attention_lstm", "gated_netvlad",
       "gated_netrvlad", "netfv", "soft_dbof", "lstm", "gru", "dbof", "frame_logistic",
       "video_logistic", "video_moe")


# The raw-video models: they read clips of `input/kinetics/` (`clip_specs`), not `features/`.
CLIP_ZOO = ("stnet",)


def _entries(names):
    return {name: Entry(**importlib.import_module(f"{__package__}.zoo.{name}").MODELS[name])
            for name in names}


_CACHE = {}


def models():
    """{name: Entry} of every model in the zoo."""
    if not _CACHE:
        _CACHE.update(_entries(ZOO))
    return _CACHE


def clip_models():
    """{name: Entry} of the raw-video models."""
    return _entries(CLIP_ZOO)


SPEC_KEYS = ("model", "preset", "seed", "num_classes", "architecture", "training",
             "predictions", "segments")


@dataclass
class Spec:
    """A validated model spec."""

    model: str
    preset: str = "demo"
    seed: int = 0
    num_classes: int | None = None
    architecture: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    top_k: int | None = None  # predictions: {top_k: K}: store each video's K best logits
    segments: dict | None = None  # 2019: fine-tune on rated segments (`yt8m.models.segments`)
    source: str = "<spec>"

    @property
    def entry(self):
        return models()[self.model]

    @property
    def level(self):
        return self.entry.level

    def settings(self):
        """(architecture kwargs, training settings): the preset with the overrides applied, as
        mappings (the config hash covers exactly these)."""
        arch = dict(self.entry.presets[self.preset]) | self.architecture
        train = dict(self.entry.training[self.preset]) | self.training
        return arch, train

    def training_settings(self):
        """The training settings of `settings()`, typed and checked (`TrainingSettings`)."""
        return TrainingSettings.of(self.settings()[1], f"{self.source}: training")

    def config_hash(self):
        """A short hash of everything that determines the trained model."""
        arch, train = self.settings()
        train = {k: v for k, v in train.items() if k not in AFTER_FOLDS_KEYS}
        teacher = train.get("teacher")
        if teacher:  # a rebuilt teacher gives other targets
            from .distill import fingerprint

            train["teacher_fingerprint"] = fingerprint(teacher)
        text = json.dumps({"model": self.model, "architecture": arch, "training": train,
                           "seed": self.seed, "num_classes": self.num_classes},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_settings(source, name, builder, presets, data, training_keys, optional=()):
    """(preset, architecture, training) of a spec mapping: a known preset, the architecture
    keys among `builder`'s arguments, the training keys and types of `training_keys` (a None
    value of a key in `optional` passes, to turn a preset's value off)."""
    preset = data.get("preset", "demo")
    if preset not in presets:
        raise Yt8mError(f"{source}: preset: {preset!r} is not one of {', '.join(presets)}")
    arch = data.get("architecture") or {}
    train = data.get("training") or {}
    for key, value in (("architecture", arch), ("training", train)):
        if not isinstance(value, dict):
            raise Yt8mError(f"{source}: {key}: expected a mapping of settings")
    arguments = [a for a, p in inspect.signature(builder).parameters.items()
                 if a != "num_classes" and p.kind is not p.VAR_KEYWORD]
    check_keys(f"{source}: architecture of {name}", arch, arguments)
    check_keys(f"{source}: training", train, list(training_keys))
    given = {k: v for k, v in train.items() if not (v is None and k in optional)}
    check_types(f"{source}: training", given, training_keys)
    check_ranges(f"{source}: training", given, training_keys)
    return preset, arch, train


def read_spec_file(path):
    """The mapping in a spec's YAML file; a missing file or bad YAML is an error naming it."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise Yt8mError(f"{path}: no such spec") from None
    except yaml.YAMLError as e:
        raise Yt8mError(f"{path}: not valid YAML ({e})") from None


def parse_spec(data, source="<spec>"):
    """Validate a spec mapping (from YAML) into a `Spec`."""
    if not isinstance(data, dict):
        raise Yt8mError(f"{source}: a spec is a mapping with keys {', '.join(SPEC_KEYS)}")
    check_keys(source, data, SPEC_KEYS)
    name = data.get("model")
    if name not in models():
        raise Yt8mError(f"{source}: model: unknown model {name!r}; the zoo has "
                        f"{', '.join(models())}")
    entry = models()[name]
    preset, arch, train = check_settings(source, name, entry.builder, entry.presets, data,
                                         TRAINING_KEYS)
    for key in ("seed", "num_classes"):
        if key in data and data[key] is not None and not isinstance(data[key], int):
            raise Yt8mError(f"{source}: {key} must be an integer, got {data[key]!r}")
    spec = Spec(model=name, preset=preset, seed=data.get("seed", 0) or 0,
                num_classes=data.get("num_classes"), architecture=arch, training=train,
                top_k=_top_k(data.get("predictions"), source),
                segments=_segments(data, entry, source), source=source)
    spec.training_settings()  # the merged settings' values, checked now
    return spec


def _segments(data, entry, source):
    """The `segments:` settings (None: no segment stage)."""
    if "segments" not in data:
        return None
    from .segments import SEGMENT_KEYS

    given = data["segments"] or {}
    if not isinstance(given, dict):
        raise Yt8mError(f"{source}: segments: expected a mapping such as {{epochs: 3}}")
    if entry.level != "frame":
        raise Yt8mError(f"{source}: segments: only frame-level models score segments")
    check_keys(f"{source}: segments", given, list(SEGMENT_KEYS))
    check_types(f"{source}: segments", given, SEGMENT_KEYS)
    for key, value in given.items():
        if value <= 0:
            raise Yt8mError(f"{source}: segments: {key} must be above 0, got {value!r}")
    return given


def _top_k(stored, source):
    """K of `predictions: {top_k: K}` (None: dense float16 predictions)."""
    if stored is None:
        return None
    if not isinstance(stored, dict):
        raise Yt8mError(f"{source}: predictions: expected a mapping such as {{top_k: 100}}")
    check_keys(f"{source}: predictions", stored, ["top_k"])
    k = stored.get("top_k")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < MIN_TOP_K):
        raise Yt8mError(f"{source}: predictions: top_k must be an integer of at least "
                        f"{MIN_TOP_K} (the classes GAP@20 and a submission read), got {k!r}")
    return k


def load_spec(path):
    """Read and validate `models/<id>.yaml`."""
    return parse_spec(read_spec_file(path), str(path))


def build(spec, num_classes=None):
    """The Keras model of a spec (a `Spec`, a mapping or a YAML path); outputs are logits."""
    if isinstance(spec, (str, Path)):
        spec = load_spec(spec)
    elif isinstance(spec, dict):
        spec = parse_spec(spec)
    arch, _ = spec.settings()
    classes = num_classes or spec.num_classes or 3862
    try:
        return spec.entry.builder(num_classes=classes, **arch)
    except (TypeError, ValueError) as e:
        raise Yt8mError(f"{spec.source}: cannot build {spec.model}: {e}") from None
