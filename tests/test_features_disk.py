"""The cache can replace the TFRecords: `yt8m features --delete-input` deletes each source shard
once its conversion is committed and verified, later builds keep such shards, a kill at any point
loses nothing, and `yt8m download --convert --delete-input` fetches a fraction piece by piece so
the disk holds about one copy of the data."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import crc32c
import numpy as np
import pytest

from tests.conftest import make_video, write_shard
from yt8m.cli import main
from yt8m.errors import InputError, Yt8mError
from yt8m.features import writer as build_module
from yt8m.features.cache import FeatureCache
from yt8m.features.piecewise import download_and_convert
from yt8m.features.writer import build_features
from yt8m.input import download as download_module
from yt8m.input.download import split_shard

ROOT = Path(__file__).resolve().parents[1]


def _sources(input_dir):
    return sorted(p.name for p in (input_dir / "frame").glob("*.tfrecord"))


def _small_input(root, shards=4, videos=3, prefix="s"):
    for s in range(shards):
        write_shard(root / "frame" / f"train{s:04d}.tfrecord",
                    [make_video(f"{prefix}{s}-{i}", frames=2 + i, seed=10 * s + i)
                     for i in range(videos)])
    return root


def _check_cache(features, videos):
    """FeatureCache opens, holds `videos` videos, reads every one, and every array of every
    shard it lists matches the checksum, shape and dtype recorded in its meta.json."""
    cache = FeatureCache(features)
    assert len(cache) == videos
    for row in range(len(cache)):
        assert cache.frames(row).shape == (cache.num_frames[row], 1152)
    assert len(cache.label_lists(np.arange(len(cache)))) == videos
    assert np.isfinite(cache.means(np.arange(len(cache)))).all()
    for name in cache.shard_names:
        meta = json.loads((features / "frame" / name / "meta.json").read_text())
        for array, info in meta["arrays"].items():
            a = np.load(features / "frame" / name / f"{array}.npy")
            assert [list(a.shape), str(a.dtype)] == [info["shape"], info["dtype"]]
            assert f"{crc32c.crc32c(np.ascontiguousarray(a).data):08x}" == info["crc32c"]
    return cache


def _same_arrays(a, b):
    """Two caches hold the same shards with byte-identical arrays."""
    names = [s["name"] for s in json.loads((a / "frame" / "manifest.json").read_text())["shards"]]
    other = [s["name"] for s in json.loads((b / "frame" / "manifest.json").read_text())["shards"]]
    assert names == other
    for name in names:
        for path in sorted((a / "frame" / name).glob("*.npy")):
            np.testing.assert_array_equal(np.load(path), np.load(b / "frame" / name / path.name))


# 1. --delete-input converts, verifies, deletes; without it nothing is deleted.

def test_delete_input_leaves_a_complete_cache_and_no_shards(workspace, tiny_features, capsys):
    input_dir, features = workspace
    manifest = build_features(input_dir, features, workers=2, progress=False, delete_input=True)
    assert manifest["converted_now"] == 6 and manifest["deleted_now"] == 6
    assert _sources(input_dir) == []
    assert (input_dir / "vocabulary.csv").exists()  # only shards are deleted
    cache = _check_cache(features, 6 * 30)
    assert list(cache.ids) == list(FeatureCache(tiny_features).ids)
    _same_arrays(features, tiny_features)  # the same cache as a build that kept its input
    for name in cache.shard_names:
        assert json.loads((features / "frame" / name / "meta.json").read_text())[
            "source_deleted"] is True
    # Through the CLI: the summary says what was deleted.
    _small_input(input_dir, shards=1, prefix="more")  # train0000 anew: its source changed
    assert main(["features", "--input", str(input_dir), "--features", str(features),
                 "--delete-input", "--quiet"]) == 0
    assert "1 shards converted now, 1 source shards deleted" in capsys.readouterr().out
    assert _sources(input_dir) == []


def test_without_the_flag_nothing_is_deleted(workspace):
    input_dir, features = workspace
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
              for p in (input_dir / "frame").iterdir()}
    manifest = build_features(input_dir, features, progress=False)
    assert manifest["deleted_now"] == 0
    build_features(input_dir, features, progress=False)
    assert main(["features", "--input", str(input_dir), "--features", str(features),
                 "--quiet"]) == 0
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
             for p in (input_dir / "frame").iterdir()}
    assert after == before
    assert not any("source_deleted" in (features / "frame" / n / "meta.json").read_text()
                   for n in FeatureCache(features).shard_names)


def test_a_damaged_cache_array_is_not_trusted_and_its_source_is_kept(tmp_path):
    input_dir, features = _small_input(tmp_path / "input"), tmp_path / "features"
    build_features(input_dir, features, num_folds=2, progress=False)
    frames = features / "frame" / "train0001" / "frames.npy"
    data = bytearray(frames.read_bytes())
    data[-1] ^= 0xFF  # one bit rot in the last frame
    frames.write_bytes(bytes(data))
    with pytest.raises(Yt8mError, match=r"train0001/frames\.npy does not match meta\.json.*"
                                        r"train0001\.tfrecord was kept.*delete .*train0001/"):
        build_features(input_dir, features, num_folds=2, progress=False, delete_input=True)
    assert "train0001.tfrecord" in _sources(input_dir)
    shutil.rmtree(features / "frame" / "train0001")  # the fix the error names
    manifest = build_features(input_dir, features, progress=False, delete_input=True)
    assert manifest["converted_now"] == 1 and _sources(input_dir) == []
    _check_cache(features, 12)


def test_nothing_is_deleted_before_the_manifest_is_committed(tmp_path):
    input_dir, features = _small_input(tmp_path / "input"), tmp_path / "features"
    write_shard(input_dir / "frame" / "train0009.tfrecord", [make_video("s1-1")])  # a duplicate
    with pytest.raises(InputError, match="video id 's1-1' is also in"):
        build_features(input_dir, features, num_folds=2, progress=False, delete_input=True)
    assert len(_sources(input_dir)) == 5  # every shard converted, none listed, none deleted


# 2. Later builds keep shards whose sources --delete-input deleted.

def test_a_rebuild_keeps_the_shards_whose_sources_are_gone(tmp_path, capsys):
    input_dir, features = _small_input(tmp_path / "input"), tmp_path / "features"
    build_features(input_dir, features, num_folds=2, progress=False, delete_input=True)
    manifest = (features / "frame" / "manifest.json").read_bytes()
    folds = (features / "folds.csv").read_bytes()
    again = build_features(input_dir, features, progress=False)  # no flag, no sources
    assert again["converted_now"] == 0 and again["orphaned_shards"] == []
    # unchanged, byte for byte: Make sees nothing new downstream
    assert (features / "frame" / "manifest.json").read_bytes() == manifest
    assert (features / "folds.csv").read_bytes() == folds
    _check_cache(features, 12)
    # New shards join the kept ones; a re-downloaded (changed) source is converted again.
    write_shard(input_dir / "frame" / "validate0000.tfrecord", [make_video("v0")])
    write_shard(input_dir / "frame" / "train0002.tfrecord", [make_video("re0"), make_video("re1")])
    third = build_features(input_dir, features, progress=False)
    assert third["converted_now"] == 2
    cache = _check_cache(features, 12 - 3 + 2 + 1)
    assert sorted(cache.ids[cache.shard_of == 2]) == ["re0", "re1"]
    assert _sources(input_dir) == ["train0002.tfrecord", "validate0000.tfrecord"]
    # Settings that would need the deleted sources are refused, naming the shard and the way out.
    with pytest.raises(Yt8mError, match=r"train0000/ was converted with .*'max_frames': 300.*"
                                        r"deleted \(--delete-input\).*3 such shards"):
        build_features(input_dir, features, max_frames=100, progress=False)
    assert (features / "frame" / "manifest.json").exists()
    # An input folder holding no shard at all still builds from the cache.
    build_features(input_dir, features, progress=False, delete_input=True)
    shutil.rmtree(input_dir / "frame")
    assert build_features(input_dir, features, progress=False)["converted_now"] == 0
    _check_cache(features, 12)


def test_2019_shards_join_2018_shards_whose_sources_are_gone(tmp_path):
    input_dir, features = _small_input(tmp_path / "input"), tmp_path / "features"
    build_features(input_dir, features, num_folds=2, progress=False, delete_input=True)
    rated = make_video("seg", frames=6, segment_start_times=np.array([0]),
                       segment_labels=np.array([7]), segment_scores=np.array([1.0]))
    write_shard(input_dir / "frame" / "validate0000.tfrecord", [rated], version="2019")
    # The version becomes 2019; 2018 records convert the same under it, so nothing is redone.
    manifest = build_features(input_dir, features, progress=False)
    assert manifest["version"] == "2019" and manifest["converted_now"] == 1
    _check_cache(features, 13)


# 3. A kill (SIGKILL) at any point of a --delete-input build loses nothing.

def _yt8m(input_dir, features, *flags, kill_at=None):
    kill = [*kill_at, "--"] if kill_at else ["--"]
    command = [sys.executable, str(ROOT / "tests" / "kill_at.py"), *kill, "features",
               "--input", str(input_dir), "--features", str(features), "--folds", "2",
               "--workers", "1", "--quiet", *flags]
    return subprocess.run(command, env=os.environ | {"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)


DELETE = "yt8m.features.writer:_delete_source"
MANIFEST = "yt8m.features.writer:_write_manifest"


@pytest.mark.slow  # subprocesses killed at three points; `make test-slow`, run by CI
@pytest.mark.parametrize("kill_at, first_build, sources_left", [
    # just after the 2nd source was deleted: the next manifest write is a later build's
    ((DELETE, "2", "after"), False, 2),
    # meta.json says source_deleted, the source is still there
    ((DELETE, "1"), False, 4),
    # a later --delete-input build, before its manifest: the earlier shards have no source
    ((MANIFEST, "1"), True, 2),
], ids=["after-a-deletion", "before-a-deletion", "before-the-next-manifest"])
def test_a_killed_delete_input_build_loses_nothing(tmp_path, kill_at, first_build, sources_left):
    input_dir, features = tmp_path / "input", tmp_path / "features"
    _small_input(input_dir, shards=2 if first_build else 4)
    if first_build:
        build_features(input_dir, features, num_folds=2, progress=False, delete_input=True)
        _small_input(input_dir, shards=4)  # train0000/1 anew, train0002/3 new
        for shard in ("train0000", "train0001"):
            os.unlink(input_dir / "frame" / f"{shard}.tfrecord")
    run = _yt8m(input_dir, features, "--delete-input", kill_at=kill_at)
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert len(_sources(input_dir)) == sources_left
    # The next build, without the flag, keeps every shard; one with the flag finishes the job.
    rerun = _yt8m(input_dir, features)
    assert rerun.returncode == 0, rerun.stderr
    assert len(_sources(input_dir)) == sources_left
    _check_cache(features, 12)
    assert _yt8m(input_dir, features, "--delete-input").returncode == 0
    assert _sources(input_dir) == []
    cache = _check_cache(features, 12)
    assert sorted(cache.ids) == sorted(f"s{s}-{i}" for s in range(4) for i in range(3))


# 4. Download piece by piece, converting and deleting each: about 1x the disk.

# A stand-in for the official download.py, run the same way (piped to python in input/<level>/):
# it keeps the official plan file of remote names ('trainaf.tfrecord'), takes a file into part m
# of n when md5(name) % n == m - 1, saves it under the official local name ('train0005.tfrecord')
# from $MIRROR, and drops it from the plan once its MD5 matches. $DAMAGE names a file it truncates
# (the official script then prints an error, keeps the file in its plan and exits 0).
STUB = """
import hashlib, itertools, json, os, shutil, string
letters = string.ascii_lowercase + string.ascii_uppercase + string.digits
codes = ["".join(c) for c in itertools.product(letters, repeat=2)]
mirror = os.environ["MIRROR"]
m, n = map(int, os.environ["shard"].split(","))
plan_file = os.environ["partition"].replace("/", "_") + "_download_plan.json"
if not os.path.exists(plan_file):
    files = {f[:-13] + codes[int(f[-13:-9])] + ".tfrecord":
             hashlib.md5(open(os.path.join(mirror, f), "rb").read()).hexdigest()
             for f in sorted(os.listdir(mirror)) if f.endswith(".tfrecord")}
    json.dump({"files": files}, open(plan_file, "w"))
