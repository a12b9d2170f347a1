"""The raw-video side end to end: scanning and loading clips, training a StNet spec, its
metrics, the ActivityNet results file, and (slow) StNet against the frame-averaging baseline."""

import json
import warnings

import keras
import numpy as np
import pytest

from yt8m.cli import main
from yt8m.features.clip_loader import ClipSampling, TrainingClips, predict_videos, scan, video_clips
from yt8m.input.kinetics.dataset import read_split
from yt8m.input.kinetics.sample import CLASSES, VideoSampleSpec, generate
from yt8m.input.kinetics.video_io import VideoError, write_video
from yt8m.models.clip_trainer import accuracy_report, top_k_accuracy
from yt8m.submissions.kinetics import check_results, results, score

SMALL = VideoSampleSpec(train_per_class=2, validate_per_class=1, test_per_class=1)
SAMPLING = ClipSampling(segments=4, segment_length=3, short_side=32, crop=28)


@pytest.fixture(scope="module")
def small_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinetics")
    generate(root, SMALL, progress=False)
    return root


def test_scan_names_bad_videos_or_skips_them(small_videos, tmp_path):
    clips = read_split(small_videos, "train").clips
    usable, bad = scan(clips, min_frames=3)
    assert len(usable) == len(clips) and not bad
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 300)
    short = tmp_path / "short.mp4"
    write_video(short, np.zeros((2, 32, 32, 3), np.uint8))
    mixed = clips[:3] + [type(clips[0])(broken, "broken", "growing"),
                         type(clips[0])(short, "short", "growing")]
    with pytest.raises(VideoError, match=r"broken.mp4: cannot decode.*\(1 more bad videos\)"):
        scan(mixed, min_frames=3)
    usable, bad = scan(mixed, min_frames=3, skip_bad=True)
    assert usable == clips[:3]
    assert [p.name for p, _ in bad] == ["broken.mp4", "short.mp4"]
    assert "2 frames, fewer than one segment of 3" in bad[1][1]


def test_training_clips_are_reproducible_per_epoch_and_batch(small_videos):
    clips = read_split(small_videos, "train").clips
    labels = np.arange(len(clips)) % len(CLASSES)
    batches = TrainingClips(clips, labels, SAMPLING, batch_size=4, seed=3)
    assert len(batches) == len(clips) // 4
    x, y = batches[1]
    assert x.shape == (4, 4, 28, 28, 9) and x.dtype == np.float32 and y.shape == (4,)
    again = TrainingClips(clips, labels, SAMPLING, batch_size=4, seed=3)
    np.testing.assert_array_equal(again[1][0], x)  # a resumed run sees the same batch
    batches.set_epoch(1)
    assert not np.array_equal(batches[1][0], x)  # a new epoch: new order, offsets and crops
    np.testing.assert_array_equal(np.sort(np.concatenate([batches[i][1] for i in
                                                          range(len(batches))])),
                                  np.sort(labels[batches.order[:len(batches) * 4]]))


