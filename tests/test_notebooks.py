"""The notebooks: each .ipynb is paired with its py:percent script, and both run without error
(executed with nbmake) on a small trained workspace."""

from pathlib import Path

import jupytext
import pytest
from nbmake.nb_run import NotebookRun

from yt8m import ensembles
from yt8m.models.trainer import train
from yt8m.paths import ENVIRONMENT_VARIABLE

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("*.py"))


def test_every_notebook_is_paired_with_an_identical_script():
    assert {p.stem for p in SCRIPTS} == {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert len(SCRIPTS) >= 2
    for script in SCRIPTS:
        source = jupytext.read(script)
        notebook = jupytext.read(script.with_suffix(".ipynb"))
        assert [(c.cell_type, c.source) for c in notebook.cells] == \
            [(c.cell_type, c.source) for c in source.cells], \
            f"{script.name} and its .ipynb differ: run `jupytext --sync {script}`"
        assert not any(c.get("outputs") for c in notebook.cells), \
            f"{script.with_suffix('.ipynb').name} is committed with outputs"


@pytest.fixture(scope="module")
def trained_workspace(tiny_input, tiny_features, tmp_path_factory):
    """The tiny competition with two quickly trained models and a weighted ensemble."""
    root = tmp_path_factory.mktemp("notebook_workspace")
    (root / "input").symlink_to(tiny_input)
    (root / "features").symlink_to(tiny_features)
    (root / "models").mkdir()
    (root / "ensembles").mkdir()
    for name in ("frame_logistic", "video_logistic"):
        spec = root / "models" / f"{name}.yaml"
        spec.write_text(f"model: {name}\npreset: demo\ntraining:\n  epochs: 1\n")
        train(spec, features=root / "features")
    blend = root / "ensembles" / "weighted.yaml"
    blend.write_text("members: [frame_logistic, video_logistic]\ncombiner: weighted\n")
    ensembles.build(blend, root / "features", root / "models")
    return root


@pytest.mark.parametrize("name", [p.with_suffix(".ipynb").name for p in SCRIPTS])
def test_notebook_runs_on_a_trained_workspace(name, trained_workspace, monkeypatch):
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(trained_workspace))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    result = NotebookRun(NOTEBOOKS / name, default_timeout=300).execute()
    assert result.error is None, f"{name}: {result.error.summary}\n{result.error.trace}"
