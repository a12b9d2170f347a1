"""`yt8m compact`: dense predictions rewritten as each video's top K logits, every metric kept,
kill-safe, and a later `yt8m train` of the same spec neither trains again nor breaks."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yt8m import predictions
from yt8m.cli import main
from yt8m.errors import Yt8mError
from yt8m.metrics import METRIC_NAMES, Evaluator

ROOT = Path(__file__).resolve().parents[1]
CLASSES, VIDEOS, TEST_VIDEOS = 100, 300, 120
PARTS = ("oof", "test")


def _logits(rng, n, dtype):
    x = rng.normal(size=(n, CLASSES)) * 2
    x[::2] = np.round(x[::2] * 4) / 4  # every other video: coarse values, ties at any K
    return x.astype(dtype)


@pytest.fixture
def source(tmp_path, monkeypatch):
    """models/m/: dense float16 oof and test parts, two folds of float32 parts, metrics.json;
    returns {(folder, part): (dense logits, labels)}."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    folder = Path("models/m")
    dense = {}
    for where, dtype, rows in ((folder, np.float16, range(VIDEOS)),
                               (folder / "fold_0", np.float32, range(0, VIDEOS, 2)),
                               (folder / "fold_1", np.float32, range(1, VIDEOS, 2))):
        for part, ids in (("oof", [f"v{i}" for i in rows]),
                          ("test", [f"t{i}" for i in range(TEST_VIDEOS)])):
            logits = _logits(rng, len(ids), dtype)
            labels = [rng.choice(CLASSES, rng.integers(1, 6), replace=False) for _ in ids]
            predictions.save(where, part, ids, logits, dtype=dtype)
            dense[where, part] = logits, labels
    metrics = {"oof": _scores(*dense[folder, "oof"]),
               "predictions": {"num_classes": CLASSES, "top_k": None}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return dense


def _scores(logits, labels):
    evaluator = Evaluator(CLASSES, from_logits=True)
    evaluator.update(np.asarray(logits[:], np.float32), labels)
    return evaluator.result()


def _disk(folder):
    """Bytes of the prediction files under `folder`, its folds' included."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*")
               if p.suffix == ".npy" or p.name.endswith("_topk.json"))


def _expected(dense, k):
    """Each row's kept classes (best first, lowest id on ties) and its floor, from dense."""
    order = np.lexsort((np.broadcast_to(np.arange(CLASSES), dense.shape), -dense), axis=1)
    ranked = np.take_along_axis(dense, order, axis=1)
    kth, after = ranked[:, k - 1], ranked[:, k]
    below = np.nextafter(kth, np.array(-np.inf, dense.dtype))
    return order[:, :k], np.where(after < kth, after, below)


def _check_top_k(folder, part, dense, labels, k):
    for path in predictions.paths(folder, part, top_k=True):
        assert path.is_file()
    assert not predictions.paths(folder, part)[0].exists()  # the dense logits are gone
    got = predictions.load(folder, part)
    assert isinstance(got.logits, predictions.TopKLogits) and got.logits.values.shape[1] == k
    assert got.logits.values.dtype == dense.dtype  # each part keeps its own precision
    rows = got.logits[:]
    kept, floor = _expected(dense, k)
    np.testing.assert_array_equal(np.sort(got.logits.classes, axis=1), np.sort(kept, axis=1))
    expected = np.repeat(floor.astype(np.float32)[:, None], CLASSES, axis=1)
    np.put_along_axis(expected, kept, np.take_along_axis(dense, kept, 1).astype(np.float32), 1)
    np.testing.assert_array_equal(rows, expected)
    assert (floor < np.take_along_axis(dense, kept, 1).min(axis=1)).all()
    want, have = _scores(dense, labels), _scores(got.logits, labels)
    for name in METRIC_NAMES:
        assert have[name] == pytest.approx(want[name], abs=1e-9), name


@pytest.mark.parametrize("k", [20, 50])
def test_compact_keeps_each_videos_top_k_and_every_metric(source, k):
    ranked = -np.sort(-source[Path("models/m"), "oof"][0], axis=1)
    assert (ranked[:, k - 1] == ranked[:, k]).sum() > 10  # ties at the K-th value are exercised
    stamp = os.stat("models/m/metrics.json").st_mtime_ns
    before = _disk("models/m")
    result = predictions.compact("models/m", k)
    assert len(result["rewritten"]) == 6 and result["before"] == before
    assert result["after"] == _disk("models/m")
    for (folder, part), (dense, labels) in source.items():
        _check_top_k(folder, part, dense, labels, k)
    metrics = json.loads(Path("models/m/metrics.json").read_text())
    assert metrics["predictions"] == {"num_classes": CLASSES, "top_k": k, "compacted_from": None}
    assert os.stat("models/m/metrics.json").st_mtime_ns == stamp  # Make rebuilds nothing
    assert predictions.compact("models/m", k)["rewritten"] == []  # already in this form


def test_compact_refuses_too_few_classes_and_compacts_a_top_k_part_further(source):
    with pytest.raises(Yt8mError, match="--top-k 19: keep at least 20 classes per video"):
        predictions.compact("models/m", 19)
    with pytest.raises(Yt8mError, match="nowhere: no such folder"):
        predictions.compact("nowhere", 50)
    Path("empty").mkdir()
    with pytest.raises(Yt8mError, match="empty: no oof or test predictions here"):
        predictions.compact("empty", 50)
    predictions.compact("models/m", 50)
    with pytest.raises(Yt8mError, match="predictions keep only each video's top 50 classes"):
        predictions.compact("models/m", 100)
    assert len(predictions.compact("models/m", 30)["rewritten"]) == 6  # exact: 31 < 50
    for (folder, part), (dense, labels) in source.items():
        _check_top_k(folder, part, dense, labels, 30)
    record = json.loads(Path("models/m/metrics.json").read_text())["predictions"]
    assert record["top_k"] == 30 and record["compacted_from"] is None


def test_the_cli_prints_the_sizes_and_names_a_missing_folder(source, capsys):
    assert main(["compact", "models/m", "--top-k", "20"]) == 0
    line = capsys.readouterr().out.strip()
    before, after = (int(x.replace(",", "")) for x in line.split(": ")[1].split(" bytes")[0]
                     .split(" -> "))
    assert line.startswith("models/m: ") and "6 part(s) rewritten" in line
    assert f"({before / after:.1f}x smaller" in line and before / after > 2
    assert after == _disk("models/m")
    assert main(["compact", "models/m", "--top-k", "20"]) == 0
    assert capsys.readouterr().out == (f"models/m: {after:,} bytes, already the top 20 logits "
                                       f"per video; nothing to do\n")
    assert main(["compact", "nowhere", "--top-k", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yt8m compact: error: nowhere: no such folder") and "Traceback" not in err


def test_compact_refuses_a_locked_folder_and_holds_the_memory_of_a_chunk(tmp_path, capsys):
    import tracemalloc

    from yt8m.fileio import output_lock

    rng = np.random.default_rng(2)
    peaks = []
    for n in (8192, 32768):  # 4x the videos (memory-mapped pages are not counted)
        folder = tmp_path / str(n)
        with predictions.writer(folder, "oof", [f"v{i}" for i in range(n)], 500) as out:
            for chunk in predictions.chunks(n, 4096):
                out[chunk] = rng.normal(size=(chunk.stop - chunk.start, 500))
        predictions.save(folder, "test", ["t"], np.zeros((1, 500)))
        with output_lock(folder, "a test"):
            assert main(["compact", str(folder), "--top-k", "20"]) == 2
        assert "is being written by process" in capsys.readouterr().err
        tracemalloc.start()
        predictions.compact(folder, 20)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # the ids alone grow with the videos (a few copies of 24 bytes each); a dense row is 1000
    assert (peaks[1] - peaks[0]) / (32768 - 8192) < 100 and peaks[1] < 32768 * 500 * 2 / 3


def _compact_cli(*kill_at):
    kill = [*kill_at, "--"] if kill_at else ["--"]
    return subprocess.run([sys.executable, str(ROOT / "tests" / "kill_at.py"), *kill, "compact",
                           "models/m", "--top-k", "20"], env=os.environ | {"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kill_at", [
    ("yt8m.predictions:writer", "2"),  # between the first part and the second
    ("yt8m.predictions:_TopKWriter.__setitem__", "2", "after"),  # files written, not renamed
    ("yt8m.predictions:_remove_other_form", "1"),  # both forms of the first part on disk
], ids=["between-parts", "inside-a-part", "before-the-dense-form-goes"])
def test_a_killed_compact_leaves_every_part_readable_and_a_rerun_finishes(source, kill_at):
    run = _compact_cli(*kill_at)
    assert run.returncode == -signal.SIGKILL, run.stderr
    for (folder, part), (dense, labels) in source.items():
        got = predictions.load(folder, part)  # either form, complete
        scores = _scores(got.logits, labels)
        assert scores["gap"] == pytest.approx(_scores(dense, labels)["gap"], abs=1e-9)
    rerun = _compact_cli()
    assert rerun.returncode == 0, rerun.stderr
    for (folder, part), (dense, labels) in source.items():
        _check_top_k(folder, part, dense, labels, 20)
    assert not [p for p in Path("models/m").rglob(".*") if p.name != ".lock"]  # no temporaries


# A trained model compacted, then trained again: nothing trains, the compacted form stays while
# the spec is unchanged, and a spec that changes its form reassembles from the compacted folds.

SPEC = "model: frame_logistic\npreset: demo\nseed: 3\ntraining: {epochs: 1, num_frames: 16}\n"


def test_train_after_compact_neither_trains_again_nor_breaks(tiny_features, tmp_path,
                                                            monkeypatch, capsys):
    from yt8m.models import trainer as oof

    monkeypatch.chdir(tmp_path)
    Path("features").symlink_to(tiny_features)
    Path("models").mkdir()
    spec = Path("models/flog.yaml")
    spec.write_text(SPEC)
    trained, _ = oof.train(spec)
    folds = sorted(Path("models/flog").glob("fold_*/fold.json"))
    stamps = [p.stat().st_mtime_ns for p in folds]
    assert main(["compact", "models/flog", "--top-k", "20"]) == 0
    capsys.readouterr()

    def check(top_k):
        metrics = json.loads(Path("models/flog/metrics.json").read_text())
        for name in METRIC_NAMES:
            assert metrics["oof"][name] == pytest.approx(trained["oof"][name], abs=1e-9)
        for part in PARTS:
            logits = predictions.load("models/flog", part).logits
            kept = logits.values.shape[1] if isinstance(logits, predictions.TopKLogits) else None
            assert kept == top_k
        assert [p.stat().st_mtime_ns for p in folds] == stamps  # no fold trained again
        for folder in Path("models/flog").glob("fold_*"):  # the folds stay compact
            assert not (folder / "oof_logits.npy").exists()
        return metrics

    assert main(["train", str(spec), "--quiet"]) == 0
    assert "flog: up to date" in capsys.readouterr().out
    check(20)  # the unchanged dense spec keeps the compacted files
    spec.write_text(SPEC + "predictions: {top_k: 30}\n")
    assert main(["train", str(spec), "--quiet"]) == 0
    assert check(30)["predictions"]["top_k"] == 30
    spec.write_text(SPEC)  # back to dense: reassembled dense from the compacted folds
    assert main(["train", str(spec), "--quiet"]) == 0
    check(None)


def test_bench_top_k_sets_dense_members_against_compacted_ones(tiny_features, tmp_path,
                                                               monkeypatch):
    from yt8m.bench.topk import topk_report
    from yt8m.features.cache import FeatureCache

    monkeypatch.chdir(tmp_path)
    cache = FeatureCache(tiny_features, "frame")
    labeled = np.flatnonzero((cache.fold >= 0) & (np.diff(cache.label_offsets) > 0))
    rng = np.random.default_rng(1)
    for name, noise in (("a", 1.0), ("b", 2.0)):
        for part, rows in (("oof", labeled), ("test", cache.rows("test"))):
            logits = rng.normal(size=(len(rows), cache.num_classes)) * noise
            for i, labels in enumerate(cache.label_lists(rows)):
                logits[i, labels] += 3
            predictions.save(f"models/{name}", part, cache.ids[rows], logits)
        Path(f"models/{name}/metrics.json").write_text('{"oof": {"gap": 0.5}}')
    Path("ensembles").mkdir()
    for name, combiner in (("m", "mean"), ("w", "weighted"), ("s", "stack")):
        Path(f"ensembles/{name}.yaml").write_text(f"members: [a, b]\ncombiner: {combiner}\n")
    text = "\n".join(topk_report(tiny_features, ks=(20, 50), chosen=["mean", "weighted"],
                                 say=lambda line: None))
    assert "`s`" not in text  # the stacker left out
    for member in ("a", "b"):  # their OOF GAP@20 does not move
        assert next(line for line in text.splitlines() if line.startswith(f"| `{member}` |")) \
            .endswith("| 0 |")
    assert sum(line.startswith(("| `m` | mean |", "| `w` | weighted |"))
               for line in text.splitlines()) == 4
    ratio = next(line for line in text.splitlines() if line.startswith("| top 20 |"))
    # 1000 x 2 bytes a video against 20 x 4 + 2 (24x), less the files' fixed parts
    assert float(ratio.split(" | ")[-1].split("x")[0]) > 15
    assert not list(Path("models").rglob("*topk*"))  # the workspace is not touched
