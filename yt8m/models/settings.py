"""The training settings of a spec as typed, frozen objects, their defaults and their checks.

A spec's `training:` mapping is merged over its preset's (`Spec.settings()`, whose mapping the
config hash covers). `TrainingSettings.of(mapping)` (YouTube-8M models) and
`ClipTrainingSettings.of(mapping)` (raw-video models) turn that mapping into one object whose
field defaults are the values a setting takes when neither the preset nor the spec sets it. Every
value is checked when the object is built, so a bad spec fails when it is read rather than when
its training reaches the setting.

The keys a spec may set and their YAML types (`TRAINING_KEYS`) are derived from the fields.
"""

import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ..errors import Yt8mError
from ..features.loader import SAMPLINGS

OPTIMIZERS = ("adam", "rmsprop", "sgd")
LOSS_REDUCTIONS = ("sum_over_classes", "sum")
FEATURES = ("frames", "means")
# "auto": mixed_bfloat16 where bfloat16 is native, float32 elsewhere (`training.dtype_policy`);
# the others are Keras dtype policies.
MIXED_PRECISION = ("auto", "float32", "mixed_bfloat16", "mixed_float16", "bfloat16", "float16",
                   "float64")
# Training settings that act once the folds are trained: changing them keeps the folds.
AFTER_FOLDS_KEYS = ("refit",)
# Training settings that must be above zero wherever they are set (of either kind of spec).
POSITIVE_KEYS = ("batch_size", "epochs", "num_frames", "learning_rate", "decay_rate",
                 "decay_examples", "clipnorm", "early_stopping", "eval_batch_size", "workers",
                 "test_clips", "test_segments", "test_crop", "short_side")


def check_keys(where, given, allowed):
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise Yt8mError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")


def check_types(where, values, types):
    """An error naming the key of the first value in `values` that is not of its type in
    `types` (an int is a float; a bool is not an int)."""
    for key, value in values.items():
        expected = types[key]
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or (expected is int and isinstance(value, bool)):
            raise Yt8mError(f"{where}: {key} must be {expected.__name__}, got {value!r}")


def check_ranges(where, given, types):
    """An error for the first value of `given` out of its range: `teacher_weight` in [0, 1],
    the `POSITIVE_KEYS` above zero."""
    if not 0 <= given.get("teacher_weight", 0) <= 1:
        raise Yt8mError(f"{where}: teacher_weight must be between 0 and 1, got "
                        f"{given['teacher_weight']!r}")
    for key in POSITIVE_KEYS:
        if key in given and given[key] <= 0:
            least = "at least 1" if types[key] is int else "above 0"
            raise Yt8mError(f"{where}: {key} must be {least}, got {given[key]!r}")


def _yaml_type(annotation):
    """The type a spec writes a field's value in: `float | None` -> float, a tuple -> list."""
    if isinstance(annotation, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    base = typing.get_origin(annotation) or annotation
    return list if base is tuple else base


@functools.cache
def spec_types(cls):
    """{key: type} of the settings a spec may set: the fields of `cls`, in their order."""
    return {f.name: _yaml_type(f.type) for f in fields(cls)}


class _Settings:
    """What both kinds of settings share: `of`, which checks every value (build them with it),
    the checks, and `mixed_precision`."""

    @classmethod
    def of(cls, settings, where="training"):
        """`settings` itself when it is one of these objects, else the object of a mapping of
        settings (a spec's merged `training:`); `where` starts every error message. A None value
        leaves a setting whose default is None at its default."""
        if isinstance(settings, cls):
            return settings
        if not isinstance(settings, Mapping):
            raise Yt8mError(f"{where}: expected a mapping of settings")
        check_keys(where, settings, list(spec_types(cls)))
        optional = {f.name for f in fields(cls) if f.default is None}
        given = {k: v for k, v in settings.items() if not (v is None and k in optional)}
        cls._check(where, given)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})

    @classmethod
    def _check(cls, where, given):
        keys = spec_types(cls)
        check_types(where, {k: list(v) if isinstance(v, tuple) else v for k, v in given.items()},
                    keys)
        check_ranges(where, given, keys)
        name = given.get("mixed_precision", "float32")
        if name not in MIXED_PRECISION:
            raise Yt8mError(f"{where}: mixed_precision must be one of "
                            f"{', '.join(MIXED_PRECISION)}, not {name!r}")


