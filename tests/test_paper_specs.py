"""The specs in models/paper/: every YouTube-8M zoo model at its reference's settings, each
headed by the reference, its trainable parameters and its float32 size."""

import gc
import re
from pathlib import Path

import numpy as np
import pytest

from tests.test_models import PAPER_PARAMETERS, trainable
from yt8m.models import build
from yt8m.models.registry import TRAINING_KEYS, load_spec, models
from yt8m.models.training import dtype_policy, make_loss, make_optimizer

PAPER = Path(__file__).resolve().parents[1] / "models" / "paper"
SPECS = sorted(PAPER.glob("*.yaml"))
IDS = [path.stem for path in SPECS]


def header(path):
    """The comment block a spec starts with, without the leading '# '."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def written(path, label, pattern=r"([\d,.]+)"):
    """The number after `<label>:` in the spec's header."""
    found = re.search(rf"^{re.escape(label)}: {pattern}", header(path), re.MULTILINE)
    assert found, f"{path}: the header has no '# {label}: ...' line"
    return found.group(1)


def test_every_zoo_model_has_a_paper_spec():
    assert set(IDS) == set(models()) == set(PAPER_PARAMETERS)


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_paper_spec_loads_at_the_paper_preset(path):
    spec = load_spec(path)
    entry = models()[spec.model]
    assert spec.model == path.stem and spec.preset == "paper"
    # The architecture is the paper preset's, whose parameter count test_models asserts.
    assert spec.architecture == {}
    assert spec.settings()[0] == dict(entry.presets["paper"])
    assert int(written(path, "Trainable parameters").replace(",", "")) \
        == PAPER_PARAMETERS[spec.model]
    for label in ("Reference", "float32 size", "GPU time per epoch"):
        assert re.search(rf"^{label}\b", header(path), re.MULTILINE), f"{path}: no {label}"


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_paper_spec_training_overrides_are_accepted(path):
    spec = load_spec(path)
    preset = spec.entry.training["paper"]
    assert set(spec.training) <= set(TRAINING_KEYS)
    # A spec overrides only what its reference sets differently from the preset.
    assert all(preset.get(key) != value for key, value in spec.training.items())
    _, training = spec.settings()
    assert training.get("optimizer", "adam") in ("adam", "rmsprop", "sgd")
    make_optimizer(training, steps_per_epoch=100)
    make_loss(training)
    dtype_policy(training)


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_paper_spec_builds_with_its_written_parameter_count(path):
    import keras

    keras.backend.clear_session()
    model = build(load_spec(path), 3862)
    count = int(written(path, "Trainable parameters").replace(",", ""))
    assert trainable(model) == count == PAPER_PARAMETERS[path.stem]
    weights = sum(int(np.prod(w.shape)) for w in model.weights)
    assert written(path, "float32 size") == f"{weights * 4 / 1e6:,.1f}"
    del model
    keras.backend.clear_session()
    gc.collect()
