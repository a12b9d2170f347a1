"""The model zoo: reference parameter counts, the spec registry, and every demo model end to end."""

import numpy as np
import pytest

from yt8m.cli import main
from yt8m.errors import Yt8mError
from yt8m.models import build
from yt8m.models.registry import load_spec, models, parse_spec

# Trainable parameters at the paper preset, 3862 classes. The first three are the references'
# layer shapes (PaddleVideo); the others are computed from their references and documented.
PAPER_PARAMETERS = {
    "nextvlad": 89_088_550,
    "attention_cluster": 57_807_830,
    "attention_lstm": 108_720_920,  # Paddle's 108,737,304 less its 16,384 duplicated LSTM biases
    "gated_netvlad": 321_528_380,
    "dbof": 37_627_692,
    "frame_logistic": 4_452_886,
    "video_logistic": 4_452_886,
    "video_moe": 38_505_020,
    "mix_nextvlad": 235_935_273,  # 3 x 78,643,170 per branch + the gate's 5,763
}


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_paper_preset_parameter_counts(name):
    model = build({"model": name, "preset": "paper"})
    assert trainable(model) == PAPER_PARAMETERS[name]


def test_every_zoo_model_has_a_count():
    assert set(models()) == set(PAPER_PARAMETERS)


def batch(level, classes=3862, frames=12, size=3):
    rng = np.random.default_rng(0)
    if level == "video":
        return {"means": rng.uniform(-2, 2, (size, 1152)).astype("float32")}
    mask = np.arange(frames)[None, :] < np.array([frames, 5, 1][:size])[:, None]
    return {"frames": rng.integers(0, 256, (size, frames, 1152), dtype=np.uint8), "mask": mask}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_demo_models_output_logits_and_round_trip(name, tmp_path):
    import keras

    spec = parse_spec({"model": name, "preset": "demo"})
    model = build(spec, num_classes=50)
    inputs = batch(spec.level)
    logits = np.asarray(model.predict_on_batch(inputs))
    assert logits.shape == (3, 50) and logits.dtype == np.float32 and np.isfinite(logits).all()
    assert (logits < 0).any()  # logits, not probabilities
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again.predict_on_batch(inputs)), logits, atol=1e-5)