plan = json.load(open(plan_file))
for f in [f for f in plan["files"] if int(hashlib.md5(f.encode()).hexdigest(), 16) % n == m - 1]:
    out = "%s%04i.tfrecord" % (f[:-11], codes.index(f[-11:-9]))
    shutil.copyfile(os.path.join(mirror, out), out)
    if out == os.environ.get("DAMAGE"):
        open(out, "r+b").truncate(100)
    if hashlib.md5(open(out, "rb").read()).hexdigest() == plan["files"][f]:
        del plan["files"][f]
        json.dump(plan, open(plan_file, "w"))
    else:
        print("Error downloading %s. MD5 does not match!" % f)
"""


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """12 train shards to 'download', served by the stub script through file:// URLs."""
    root = _small_input(tmp_path / "mirror", shards=12, videos=4)
    (root / "vocabulary.csv").write_text("Index,Name\n" + "".join(f"{i},c{i}\n"
                                                                 for i in range(3862)))
    (tmp_path / "download.py").write_text(STUB)
    monkeypatch.setenv("MIRROR", str(root / "frame"))
    monkeypatch.setattr(download_module, "SCRIPT_URL", (tmp_path / "download.py").as_uri())
    monkeypatch.setitem(download_module.VOCABULARY_URLS, "2", (root / "vocabulary.csv").as_uri())
    return root


