"""Every zoo layer: shape, masking, config round trip, .keras save/load, one training step.

Runs on the backend Keras starts with (TensorFlow by default);
`test_layers_demo_models_and_oof_training_pass_on_jax` runs this file, the demo model tests and
the out-of-fold training tests again under `KERAS_BACKEND=jax`.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from yt8m.models.layers import (
    AttentionPooling,
    ContextGating,
    Dequantize,
    MemberMixture,
    MixtureOfExperts,
    NetFV,
    NetVLAD,
    NeXtVLAD,
    ShiftingAttention,
    SoftDBoF,
)

ROOT = Path(__file__).resolve().parents[1]
B, T, F = 3, 7, 16
LENGTHS = np.array([7, 4, 1])

# name -> (factory, input kind, output width)
FRAME_LAYERS = {
    "netvlad": (lambda: NetVLAD(4), 4 * F),
    "netrvlad": (lambda: NetVLAD(4, residuals=False), 4 * F),
    "netfv": (lambda: NetFV(4), 2 * 4 * F),
    "netfv_coupled": (lambda: NetFV(4, couple_weights=True), 2 * 4 * F),
    "soft_dbof": (lambda: SoftDBoF(4), 4),
    "soft_dbof_max": (lambda: SoftDBoF(4, max_pool=True), 2 * 4),
    "nextvlad": (lambda: NeXtVLAD(clusters=4, groups=4, expansion=2), 4 * 2 * F // 4),
    "shifting_attention": (lambda: ShiftingAttention(3), 3 * F),
    "attention_pooling": (lambda: AttentionPooling(), F),
}
VECTOR_LAYERS = {
    "context_gating": (lambda: ContextGating(), F),
    "context_gating_se": (lambda: ContextGating(reduction=4), F),
    "context_gating_identity": (
        lambda: ContextGating(reduction=4, batch_norm=False, initial_gate=0.9), F),
    "mixture_of_experts": (lambda: MixtureOfExperts(5, 2, l2=1e-6), 5),
}


def frames(seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, F)).astype("float32")


def mask():
    return np.arange(T)[None, :] < LENGTHS[:, None]


def frame_model(layer):
    x = keras.Input((None, F), name="x")
    m = keras.Input((None,), dtype="bool", name="m")
    return keras.Model({"x": x, "m": m}, layer(x, mask=m))


def vector_model(layer):
    x = keras.Input((F,), name="x")
    return keras.Model({"x": x}, layer(x))


@pytest.mark.parametrize("name", sorted(FRAME_LAYERS))
def test_frame_layer_shape_and_padding_never_matters(name):
    factory, width = FRAME_LAYERS[name]
    layer = factory()
    x = frames()
    out = np.asarray(layer(x, mask=mask()))
    assert out.shape == (B, width) and np.isfinite(out).all()
    # the padded length does not matter: video 0 alone, video 1 with its padding cut off
    alone = np.asarray(layer(x[:1], mask=mask()[:1]))
    np.testing.assert_allclose(alone, out[:1], atol=1e-5)
    short = np.asarray(layer(x[1:2, :4], mask=mask()[1:2, :4]))
    np.testing.assert_allclose(short, out[1:2], atol=1e-5)
    noisy = x.copy()
    noisy[~mask()] = 1e3  # garbage in the padded frames, in inference and training mode
    for training in (False, True):
        a = np.asarray(layer(x, mask=mask(), training=training))
        b = np.asarray(layer(noisy, mask=mask(), training=training))
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", sorted(FRAME_LAYERS) + sorted(VECTOR_LAYERS))
def test_config_round_trip_save_load_and_one_training_step(name, tmp_path):
    factory, width = {**FRAME_LAYERS, **VECTOR_LAYERS}[name]
    keras.utils.set_random_seed(0)  # the same start whatever ran before in this process
    layer = factory()
    rebuilt = type(layer).from_config(layer.get_config())
    assert rebuilt.get_config() == layer.get_config()
    is_frame = name in FRAME_LAYERS
    model = frame_model(layer) if is_frame else vector_model(layer)
    inputs = {"x": frames(), "m": mask()} if is_frame else {"x": frames()[:, 0]}
    before = np.asarray(model.predict_on_batch(inputs))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(inputs)), before, atol=1e-6)

    model.compile(keras.optimizers.SGD(0.1), "mse")
    target = np.random.default_rng(1).normal(size=(B, width)).astype("float32")
    weights = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    first = model.train_on_batch(inputs, target)
    second = model.train_on_batch(inputs, target)
    assert np.isfinite(first) and second < first
    assert any(not np.allclose(w, np.asarray(v)) for w, v in
               zip(weights, model.trainable_weights, strict=True))


def _l2(x, axis):
    return x / np.sqrt(np.maximum((x ** 2).sum(axis=axis, keepdims=True), 1e-12))


@pytest.mark.parametrize("couple_weights", [False, True])
def test_netfv_is_the_references_fisher_vector(couple_weights):
    """NetFV against WILLOW's formulas, written out in numpy for one video's real frames."""
    layer = NetFV(3, couple_weights=couple_weights, batch_norm=False)
    x, m = frames(), mask()
    out = np.asarray(layer(x, mask=m))
    kernel, bias = (np.asarray(w) for w in layer.assign.weights)
    centres = 0.01 * kernel if couple_weights else np.asarray(layer.centres)  # (F, K)
    sigma = np.asarray(layer.deviations) ** 2 + 1e-6
    for i, n in enumerate(LENGTHS):
        v = x[i, :n].astype(np.float64)  # (n, F)
        logits = v @ kernel + bias
        a = np.exp(logits - logits.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)  # (n, K)
        diff = v[:, :, None] - centres[None]  # (n, F, K)
        first = (a[:, None, :] * diff).sum(0) / sigma
        second = (a[:, None, :] * diff ** 2).sum(0) / sigma ** 2 - a.sum(0)
        first = _l2(_l2(first, 0).reshape(-1), 0)  # per cluster, then whole (feature-major)
        second = _l2(second.reshape(-1), 0)
        np.testing.assert_allclose(out[i], np.concatenate([first, second]), atol=1e-5)


def test_soft_dbof_pools_the_assignments_of_the_real_frames():
    layer = SoftDBoF(5, max_pool=True, batch_norm=False)
    x, m = frames(), mask()
    out = np.asarray(layer(x, mask=m))
    kernel, bias = (np.asarray(w) for w in layer.assign.weights)
    for i, n in enumerate(LENGTHS):
        logits = x[i, :n].astype(np.float64) @ kernel + bias
        a = np.exp(logits - logits.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        expected = np.concatenate([_l2(a.sum(0), 0), _l2(a.max(0), 0)])
        np.testing.assert_allclose(out[i], expected, atol=1e-5)


def test_dequantize_matches_the_starter_code():
    q = np.array([[0, 1, 128, 255]], np.uint8)
    expected = q * (4 / 255) + 4 / 512 - 2  # float32 on the device: compare to 1e-6 absolute
    np.testing.assert_allclose(np.asarray(Dequantize()(q)), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(Dequantize(half_bin=False)(q)), q * (4 / 255) - 2,
                               atol=1e-6)
    scaled = Dequantize(channel_scale=True)
    scaled.build((1, 4))
    scaled.set_weights([np.array([1, 2, 3, 4], np.float32)])
    np.testing.assert_allclose(np.asarray(scaled(q)), expected * [1, 2, 3, 4], atol=4e-6)
    assert not scaled.trainable_weights


def test_mixture_of_experts_is_a_probability_with_a_dummy_expert():
    moe = MixtureOfExperts(4, 2)
    p = np.asarray(moe(np.random.default_rng(0).normal(size=(5, 8)).astype("float32")))
    assert ((p > 0) & (p < 1)).all()
    moe.experts.kernel.assign(np.zeros((8, 8), "float32"))
    moe.experts.bias.assign(np.full((8,), 30.0, "float32"))  # experts certain
    moe.gates.kernel.assign(np.zeros((8, 12), "float32"))  # uniform over 2 experts + dummy
    np.testing.assert_allclose(np.asarray(moe(np.ones((1, 8), "float32"))), 2 / 3, rtol=1e-5)


def test_initial_gate_starts_every_gate_at_its_value():
    x = frames()[:, 0]
    for layer in (ContextGating(reduction=4, batch_norm=False, initial_gate=0.98),
                  ContextGating(batch_norm=False, initial_gate=0.5)):
        np.testing.assert_allclose(np.asarray(layer(x)), x * layer.initial_gate, rtol=1e-5)
    with pytest.raises(ValueError, match="batch_norm=False"):
        ContextGating(initial_gate=0.9)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        ContextGating(reduction=4, initial_gate=1.0)


def member_logits(seed=0, members=3, classes=6):
    return np.random.default_rng(seed).normal(0, 2, (B, members, classes)).astype("float32")


def test_member_mixture_starts_as_the_members_mean():
    from yt8m.models.layers.member_mixture import DUMMY_GATE_OFFSET

    z = member_logits()
    dummy_share = 1 / (1 + np.exp(-DUMMY_GATE_OFFSET))  # softmax([0, offset])[1]
    expected = (1 - dummy_share) / (1 + np.exp(-z.mean(axis=1)))
    for gating in (True, False):
        np.testing.assert_allclose(np.asarray(MemberMixture(1, input_gating=gating)(z)),
                                   expected, rtol=1e-5)
    two = np.asarray(MemberMixture(2)(z))  # two equal experts: the dummy's share shrinks
    assert (two > expected).all() and ((two > 0) & (two < 1)).all()


@pytest.mark.parametrize("with_context", [False, True])
def test_member_mixture_round_trip_and_training_step(with_context, tmp_path):
    layer = MemberMixture(2, l2=1e-4)
    assert MemberMixture.from_config(layer.get_config()).get_config() == layer.get_config()
    logits = keras.Input((3, 6), name="logits")
    inputs, data = {"logits": logits}, {"logits": member_logits()}
    if with_context:
        inputs["video"] = keras.Input((F,), name="video")
        data["video"] = frames()[:, 0]
        out = layer(logits, inputs["video"])
    else:
        out = layer(logits)
    model = keras.Model(inputs, out)
    before = np.asarray(model.predict_on_batch(data))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(data)), before, atol=1e-6)
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    target = (member_logits(1)[:, 0] > 0).astype("float32")
    first = model.train_on_batch(data, target)
    for _ in range(5):
        last = model.train_on_batch(data, target)
    assert last < first
    if with_context:  # the context reaches the gates: the prediction now depends on it
        other = dict(data, video=data["video"] * -3)
        assert not np.allclose(model.predict_on_batch(other), model.predict_on_batch(data))


def _pytest_under_jax(*targets, deselect):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-o", "addopts=", *map(str, targets), "-k", deselect],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


# Two halves: the layers and models with `make test`, the training with the slow tests.
@pytest.mark.skipif(keras.backend.backend() == "jax", reason="this is the JAX run itself")
def test_layers_demo_models_and_stnet_pass_on_jax():
    """This file, every demo model's forward pass and .keras round trip, the StNet layers and
    demo model, under JAX."""
    _pytest_under_jax(Path(__file__), ROOT / "tests" / "test_models.py",
                      ROOT / "tests" / "test_stnet.py",
                      deselect="not paper_preset and not size_command and not on_jax and not "
                               "suggests_only and not willow_counts")


@pytest.mark.slow  # about three minutes: with the slow tests, so that make test keeps its budget
@pytest.mark.skipif(keras.backend.backend() == "jax", reason="this is the JAX run itself")
def test_oof_training_and_stnet_training_pass_on_jax():
    """Out-of-fold training with its resume and data parallelism, and a StNet spec's training,
    evaluation and results file, under JAX. (The settings checks, TensorBoard curves,
    best-epoch bookkeeping and the top-k store do not depend on the backend and run once, under
    TensorFlow.)"""
    _pytest_under_jax(ROOT / "tests" / "test_oof.py",
                      str(ROOT / "tests" / "test_kinetics_training.py") +
                      "::test_stnet_spec_trains_evaluates_and_writes_results",
                      deselect="not divergence and not best_epoch and not out_of_range and not "
                               "tensorboard and not extra_training and not out_of_memory and not "
                               "fingerprint and not nan_guard and not top_k")