def test_spec_errors_name_the_file_key_and_choices(tmp_path):
    path = tmp_path / "bad.yaml"
    cases = {
        "model: nextvlda\n": "unknown model 'nextvlda'; the zoo has nextvlad",
        "model: nextvlad\npreset: huge\n": "'huge' is not one of paper, demo",
        "model: nextvlad\narchitecture: {clusterz: 3}\n": "unknown key 'clusterz'; allowed: "
                                                          "clusters",
        "model: nextvlad\ntraining: {epochs: many}\n": "epochs must be int, got 'many'",
        "model: nextvlad\nmodle: x\n": "unknown key 'modle'",
        "model: [\n": "not valid YAML",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(Yt8mError, match=message.replace("(", r"\(").replace("[", r"\[")) as e:
            load_spec(path)
        assert str(path) in str(e.value)


def test_overrides_change_the_model_and_its_hash():
    base = parse_spec({"model": "nextvlad", "preset": "demo"})
    wider = parse_spec({"model": "nextvlad", "preset": "demo",
                        "architecture": {"hidden": 64}, "training": {"epochs": 2}})
    assert wider.settings()[0]["hidden"] == 64 and wider.settings()[1]["epochs"] == 2
    assert base.config_hash() != wider.config_hash()
    assert trainable(build(base, 50)) != trainable(build(wider, 50))


def test_size_command_reports_the_one_gigabyte_limit(capsys):
    assert main(["size", "attention_cluster"]) == 0
    out = capsys.readouterr().out
    assert "57,807,830 trainable parameters" in out
    assert "float32 checkpoint: 231.2 MB" in out and "within" in out


def test_reverse_whitening_scales_rgb_by_the_eigenvalues(tmp_path):
    from yt8m.models.training import set_reverse_whitening

    eigen = np.linspace(4.0, 0.01, 2048, dtype=np.float32).reshape(2048, 1)
    np.save(tmp_path / "eigenvals.npy", eigen)
    model = build({"model": "nextvlad", "preset": "demo",
                   "architecture": {"reverse_whitening": True}}, num_classes=20)
    set_reverse_whitening(model, tmp_path / "eigenvals.npy")
    scale = np.asarray(model.get_layer("dequantize").scale)
    np.testing.assert_allclose(scale[:1024], np.sqrt(eigen[:1024, 0]) + 1e-4, rtol=1e-6)
    assert (scale[1024:] == 1).all()
    with pytest.raises(Yt8mError, match="no scaled Dequantize"):
        set_reverse_whitening(build({"model": "nextvlad", "preset": "demo"}, num_classes=20),
                              tmp_path / "eigenvals.npy")
    np.save(tmp_path / "short.npy", eigen[:10])
    with pytest.raises(Yt8mError, match="1024 non-negative eigenvalues"):
        set_reverse_whitening(model, tmp_path / "short.npy")


def test_shipped_specs_are_valid_demo_specs():
    from pathlib import Path

    from yt8m.kinetics.spec import is_video_spec, load_video_spec

    every = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.yaml"))
    videos = [p for p in every if is_video_spec(p)]
    specs = [p for p in every if p not in videos]
    assert {p.stem for p in specs} == set(PAPER_PARAMETERS)
    for path in specs:
        spec = load_spec(path)
        assert spec.model == path.stem and spec.preset == "demo"
    assert [p.stem for p in videos] == ["stnet"]
    assert load_video_spec(videos[0]).preset == "demo"


def test_losses_sum_over_classes_and_distill_towards_the_mixture():
    from yt8m.models.training import MultiLabelLoss
    from yt8m.models.zoo.mix_nextvlad import MixtureDistillationLoss

    y = np.array([[1.0, 0.0, 0.0]], np.float32)
    z = np.array([[2.0, -1.0, 0.5]], np.float32)
    bce = -(np.log(1 / (1 + np.exp(-2.0))) + np.log(1 - 1 / (1 + np.exp(1.0)))
            + np.log(1 - 1 / (1 + np.exp(-0.5))))
    assert float(MultiLabelLoss()(y, z)) == pytest.approx(bce, rel=1e-5)
    assert float(MultiLabelLoss(reduction="sum")(np.vstack([y, y]), np.vstack([z, z]))) == \
        pytest.approx(2 * bce, rel=1e-5)
    branch = np.array([[0.0, 1.0, 0.0]], np.float32)
    stacked = np.stack([z, branch], axis=1)  # mixture first, then one branch
    t = 3.0

    def softmax(v):
        e = np.exp(v / t - np.max(v / t))
        return e / e.sum()

    p, q = softmax(z[0]), softmax(branch[0])
    bce_branch = float(MultiLabelLoss()(y, branch))
    expected = bce + bce_branch + t * t * np.sum(p * np.log(p / q))
    assert float(MixtureDistillationLoss(t)(y, stacked)) == pytest.approx(expected, rel=1e-5)
    assert float(MixtureDistillationLoss(t)(y, z)) == pytest.approx(bce, rel=1e-5)


def test_schedules_count_examples_and_epochs_as_the_references_do():
    from yt8m.models.training import make_optimizer

    adam = make_optimizer({"learning_rate": 2e-4, "decay_rate": 0.8,
                           "decay_examples": 2_000_000, "batch_size": 160}, steps_per_epoch=10)
    schedule = adam.learning_rate if callable(adam.learning_rate) else adam._learning_rate
    assert float(schedule(12_499)) == pytest.approx(2e-4)
    assert float(schedule(12_500)) == pytest.approx(1.6e-4)
    rms = make_optimizer({"optimizer": "rmsprop", "learning_rate": 2.5e-4, "decay_rate": 0.1,
                          "boundaries_epochs": [5, 8], "rho": 0.95, "centered": True},
                         steps_per_epoch=100)
    schedule = rms._learning_rate
    assert [float(schedule(s)) for s in (499, 501, 801)] == pytest.approx([2.5e-4, 2.5e-5, 2.5e-6])
    assert rms.centered and rms.rho == 0.95
    with pytest.raises(Yt8mError, match="optimizer must be"):
        make_optimizer({"optimizer": "adagrad"}, 10)


def test_prior_bias_starts_every_head_at_the_class_log_odds():
    from yt8m.models.training import set_prior_bias

    freq = np.array([0.2, 0.1, 0.01, 0.0])
    logit = np.log(np.clip(freq, 1e-5, 1) / (1 - np.clip(freq, 1e-5, 1)))
    plain = build({"model": "frame_logistic", "preset": "demo"}, num_classes=4)
    assert set_prior_bias(plain, freq)
    np.testing.assert_allclose(np.asarray(plain.get_layer("logits").bias), logit, rtol=1e-5)
    mix = build({"model": "mix_nextvlad", "preset": "demo"}, num_classes=4)
    set_prior_bias(mix, freq)
    for m in range(2):
        np.testing.assert_allclose(np.asarray(mix.get_layer(f"branch{m}_logits").bias), logit,
                                   rtol=1e-5)
    import keras

    keras.utils.set_random_seed(0)  # the output gate's start depends on its random kernel
    moe = build({"model": "video_moe", "preset": "demo"}, num_classes=4)
    set_prior_bias(moe, freq)
    inputs = {"means": np.zeros((1, 1152), np.float32)}
    # zero input: uniform gates over 2 experts + dummy and a probability gate of about 1/2
    p = 1 / (1 + np.exp(-np.asarray(moe.predict_on_batch(inputs))))
    np.testing.assert_allclose(p[0, :3], freq[:3], rtol=0.3)  # the gate is only near 1/2
