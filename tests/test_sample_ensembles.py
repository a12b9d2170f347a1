"""On the sample competition (`make all`'s data), the weighted blend and the stacker beat the best
single model out of fold. Four of the demo models keep the test short; `make all` blends all
fourteen. The frame-level members train four epochs of 16 frames, not make all's three of 12:
after three epochs they are too far behind video MoE to add to it (the weighted blend gives
them no weight)."""

import json
import shutil
from pathlib import Path

import pytest

from yt8m.cli import main

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = ["video_moe", "video_logistic", "frame_logistic", "nextvlad"]


@pytest.mark.slow
def test_weighted_and_stack_beat_the_best_single_model_on_the_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--quiet"]) == 0
    assert main(["features", "--folds", "3", "--workers", "1", "--quiet"]) == 0
    Path("models").mkdir()
    for name in MEMBERS:
        shutil.copy(ROOT / "models" / f"{name}.yaml", "models")
        if not name.startswith("video_"):
            with open(f"models/{name}.yaml", "a") as spec:
                spec.write("training: {epochs: 4, num_frames: 16}\n")
    assert main(["train", *(f"models/{m}.yaml" for m in MEMBERS), "--quiet"]) == 0
    Path("ensembles").mkdir()
    for combiner in ("weighted", "stack"):
        Path(f"ensembles/{combiner}.yaml").write_text(
            f"members: [{', '.join(MEMBERS)}]\ncombiner: {combiner}\n")
    assert main(["ensemble", "ensembles/weighted.yaml", "ensembles/stack.yaml"]) == 0
    best = max(json.loads(Path(f"models/{m}/metrics.json").read_text())["oof"]["gap"]
               for m in MEMBERS)
    for combiner in ("weighted", "stack"):
        metrics = json.loads(Path(f"ensembles/{combiner}/metrics.json").read_text())
        assert metrics["best_member"] in MEMBERS
        assert metrics["oof"]["gap"] > best + 0.005, (combiner, metrics["oof"]["gap"], best)