@dataclass(frozen=True)
class TrainingSettings(_Settings):
    """The training settings of a YouTube-8M spec: its preset's `training`, then its own.

    Every shipped preset sets optimizer, learning_rate, batch_size and epochs, and the frame-level
    ones num_frames and sampling; the defaults serve the settings a preset leaves out and the
    partial mappings that `make_optimizer`, `make_loss` and `CacheBatches` accept.
    """

    #: adam, rmsprop or sgd.
    optimizer: str = "adam"
    #: The (starting) learning rate.
    learning_rate: float = 1e-3
    #: The learning rate's factor at each decay step; None: no decay.
    decay_rate: float | None = None
    #: Decay by `decay_rate` every that many examples (staircase); None: by epochs or none.
    decay_examples: int | None = None
    #: Decay by `decay_rate` at each of these epochs (unless `decay_examples` is set).
    boundaries_epochs: tuple[float, ...] | None = None
    #: Examples per training step, and per batch of the held-out and test predictions.
    batch_size: int = 32
    #: Epochs each fold trains (a refit model: the folds' mean best epoch).
    epochs: int = 1
    #: Clip each gradient to this global norm; None: no clipping.
    clipnorm: float | None = None
    #: Frames per example (frame-level models).
    num_frames: int = 300
    #: Which frames: head, segments or random (`yt8m.features.loader.frame_positions`).
    sampling: str = "head"
    #: The features a preset declares, frames or means; the model's level decides what is fed.
    features: str = "frames"
    #: sum_over_classes (averaged over the batch) or sum (over the batch too).
    loss_reduction: str = "sum_over_classes"
    #: RMSprop's decay of the squared gradients' average.
    rho: float = 0.9
    #: RMSprop's epsilon.
    epsilon: float = 1e-7
    #: Centered RMSprop.
    centered: bool = False
    #: SGD's momentum.
    momentum: float = 0.0
    #: A Keras dtype policy, or auto (mixed_bfloat16 where bfloat16 is native, else float32).
    mixed_precision: str = "float32"
    #: Stop a fold after this many epochs without a better held-out GAP@20; None: never.
    early_stopping: int | None = None
    #: Splits whose labeled videos outside the folds every fold also trains on.
    train_splits: tuple[str, ...] = ()
    #: The PCA eigenvalues (`eigenvals.npy`) that start the reverse-whitening scale; None: none.
    eigenvalues: str | None = None
    #: Start the output biases at the class log-odds of the training videos.
    prior_bias: bool = False
    #: Also train one model on every labeled video, whose test predictions become the source's.
    refit: bool = False
    #: A trained model or ensemble whose out-of-fold logits are soft targets; None: labels only.
    teacher: str | None = None
    #: The teacher's share of each target, in [0, 1].
    teacher_weight: float = 0.5

    @classmethod
    def _check(cls, where, given):
        super()._check(where, given)
        choices = (("optimizer", OPTIMIZERS, "must be adam, rmsprop or sgd, not {!r}"),
                   ("loss_reduction", LOSS_REDUCTIONS,
                    "must be 'sum_over_classes' or 'sum', not {!r}"),
                   ("features", FEATURES, "must be 'frames' or 'means', not {!r}"))
        for key, allowed, message in choices:
            if key in given and given[key] not in allowed:
                raise Yt8mError(f"{where}: {key} {message.format(given[key])}")
        sampling = given.get("sampling", "head")
        if sampling not in SAMPLINGS:
            raise Yt8mError(f"{where}: unknown frame sampling {sampling!r}; choose one of "
                            f"{list(SAMPLINGS)}")
        bounds = given.get("boundaries_epochs") or ()
        if not all(isinstance(e, int | float) and not isinstance(e, bool) for e in bounds):
            raise Yt8mError(f"{where}: boundaries_epochs must be a list of epochs, got "
                            f"{list(bounds)!r}")
        from ..features.cache import SPLIT_ORDER

        unknown = [s for s in given.get("train_splits") or () if s not in SPLIT_ORDER]
        if unknown:
            raise Yt8mError(f"{where}: unknown split {sorted(set(map(str, unknown)))}; splits "
                            f"are {list(SPLIT_ORDER)}")


@dataclass(frozen=True)
class ClipTrainingSettings(_Settings):
    """The training settings of a raw-video spec (`clip_specs`): the builder's preset's
    `training`, then the spec's. The defaults are the reference's (the paper preset's)."""

    #: Epochs of one random clip per training video.
    epochs: int = 60
    #: Clips per training step.
    batch_size: int = 128
    #: SGD's starting learning rate.
    learning_rate: float = 0.01
    #: The learning rate's factor at 1/3 and again at 2/3 of the steps.
    lr_decay: float = 0.1
    #: SGD's momentum.
    momentum: float = 0.9
    #: Frames are scaled to this short side before cropping.
    short_side: int = 256
    #: ... and to this long side (the reference forces 4:3); None: the video's aspect ratio.
    long_side: int | None = None
    #: Segments of an evaluation clip; None: the architecture's (`ClipSpec.settings` fills it).
    test_segments: int | None = None
    #: Side of the evaluation crops; None: `short_side` (`ClipSpec.settings` fills it).
    test_crop: int | None = None
    #: Clips scored per evaluation video (their softmax averaged).
    test_clips: int = 1
    #: Clips per evaluation batch.
    eval_batch_size: int = 4
    #: Processes or threads that decode clips.
    workers: int = 8
    #: Decode in processes rather than threads.
    use_multiprocessing: bool = False
    #: ImageNet ResNet weights that start the network (`pretrained.load_imagenet`); None: none.
    pretrained: str | None = None
    #: Leave out unreadable or too short videos instead of stopping.
    skip_bad_videos: bool = False
    #: Keep the decoded training frames in memory across epochs.
    cache_frames: bool = False
    #: A Keras dtype policy, or auto (mixed_bfloat16 where bfloat16 is native, else float32).
    mixed_precision: str = "float32"


TRAINING_KEYS = spec_types(TrainingSettings)
CLIP_TRAINING_KEYS = spec_types(ClipTrainingSettings)
