"""Video-level data alone: a cache from the genuine 2018 video-level shard, video-level models
trained out of fold on it, ensembles and submissions at that level, frame-level models refused."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REAL_SHARD
from yt8m import predictions
from yt8m.cli import main
from yt8m.features.cache import FeatureCache
from yt8m.input.tfrecord import iter_records, write_records
from yt8m.metrics import Evaluator

SPEC = "model: video_logistic\npreset: demo\nseed: {seed}\ntraining: {{epochs: 6}}\n"


@pytest.fixture(scope="module")
def real_video_workspace(tmp_path_factory):
    """input/video/: the real shard's 243 videos dealt into three train shards (the folds) and
    a test shard, a video-level cache folded in 3, and two video-level specs."""
    if not REAL_SHARD.is_file():
        pytest.skip(f"{REAL_SHARD} is not here")
    root = tmp_path_factory.mktemp("real_video")
    records = [bytes(payload) for _, _, payload in iter_records(REAL_SHARD)]
    assert len(records) == 243
    folder = root / "input" / "video"
    folder.mkdir(parents=True)
    for shard in range(3):
        write_records(folder / f"train{shard:04d}.tfrecord", records[shard:200:3])
    write_records(folder / "test0000.tfrecord", records[200:])
    (root / "models").mkdir()
    for name, seed in (("vlog", 1), ("vlog2", 2)):
        (root / "models" / f"{name}.yaml").write_text(SPEC.format(seed=seed))
    (root / "models" / "frames.yaml").write_text("model: frame_logistic\npreset: demo\n")
    return root, records


def test_video_level_models_train_out_of_fold_on_the_real_video_level_shard(
        real_video_workspace, monkeypatch, capsys):
    root, records = real_video_workspace
    monkeypatch.chdir(root)
    assert main(["features", "--level", "video", "--folds", "3", "--workers", "1",
                 "--quiet"]) == 0
    assert not Path("features/frame").exists()
    cache = FeatureCache("features", "video")
    assert len(cache) == 243 and cache.num_folds == 3
    assert main(["train", "models/vlog.yaml", "models/vlog2.yaml", "--level", "video",
                 "--quiet"]) == 0
    capsys.readouterr()
    metrics = json.loads(Path("models/vlog/metrics.json").read_text())
    assert metrics["level"] == "video"
    oof = predictions.load("models/vlog", "oof")
    labeled = cache.rows(folds=range(3))
    np.testing.assert_array_equal(oof.ids, cache.ids[labeled])
    assert len(oof.ids) == 200  # every real labeled video, predicted by a model that never saw it
    # a real quality bar: better than ranking every video by the training folds' class
    # frequencies (the best a model that ignores the features can do)
    prior = Evaluator(cache.num_classes)
    for fold in range(3):
        held = labeled[cache.fold[labeled] == fold]
        freq = cache.class_frequencies(labeled[cache.fold[labeled] != fold])
        prior.update(np.tile(freq, (len(held), 1)), cache.label_lists(held))
    baseline = prior.result()["gap"]
    # measured: 0.171 against 0.042; blanking the features gives 0.043
    assert metrics["oof"]["gap"] > max(2 * baseline, baseline + 0.05), (metrics, baseline)

    # an ensemble of video-level members blends on the video-level cache
    Path("ensembles").mkdir()
    Path("ensembles/both.yaml").write_text("members: [vlog, vlog2]\ncombiner: mean\n")
    assert main(["ensemble", "ensembles/both.yaml"]) == 0
    assert json.loads(Path("ensembles/both/metrics.json").read_text())["level"] == "video"
    # the submission covers the video-level cache's test videos (the source's level)
    assert main(["submission", "write", "--source", "ensembles/both"]) == 0
    assert "(43 videos" in capsys.readouterr().out


def test_a_frame_level_model_on_a_video_level_cache_is_refused_in_one_line(
        real_video_workspace, monkeypatch, capsys):
    root, _ = real_video_workspace
    monkeypatch.chdir(root)
    if not Path("features/video/manifest.json").exists():
        assert main(["features", "--level", "video", "--folds", "3", "--workers", "1",
                     "--quiet"]) == 0
    assert main(["train", "models/frames.yaml", "--level", "video", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "models/frames.yaml: frame_logistic is a frame-level model" in err
    assert "make features LEVEL=frame" in err
    assert not Path("models/frames").exists()


def test_make_lists_the_video_level_specs_and_their_ensembles(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for folder in ("models", "ensembles"):
        Path(folder).mkdir()
    Path("models/a.yaml").write_text("model: video_moe\n")
    Path("models/b.yaml").write_text("model: nextvlad\n")
    Path("models/c.yaml").write_text("model: video_logistic\n")
    Path("ensembles/videos.yaml").write_text("members: [a, c]\ncombiner: mean\n")
    Path("ensembles/mixed.yaml").write_text("members: [a, b]\ncombiner: mean\n")
    args = ["models/a.yaml", "models/b.yaml", "models/c.yaml", "ensembles/videos.yaml",
            "ensembles/mixed.yaml"]
    assert main(["specs", "--level", "video", *args]) == 0
    assert capsys.readouterr().out.split() == ["models/a.yaml", "models/c.yaml",
                                               "ensembles/videos.yaml"]
    assert main(["specs", "--level", "frame", *args]) == 0
    assert capsys.readouterr().out.split() == args


def test_an_ensemble_of_members_from_both_levels_is_refused(tmp_path, monkeypatch):
    from yt8m.ensembles import members_level
    from yt8m.errors import Yt8mError

    for name, level in (("a", "video"), ("b", "frame"), ("c", None)):
        (tmp_path / name).mkdir()
        record = {"id": name} | ({"level": level} if level else {})
        (tmp_path / name / "metrics.json").write_text(json.dumps(record))
    assert members_level(["b", "c"], tmp_path) == "frame"  # unrecorded: frame
    with pytest.raises(Yt8mError, match="b: trained on frame-level features, .*a on video"):
        members_level(["a", "b"], tmp_path)
