"""StNet: the paper preset's parameter count, the temporal layers, the demo model's round trip,
and that the frame-averaging baseline really ignores the order of frames."""

import keras
import numpy as np
import pytest

from yt8m.models.layers import TemporalBlock, TemporalXception
from yt8m.models.zoo.stnet import PRESETS, build_stnet

# ResNet-50 without fc 23,508,032 + conv1 on 15 channels 37,632 + two temporal blocks 3,936,768
# + temporal Xception 5,266,432 + classifier 410,000 (BatchNorm moving statistics excluded)
PAPER_TRAINABLE = 23_508_032 + 37_632 + 3_936_768 + 5_266_432 + 410_000


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_paper_preset_has_the_reference_parameter_count():
    model = build_stnet(**PRESETS["paper"])
    assert trainable(model) == PAPER_TRAINABLE == 33_158_864
    assert model.input_shape == (None, 7, 224, 224, 15)
    assert model.output_shape == (None, 400)


def test_temporal_block_mixes_only_neighbouring_segments():
    block = TemporalBlock(segments=5)
    x = np.zeros((2 * 5, 3, 3, 4), "float32")
    block.build(x.shape)
    # A positive kernel keeps every tap open through the ReLU; a random draw can close one.
    block.conv.kernel.assign(np.full(block.conv.kernel.shape, 0.1, "float32"))
    base = np.asarray(block(x, training=False))
    x[2, 1, 1, 0] = 10.0  # clip 0, segment 2, one position
    changed = np.abs(np.asarray(block(x, training=False)) - base).reshape(2, 5, 3, 3, 4)
    touched = changed.sum(axis=(2, 3, 4)) > 1e-6
    np.testing.assert_array_equal(touched[0], [False, True, True, True, False])
    assert not touched[1].any()  # the other clip is untouched
    assert changed[0][:, [0, 2]].sum() < 1e-6  # other positions in the image are untouched


def test_temporal_xception_shape_and_round_trip(tmp_path):
    inputs = keras.Input((7, 32))
    model = keras.Model(inputs, TemporalXception(16)(inputs))
    x = np.random.default_rng(0).normal(size=(2, 7, 32)).astype("float32")
    before = np.asarray(model.predict_on_batch(x))
    assert before.shape == (2, 7, 16) and (before >= 0).all()
    model.save(tmp_path / "x.keras")
    np.testing.assert_allclose(
        np.asarray(keras.models.load_model(tmp_path / "x.keras").predict_on_batch(x)), before,
        atol=1e-6)


