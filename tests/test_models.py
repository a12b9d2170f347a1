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

    specs = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.yaml"))
    assert {p.stem for p in specs} == set(PAPER_PARAMETERS)
    for path in specs:
        spec = load_spec(path)
        assert spec.model == path.stem and spec.preset == "demo"
