"""Padding never changes a frame-level model's logits: every model of the registry, every preset.

The loader pads each batch to `num_frames` with zeros and a mask of 0. A model whose masking is
right gives the same logits whatever the padded frames hold and however many there are: in
inference mode for a batch and for each video alone, and in training mode (dropout off) for the
same batch, where masked BatchNorm statistics must skip the padding. Parametrized over the
registry, so a new model or preset is covered without editing this file. (The per-layer checks
are in `test_layers.py`; this one also covers what the models add around the layers: the
bidirectional LSTM's backward pass, masked BatchNorm, masked max and mean pooling, the mixture's
gate.)

Not covered, by design: the video-level models (`level: video`: one vector per video, no frames
and no padding), and StNet (`yt8m.models.zoo.stnet`, not in this registry): its input is a fixed
`(T, S, S, 3N)` layout of T segments sampled over the whole video, with no mask and no padding.
"""

import keras
import numpy as np
import pytest

from yt8m.models import build
from yt8m.models.registry import models, parse_spec

N = 24  # the padded length
LENGTHS = np.array([17, 9, 1])  # real frames per video; 17 < N, so every video has padding
CLASSES = 12  # the masking path does not depend on the classes (keeps the paper presets cheap)
ATOL = 1e-5

FRAME_MODELS = [(name, preset) for name, entry in sorted(models().items())
                if entry.level == "frame" for preset in entry.presets]
# The paper presets build models of up to 10^8 weights: about a minute on two cores for all of
# them, so `make test-slow` checks them; `make test` checks every demo preset (same code paths,
# narrower layers).
CASES = [pytest.param(name, preset, id=f"{name}-{preset}",
                      marks=[pytest.mark.slow] if preset == "paper" else [])
         for name, preset in FRAME_MODELS]


def test_every_model_is_frame_or_video_level():
    """A model of another level would escape the check below: make that an explicit choice."""
    assert {entry.level for entry in models().values()} <= {"frame", "video"}
    assert {name for name, _ in FRAME_MODELS} >= {"nextvlad", "mix_nextvlad", "attention_lstm"}


def padded_batch():
    rng = np.random.default_rng(0)
    mask = np.arange(N)[None, :] < LENGTHS[:, None]
    frames = rng.integers(0, 256, (len(LENGTHS), N, 1152), dtype=np.uint8)
    frames[~mask] = 0  # as the loader pads
    return frames, mask


@pytest.fixture
def float32_policy():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy(policy)


@pytest.mark.parametrize(("name", "preset"), CASES)
def test_padded_frames_never_change_the_logits(name, preset, float32_policy):
    keras.utils.set_random_seed(0)
    model = build(parse_spec({"model": name, "preset": preset}), num_classes=CLASSES)
    frames, mask = padded_batch()

    def logits(frames, mask, training=False):
        out = model({"frames": frames, "mask": mask}, training=training)
        return keras.ops.convert_to_numpy(out).astype(np.float64)

    def check(got, expected, what):
        np.testing.assert_allclose(got, expected, rtol=ATOL, atol=ATOL,
                                   err_msg=f"{name} ({preset}): {what}")

    reference = logits(frames, mask)
    assert reference.shape == (len(LENGTHS), CLASSES) and np.isfinite(reference).all()
    assert np.ptp(reference, axis=0).max() > 1e-3  # the videos differ: the logits are not flat

    # (a) garbage in the padded frames: random bytes, then all 255
    rng = np.random.default_rng(1)
    garbage = [np.where(mask[..., None], frames, fill) for fill in
               (rng.integers(0, 256, frames.shape, dtype=np.uint8), np.full_like(frames, 255))]
    for noisy in garbage:
        check(logits(noisy, mask), reference, "garbage in the padding")

    # (b) less padding: the batch cut to its longest real video, and each video alone, unpadded
    longest = int(LENGTHS.max())
    check(logits(frames[:, :longest], mask[:, :longest]), reference,
          f"padding cut to {longest} frames")
    for i, n in enumerate(LENGTHS):
        check(logits(frames[i:i + 1, :n], mask[i:i + 1, :n]), reference[i:i + 1],
              f"video {i} alone, {n} frames")

    # Training mode too, with dropout off: BatchNorm then normalises by the batch's statistics,
    # which must skip the padded frames (the same batch of videos, so the same statistics).
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    trained = logits(frames, mask, training=True)
    assert np.isfinite(trained).all()
    check(logits(garbage[0], mask, training=True), trained, "garbage in the padding, training")
    check(logits(frames[:, :longest], mask[:, :longest], training=True), trained,
          f"padding cut to {longest} frames, training")