def demo_clips(seed=0, batch=2):
    p = PRESETS["demo"]
    shape = (batch, p["segments"], p["image_size"], p["image_size"], 3 * p["segment_length"])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_demo_model_round_trip_and_training_step(tmp_path):
    model = build_stnet(num_classes=6, **PRESETS["demo"])
    x = demo_clips()
    before = np.asarray(model.predict_on_batch(x))
    assert before.shape == (2, 6)
    model.save(tmp_path / "stnet.keras")
    loaded = keras.models.load_model(tmp_path / "stnet.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(x)), before, atol=1e-5)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    first = model.train_on_batch(x, np.array([1, 4]))
    for _ in range(3):
        last = model.train_on_batch(x, np.array([1, 4]))
    assert last < first


@pytest.mark.parametrize("temporal_modeling", [False, True])
def test_only_temporal_modeling_sees_the_order_of_segments(temporal_modeling):
    arch = dict(PRESETS["demo"], segment_length=1, temporal_modeling=temporal_modeling)
    model = build_stnet(num_classes=6, **arch)
    x = demo_clips()[..., :3]
    forward = np.asarray(model.predict_on_batch(x))
    backward = np.asarray(model.predict_on_batch(x[:, ::-1]))
    assert np.allclose(forward, backward, atol=1e-5) != temporal_modeling


def torchvision_state(model, rng):
    """A torchvision-layout ResNet state dict (random values) with the shapes of `model`'s
    ResNet, conv1 on 3 RGB channels as ImageNet weights have it, plus an fc to be ignored."""
    from yt8m.models.pretrained import _torch_names

    state = {"fc.weight": rng.normal(size=(1000, 64)), "fc.bias": np.zeros(1000)}
    for layer in model.layers:
        prefix = _torch_names(layer.name)
        if prefix is None:
            continue
        if layer.name.endswith("_conv"):
            kh, kw, cin, cout = layer.kernel.shape
            cin = 3 if layer.name == "stem_conv" else cin
            state[f"{prefix}.weight"] = rng.normal(size=(cout, cin, kh, kw))
        else:
            for part in ("weight", "bias", "running_mean"):
                state[f"{prefix}.{part}"] = rng.normal(size=layer.gamma.shape)
            state[f"{prefix}.running_var"] = rng.uniform(0.5, 2, size=layer.gamma.shape)
            state[f"{prefix}.num_batches_tracked"] = np.array(7)
    return {k: np.asarray(v, np.float32) for k, v in state.items()}


def test_imagenet_weights_load_and_conv1_is_inflated(tmp_path):
    from yt8m.errors import Yt8mError
    from yt8m.models.pretrained import load_imagenet

    n = PRESETS["demo"]["segment_length"]
    model = build_stnet(num_classes=6, **PRESETS["demo"])
    state = torchvision_state(model, np.random.default_rng(0))
    np.savez(tmp_path / "resnet.npz", **state)
    xception_before = [keras.ops.convert_to_numpy(w) for w in model.get_layer("xception").weights]
    loaded = load_imagenet(model, tmp_path / "resnet.npz", n)
    # one `.weight` per conv and per BatchNorm layer: every one is loaded
    assert loaded == sum(1 for k in state if k.endswith(".weight") and not k.startswith("fc"))
    block = model.get_layer("res3_0_b_conv").kernel  # (3, 3, in, out) from (out, in, 3, 3)
    np.testing.assert_array_equal(np.asarray(block),
                                  state["layer2.0.conv2.weight"].transpose(2, 3, 1, 0))
    bn = model.get_layer("res2_0_a_bn")
    np.testing.assert_array_equal(np.asarray(bn.moving_variance), state["layer1.0.bn1.running_var"])
    for before, after in zip(xception_before, model.get_layer("xception").weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))  # untouched

    # a static clip (N identical frames) through the inflated conv1 = ImageNet's conv1 on the
    # frame in grey (its RGB mean in every channel): the pretrained scale is kept
    rgb = state["conv1.weight"].transpose(2, 3, 1, 0)
    frame = np.random.default_rng(1).normal(size=(1, 16, 16, 3)).astype("float32")
    static = np.tile(frame, (1, 1, 1, n))
    conv = model.get_layer("stem_conv")
    inflated = np.asarray(keras.ops.conv(static, conv.kernel, strides=2, padding="same"))
    averaged = np.asarray(keras.ops.conv(frame.mean(-1, keepdims=True).repeat(3, -1),
                                         rgb, strides=2, padding="same"))
    np.testing.assert_allclose(inflated, averaged, rtol=1e-4, atol=1e-4)
    assert np.asarray(conv.kernel).shape[2] == 3 * n

    good = state["layer1.0.conv1.weight"]
    state["layer1.0.conv1.weight"] = good[:, :2]
    np.savez(tmp_path / "wrong.npz", **state)
    with pytest.raises(Yt8mError, match=r"layer1.0.conv1 has shapes .* res2_0_a_conv needs"):
        load_imagenet(model, tmp_path / "wrong.npz", n)
    state["layer1.0.conv1.weight"] = good
    del state["layer1.0.bn1.running_mean"]
    np.savez(tmp_path / "partial.npz", **state)
    with pytest.raises(Yt8mError, match="no layer1.0.bn1.running_mean for layer res2_0_a_bn"):
        load_imagenet(model, tmp_path / "partial.npz", n)


@pytest.mark.parametrize("temporal_modeling", [True, False])
def test_logits_stay_float32_under_mixed_precision(temporal_modeling):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        arch = dict(PRESETS["demo"], temporal_modeling=temporal_modeling)
        model = build_stnet(num_classes=6, **arch)
        assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