def test_a_video_that_fails_mid_training_is_an_error_or_replaced(small_videos, tmp_path):
    clips = read_split(small_videos, "train").clips[:4]
    copies = []
    for i, clip in enumerate(clips):  # private copies: one is damaged below
        path = tmp_path / f"{i}.mp4"
        path.write_bytes(clip.path.read_bytes())
        copies.append(type(clip)(path, clip.video_id, clip.label))
    copies[2].path.write_bytes(b"garbage" * 40)
    strict = TrainingClips(copies, np.arange(4), SAMPLING, batch_size=4)
    with pytest.raises(VideoError, match="2.mp4: cannot decode"):
        strict[0]
    lenient = TrainingClips(copies, np.arange(4), SAMPLING, batch_size=4, skip_bad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = lenient[0]
    assert x.shape[0] == 4 and 2 not in y.tolist()
    assert any("2.mp4" in str(w.message) for w in caught)


def test_predict_videos_keeps_the_order_and_every_clip(small_videos):
    clips = read_split(small_videos, "validate").clips
    inputs = keras.Input((4, 28, 28, 9))
    logits = keras.layers.Dense(6)(keras.layers.GlobalAveragePooling3D()(inputs))
    model = keras.Model(inputs, logits)
    scores = predict_videos(model, clips, SAMPLING, clips_per_video=2, batch_size=4, workers=2)
    assert scores.shape == (len(clips), 2, 6)
    np.testing.assert_allclose(scores.sum(-1), 1, atol=1e-5)  # softmax
    for i in (0, len(clips) - 1):
        direct = keras.ops.softmax(model.predict_on_batch(video_clips(clips[i].path, SAMPLING, 2)))
        np.testing.assert_allclose(scores[i], keras.ops.convert_to_numpy(direct), atol=1e-5)
    two = video_clips(clips[0].path, SAMPLING, 2)
    assert not np.array_equal(two[0], two[1])  # two clips at different offsets


def test_clip_and_video_accuracy():
    scores = np.zeros((2, 2, 6), np.float32)
    scores[0, 0, 1], scores[0, 1, 2] = 0.9, 0.6  # video 0 (label 1): one clip right, one wrong
    scores[1, :, 3] = 0.8  # video 1 (label 4): both clips say 3
    scores[1, :, 4] = 0.5
    report = accuracy_report(scores, np.array([1, 4]))
    assert report["clip_top1"] == 0.25 and report["video_top1"] == 0.5
    assert report["clip_top5"] == 1.0 and report["clips"] == 4 and report["videos"] == 2
    assert top_k_accuracy(np.eye(3)[[0, 1, 1]], np.array([0, 1, 2]), 1) == pytest.approx(2 / 3)


def test_results_file_checks():
    classes = list(CLASSES)
    scores = np.random.default_rng(0).dirichlet(np.ones(6), size=3)
    data = results(["a", "b", "c"], scores, classes, "Kinetics-6",
                   {"used": False, "details": "none"})
    assert check_results(data, classes, ["a", "b", "c"]) == []
    first = data["results"]["a"]
    assert len(first) == 5 and first[0]["label"] == classes[int(scores[0].argmax())]
    assert [e["score"] for e in first] == sorted((e["score"] for e in first), reverse=True)
    broken = json.loads(json.dumps(data))
    broken["results"]["a"] = broken["results"]["a"][::-1]
    broken["results"]["b"][0]["label"] = "juggling"
    del broken["results"]["c"]
    broken.pop("external_data")
    problems = check_results(broken, classes, ["a", "b", "c"])
    assert any("no 'external_data'" in p for p in problems)
    assert any("results['a']: entries are not in decreasing order" in p for p in problems)
    assert any("results['b']: unknown label 'juggling'" in p for p in problems)
    assert any("1 test videos have no results, e.g. 'c'" in p for p in problems)


def test_stnet_spec_trains_evaluates_and_writes_results(small_videos, tmp_path, monkeypatch,
                                                        capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    spec = tmp_path / "models" / "st.yaml"
    spec.write_text(f"model: stnet\npreset: demo\ndata: {small_videos}\n"
                    "architecture: {image_size: 28}\n"
                    "training: {epochs: 2, batch_size: 4, short_side: 32, test_clips: 2}\n")
    assert main(["train", str(spec), "--quiet"]) == 0
    assert "st: trained; validate top-1" in capsys.readouterr().out
    out = tmp_path / "models" / "st"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == sorted(CLASSES) and metrics["train"]["epochs"] == 2
    v = metrics["validate"]
    assert v["videos"] == len(CLASSES) and v["clips"] == 2 * len(CLASSES)
    assert 0 <= v["video_top1"] <= v["video_top5"] <= 1
    saved = np.load(out / "validate_scores.npz")
    assert saved["scores"].shape == (len(CLASSES), 2, len(CLASSES))
    assert keras.models.load_model(out / "model.keras").input_shape == (None, 4, 28, 28, 9)
    assert not (out / "backup").exists()

    assert main(["train", str(spec), "--quiet"]) == 0
    assert "st: up to date" in capsys.readouterr().out

    assert main(["submission", "write", "--source", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote submissions/st.results.json (6 videos" in printed
    assert f"scored against {small_videos}/solution.csv: top-1" in printed
    written = json.loads((tmp_path / "submissions" / "st.results.json").read_text())
    assert set(written) == {"version", "results", "external_data"}
    assert sorted(written["results"]) == sorted(c.video_id for c in
                                                read_split(small_videos, "test").clips)
    assert score(written, small_videos / "solution.csv")["missing"] == 0
    assert main(["submission", "check", "submissions/st.results.json"]) == 0
    assert main(["leaderboard", "--roots", "models"]) == 0
    assert "models/st" in capsys.readouterr().out

    spec.write_text(spec.read_text().replace("epochs: 2", "epochs: 1"))  # a changed spec
    assert main(["train", str(spec), "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["train"]["epochs"] == 1


def test_bad_videos_stop_training_or_are_skipped_and_counted(small_videos, tmp_path,
                                                              capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_videos, data)
    bad = read_split(data, "train").clips[0].path
    bad.write_bytes(b"not a video" * 30)
    read_split(data, "validate").clips[1].path.unlink()
    spec = tmp_path / "st.yaml"
    spec.write_text(f"model: stnet\ndata: {data}\narchitecture: {{image_size: 28}}\n"
                    "training: {epochs: 1, batch_size: 4, short_side: 32, test_clips: 1}\n")
    assert main(["train", str(spec), "--quiet"]) == 2
    assert "validate.csv, line 3: no video" in capsys.readouterr().err
    assert main(["train", str(spec), "--quiet", "--skip-bad-videos"]) == 0
    out = tmp_path / "st"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["skipped"] == {"train": 1, "validate": 1, "test": 0}
    assert metrics["validate"]["videos"] == len(CLASSES) - 1
    listed = (out / "skipped.csv").read_text()
    assert bad.name in listed and "cannot decode" in listed and "validate.csv, line 3" in listed


def test_a_diverging_run_stops_with_advice(small_videos, tmp_path, capsys):
    spec = tmp_path / "st.yaml"
    spec.write_text(f"model: stnet\ndata: {small_videos}\narchitecture: {{image_size: 28}}\n"
                    "training: {epochs: 2, batch_size: 4, short_side: 32,\n"
                    "           learning_rate: 1.0e+30}\n")
    assert main(["train", str(spec), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training diverged: the loss became NaN in epoch 1" in err
    assert "lower the learning rate (now 1e+30)" in err
    assert not (tmp_path / "st" / "metrics.json").exists()


def test_bad_specs_and_missing_data_are_named(tmp_path, capsys):
    spec = tmp_path / "st.yaml"
    spec.write_text("model: stnet\ntraining: {epochs: 0}\n")
    assert main(["train", str(spec)]) == 2
    assert "training: epochs must be at least 1" in capsys.readouterr().err
    spec.write_text("model: stnet\ntraining: {learning_rat: 0.1}\n")
    assert main(["train", str(spec)]) == 2
    assert "unknown key 'learning_rat'" in capsys.readouterr().err
    spec.write_text(f"model: stnet\ndata: {tmp_path / 'nowhere'}\n")
    assert main(["train", str(spec)]) == 2
    assert "nowhere: no such dataset folder; run `make sample-video`" in capsys.readouterr().err


@pytest.mark.slow
def test_stnet_beats_the_frame_averaging_baseline_on_the_sample(tmp_path, monkeypatch):
    """The sample's classes come in pairs with the same frames in reverse order: a model that
    averages single frames is capped at 50%; StNet, seeing consecutive frames, is not."""
    from yt8m.models.clip_trainer import train

    generate(tmp_path / "kinetics", progress=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "stnet.yaml").write_text("model: stnet\ndata: kinetics\n")
    (tmp_path / "models" / "frames.yaml").write_text(
        "model: stnet\ndata: kinetics\n"
        "architecture: {temporal_modeling: false, segment_length: 1}\n")
    stnet = train("models/stnet.yaml")[0]["validate"]["video_top1"]
    frames = train("models/frames.yaml")[0]["validate"]["video_top1"]
    assert frames <= 0.6  # chance within a pair, with a little noise
    # seeds 0, 1, 2 of the demo recipe reach 0.70, 0.82, 0.73: well past the frames' 0.5 ceiling
    assert stnet >= 0.65 and stnet - frames >= 0.25, (stnet, frames)
