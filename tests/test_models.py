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
    # The 2017 winner's other families and the starter code's LSTM: see `willow_parameters`.
    "gated_netrvlad": 321_249_852,
    "netfv": 321_388_732,
    "soft_dbof": 37_338_492,
    "lstm": 37_090_860,
    "gru": 63_466_124,
}


def willow_parameters():
    """The trainable parameters of WILLOW's NetVLADModelLF --lightvlad, NetFVModelLF,
    SoftDbofModelLF and GruModel and of the starter code's LstmModel, summed from the shapes of
    the variables their code creates (`tf.get_variable` and slim layers; BatchNorm: beta and
    gamma) at the flags their README commands (the starter code: its flag defaults) pass."""
    rgb, audio, classes = 1024, 128, 3862
    frames = rgb + audio

    def bn(n):  # slim.batch_norm(center=True, scale=True)
        return 2 * n

    def moe(n, mixtures=2):  # MoeModel: gates (no bias), experts (weights + biases)
        return n * classes * (mixtures + 1) + n * classes * mixtures + classes * mixtures

    prob_gating = classes * classes + bn(classes)  # gating_prob_weights + gating_prob_bn

    def head(pooled, hidden=1024):  # hidden1_weights + hidden1_biases (relu off), gating
        return pooled * hidden + hidden + hidden * hidden + bn(hidden) + moe(hidden) + prob_gating

    # --lightvlad: LightVLAD keeps cluster_weights and cluster_bn, no centres (cluster_weights2)
    k = 256
    lightvlad = bn(frames) + rgb * k + bn(k) + audio * (k // 2) + bn(k // 2)
    netrvlad = lightvlad + head(rgb * k + audio * (k // 2))
    # NetFV K=128 / 64, --fv_couple_weights=False: cluster_weights, covar_weights and
    # cluster_weights2, each (features, K), and cluster_bn; output 2 x K x features
    k = 128
    netfv = (bn(frames) + 3 * rgb * k + bn(k) + 3 * audio * (k // 2) + bn(k // 2)
             + head(2 * (rgb * k + audio * (k // 2))))
    # SoftDBoF K=8000 / 1000, no max pooling, no gating or probability gating: cluster_weights
    # and cluster_bn; hidden1 with its bias (--dbof_relu=False), MoE
    k = 8000
    soft_dbof = (bn(frames) + rgb * k + bn(k) + audio * (k // 8) + bn(k // 8)
                 + (k + k // 8) * 1024 + 1024 + moe(1024))

    def lstm(inputs, n):  # BasicLSTMCell: kernel (inputs + n, 4n), bias 4n
        return (inputs + n) * 4 * n + 4 * n

    def gru(inputs, n):  # GRUCell: gates kernel (inputs + n, 2n) + bias, candidate (.., n) + bias
        return (inputs + n) * 3 * n + 3 * n

    # LstmModel: 2 x 1024 cells, state[-1].h (1024) into the MoE
    lstm_model = lstm(frames, 1024) + lstm(1024, 1024) + moe(1024)
    # GruModel --gru_cells=1200: 2 layers, both states (state_is_tuple=False: 2400) into the MoE
    gru_model = gru(frames, 1200) + gru(1200, 1200) + moe(2400)
    return {"gated_netrvlad": netrvlad, "netfv": netfv, "soft_dbof": soft_dbof,
            "lstm": lstm_model, "gru": gru_model}


def test_willow_counts_are_the_reference_shapes():
    derived = willow_parameters()
    assert derived == {name: PAPER_PARAMETERS[name] for name in derived}
    # and gated NetVLAD is gated NetRVLAD plus its centres (cluster_weights2)
    assert PAPER_PARAMETERS["gated_netvlad"] - derived["gated_netrvlad"] == 1024 * 256 + 128 * 128


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

    from yt8m.models.clip_specs import is_clip_spec as is_video_spec
    from yt8m.models.clip_specs import load_clip_spec as load_video_spec

    every = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.yaml"))
    videos = [p for p in every if is_video_spec(p)]
    students = [p for p in every if p not in videos and load_spec(p).training.get("teacher")]
    assert [p.stem for p in students] == ["distill_video_moe"]  # a zoo model with a teacher
    assert load_spec(students[0]).model == "video_moe"
    specs = [p for p in every if p not in videos and p not in students]
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


def suggested_architecture(path):
    """The architecture settings a spec's comments suggest: the `#   key: value` lines under its
    `# architecture:` comment."""
    import re

    import yaml

    suggested, inside = {}, False
    for line in path.read_text().splitlines():
        if re.match(r"#\s*architecture:", line):
            inside = True
            continue
        found = re.match(r"#   (\w+): ([^#]+)", line) if inside else None
        if not found:
            inside = False
            continue
        suggested[found.group(1)] = yaml.safe_load(found.group(2))
    return suggested


def test_every_shipped_spec_suggests_only_settings_its_model_accepts(tmp_path):
    """Uncommenting a spec's suggested architecture gives a valid spec (a suggestion of a
    key the model refuses would send a reader into an error)."""
    from pathlib import Path

    import yaml

    from yt8m.models.clip_specs import is_clip_spec as is_video_spec
    from yt8m.models.clip_specs import load_clip_spec as load_video_spec

    suggestions = 0
    for path in sorted((Path(__file__).resolve().parents[1] / "models").glob("*.yaml")):
        suggested = suggested_architecture(path)
        suggestions += bool(suggested)
        data = yaml.safe_load(path.read_text())
        data["architecture"] = {**(data.get("architecture") or {}), **suggested}
        edited = tmp_path / path.name
        edited.write_text(yaml.safe_dump(data))
        spec = (load_video_spec if is_video_spec(path) else load_spec)(edited)
        assert spec.architecture == data["architecture"], path
    assert suggestions >= 10


@pytest.mark.parametrize("preset, update", [("paper", 1.0), ("demo", 3.0)])
def test_gru_gates_start_as_the_preset_says(preset, update):
    """TF1's GRUCell starts the update and reset gates at 1 and the candidate at 0; the demo
    starts the update gates at 3 so that a new GRU carries a key segment to the video's end."""
    import keras

    arch = {"units": 4, "layers": 1} if preset == "paper" else {}
    model = build({"model": "gru", "preset": preset, "architecture": arch}, num_classes=3)
    bias = np.asarray(model.get_layer("gru_1").cell.bias)
    units = len(bias) // 3
    np.testing.assert_array_equal(bias[:units], update)  # Keras orders (update, reset, candidate)
    np.testing.assert_array_equal(bias[units : 2 * units], 1.0)
    np.testing.assert_array_equal(bias[2 * units :], 0.0)
    restored = keras.models.model_from_json(model.to_json())
    np.testing.assert_array_equal(np.asarray(restored.get_layer("gru_1").cell.bias)[:units], update)


@pytest.mark.parametrize("training, message", [
    ({"optimizer": "adagrad"}, "optimizer must be adam, rmsprop or sgd"),
    ({"sampling": "middle"}, "unknown frame sampling 'middle'"),
    ({"mixed_precision": "fp8"}, "mixed_precision must be one of"),
    ({"loss_reduction": "mean"}, "loss_reduction"),
])
def test_training_settings_are_checked_when_the_spec_is_read(training, message):
    with pytest.raises(Yt8mError, match=f"models/x.yaml: training: .*{message}"):
        parse_spec({"model": "nextvlad", "preset": "demo", "training": training}, "models/x.yaml")


def test_training_settings_have_one_default_each():
    """The spec's typed settings are its preset's mapping with every unset key at the one
    default of `TrainingSettings`; plain mappings and settings objects are accepted alike."""
    from yt8m.models.settings import TrainingSettings

    spec = parse_spec({"model": "video_logistic", "preset": "demo"})
    settings = spec.training_settings()
    assert "teacher_weight" not in spec.settings()[1]
    assert settings == TrainingSettings.of(spec.settings()[1])
    assert settings.teacher_weight == TrainingSettings.of({}).teacher_weight == 0.5
    assert settings.batch_size == spec.settings()[1]["batch_size"] == 128
    assert TrainingSettings.of(settings) is settings