def _size(*folders):
    return sum(p.stat().st_size for f in folders for p in Path(f).rglob("*") if p.is_file())


def test_split_shard_takes_exactly_the_files_of_the_fraction():
    names = [f"train{i:04d}.tfrecord" for i in range(3844)]

    def part(shard):
        m, n = map(int, shard.split(","))
        return {f for f in names if int(hashlib.md5(f.encode()).hexdigest(), 16) % n == m - 1}

    pieces = [part(s) for s in split_shard("3,100", 10)]
    assert split_shard("3,100", 10)[:2] == ["3,1000", "103,1000"]
    assert set().union(*pieces) == part("3,100") and sum(map(len, pieces)) == len(part("3,100"))
    assert split_shard("2,7", 1) == ["2,7"]
    with pytest.raises(Yt8mError, match="--parts must be at least 1"):
        split_shard("1,1", 0)


def test_download_convert_piece_by_piece_holds_about_one_copy(tmp_path, mirror, monkeypatch,
                                                              capsys):
    input_dir, features = tmp_path / "input", tmp_path / "features"
    peak = [0]
    real = build_module._delete_sources

    def measured(cache_dir, manifest):  # the peak: a piece converted, its shards not yet deleted
        peak[0] = max(peak[0], _size(input_dir, features))
        return real(cache_dir, manifest)

    monkeypatch.setattr(build_module, "_delete_sources", measured)
    # 3 folds: the first piece (1 shard) waits for the second (7 shards) to be folded.
    assert main(["download", "--partition", "2/frame/train", "--shard", "1,1", "--parts", "4",
                 "--convert", "--delete-input", "--input", str(input_dir), "--features",
                 str(features), "--folds", "3", "--workers", "1", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "piece 4 of 4: partition=2/frame/train shard=4,4" in out
    assert "piece 1 of 4: fewer labeled shards than folds so far" in err
    assert _sources(input_dir) == []
    cache = _check_cache(features, 48)
    assert sorted(cache.ids) == sorted(f"s{s}-{i}" for s in range(12) for i in range(4))
    data = _size(mirror / "frame")
    # 2x: everything downloaded, then converted. 1x: the cache plus about a piece of shards.
    assert peak[0] < _size(features) + 0.6 * data
    # A rerun resumes: the plan lists nothing, nothing is downloaded, converted or deleted.
    manifest = (features / "frame" / "manifest.json").read_bytes()
    assert download_and_convert("2/frame/train", "1,1", 4, input_dir=input_dir,
                                features_dir=features, workers=1, progress=False,
                                delete_input=True) is None
    assert "piece 4 of 4: no shard to convert" in capsys.readouterr().out
    assert (features / "frame" / "manifest.json").read_bytes() == manifest
    # Without --delete-input the pieces are converted and kept.
    kept = tmp_path / "kept"
    download_and_convert("2/frame/train", "1,1", 3, input_dir=kept / "input",
                         features_dir=kept / "features", num_folds=2, workers=1, progress=False)
    assert len(_sources(kept / "input")) == 12
    _same_arrays(features, kept / "features")
    capsys.readouterr()
    assert main(["download", "--delete-input", "--input", str(tmp_path / "x")]) == 2
    assert "--delete-input deletes the shards once converted, so it needs --convert" in \
        capsys.readouterr().err


def test_a_piece_that_failed_its_md5_stops_before_it_is_converted(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("DAMAGE", "train0007.tfrecord")  # in the third piece of three
    input_dir, features = tmp_path / "input", tmp_path / "features"
    with pytest.raises(Yt8mError, match=r"did not fetch 1 files of partition=2/frame/train "
                                        r"shard=3,3 in .*\(train0007\.tfrecord\): they are "
                                        r"missing or fail their MD5.*Delete"):
        download_and_convert("2/frame/train", "1,1", 3, input_dir=input_dir,
                             features_dir=features, num_folds=2, workers=1, progress=False,
                             delete_input=True, skip_corrupt=True)
    # The first two pieces are converted and deleted; the third is kept, unconverted.
    assert _sources(input_dir) == ["train0000.tfrecord", "train0007.tfrecord",
                                   "train0011.tfrecord"]
    assert len(FeatureCache(features)) == 9 * 4
    monkeypatch.delenv("DAMAGE")
    os.unlink(input_dir / "frame" / "train0007.tfrecord")  # the fix the error names
    download_and_convert("2/frame/train", "1,1", 3, input_dir=input_dir, features_dir=features,
                         workers=1, progress=False, delete_input=True)
    assert _sources(input_dir) == []
    _check_cache(features, 48)


def test_make_targets_pass_the_flags():
    def dry(*args):
        return subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout

    assert "--delete-input" not in dry("features")
    assert "--delete-input" in dry("features", "DELETE_INPUT=1")
    line = dry("download-features", "PARTITION=2/frame/validate", "SHARD=3,100", "PARTS=4")
    for flag in ("--partition 2/frame/validate", "--shard 3,100", "--parts 4", "--convert",
                 "--delete-input"):
        assert flag in line
