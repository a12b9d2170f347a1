"""`yt8m features` under failure: partial commits, corrupt input, killed and concurrent runs, full
disks and odd records. Each test reproduces one way the build used to lose or hide data."""

import errno
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_video, write_shard
from yt8m.errors import InputError, Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.features.loader import BatchLoader
from yt8m.features.writer import build_features
from yt8m.input.protos import SequenceExample
from yt8m.input.schema import Video, encode
from yt8m.input.tfrecord import iter_records, write_records

ROOT = Path(__file__).resolve().parents[1]
YT8M = str(Path(sys.executable).parent / "yt8m")


def _small_input(root, shards=2, videos=3):
    """`shards` train shards of `videos` short videos each, ids `s<shard>-<video>`."""
    for s in range(shards):
        write_shard(root / "frame" / f"train{s:04d}.tfrecord",
                    [make_video(f"s{s}-{i}", frames=2, seed=10 * s + i) for i in range(videos)])
    return root


# 1. manifest.json and folds.csv are committed together.

def test_a_failed_folds_write_leaves_the_manifest_as_it_was(workspace, monkeypatch):
    input_dir, features = workspace
    build_features(input_dir, features, progress=False)
    manifest = (features / "frame" / "manifest.json").read_bytes()
    write_shard(input_dir / "frame" / "train0009.tfrecord",
                [make_video(f"new{i}", seed=i) for i in range(4)])
    real_replace = os.replace

    def replace(src, dst, **kwargs):  # features/ is read-only, features/frame/ is not
        if Path(dst).name == "folds.csv":
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Yt8mError, match="folds.csv"):
        build_features(input_dir, features, workers=1, progress=False)
    monkeypatch.undo()
    # Neither file took the new shard: the cache is still the previous, consistent one.
    assert (features / "frame" / "manifest.json").read_bytes() == manifest
    assert "train0009" not in set(pd.read_csv(features / "folds.csv")["shard"])
    build_features(input_dir, features, progress=False)
    cache = FeatureCache(features)
    assert (cache.fold[cache.rows("train")] >= 0).all()


def test_a_manifest_shard_without_a_fold_is_refused_and_repaired(workspace):
    input_dir, features = workspace
    build_features(input_dir, features, progress=False)
    folds = pd.read_csv(features / "folds.csv")
    folds[folds["shard"] != "train0002"].to_csv(features / "folds.csv", index=False)
    with pytest.raises(Yt8mError, match=r"folds.csv.*train0002.*yt8m features"):
        FeatureCache(features)
    build_features(input_dir, features, progress=False)
    cache = FeatureCache(features)
    assert (cache.fold[cache.rows(["train", "validate"])] >= 0).all()


def test_folds_csv_video_counts_follow_a_shrunk_shard(workspace):
    input_dir, features = workspace
    build_features(input_dir, features, progress=False)
    before = pd.read_csv(features / "folds.csv").set_index("shard")
    write_shard(input_dir / "frame" / "train0001.tfrecord",
                [make_video(f"few{i}", seed=i) for i in range(4)])
    build_features(input_dir, features, progress=False)
    after = pd.read_csv(features / "folds.csv").set_index("shard")
    assert after.loc["train0001", "videos"] == 4
    assert (after["fold"] == before["fold"]).all()  # a shard keeps its fold
    others = after.index != "train0001"
    assert (after.loc[others, "videos"] == before.loc[others, "videos"]).all()


# 2. --skip-corrupt says exactly what it drops.

def test_skip_corrupt_keeps_the_records_after_a_bad_length_header(tmp_path):
    _small_input(tmp_path / "input")
    shard = write_shard(tmp_path / "input" / "frame" / "train0000.tfrecord",
                        [make_video(f"a{i}", frames=2, seed=i) for i in range(50)])
    data = bytearray(shard.read_bytes())
    data[list(iter_records(shard))[10][1]] ^= 0x01  # one bit of record 10's length
    shard.write_bytes(bytes(data))
    with pytest.raises(Yt8mError, match="record 10 .*length header"):
        build_features(tmp_path / "input", tmp_path / "features", num_folds=2, progress=False)
    manifest = build_features(tmp_path / "input", tmp_path / "features", num_folds=2,
                              skip_corrupt=True, progress=False)
    entry = manifest["shards"][0]
    assert (entry["videos"], entry["skipped_records"]) == (49, 1)
    assert entry["skipped_bytes"] == 0  # the damaged bytes were exactly one record
    assert manifest["skipped_records"] == 1
    cache = FeatureCache(tmp_path / "features")
    assert list(cache.ids[cache.shard_of == 0]) == [f"a{i}" for i in range(50) if i != 10]


_TEXT = b"video_id,labels\n" + b"abcd,1 2 3\n" * 100


@pytest.mark.parametrize("content", [b"", _TEXT, gzip.compress(_TEXT)],
                         ids=["empty", "text", "gzip-of-text"])
def test_unreadable_files_are_skipped_and_listed_under_skip_corrupt(tmp_path, capsys, content):
    input_dir, features = _small_input(tmp_path / "input", shards=3), tmp_path / "features"
    (input_dir / "frame" / "train0001.tfrecord").write_bytes(content)
    with pytest.raises(InputError, match="train0001.tfrecord"):
        build_features(input_dir, features, num_folds=2, progress=False)
    manifest = build_features(input_dir, features, num_folds=2, skip_corrupt=True,
                              progress=False)
    assert [s["name"] for s in manifest["shards"]] == ["train0000", "train0002"]
    assert [Path(f["path"]).name for f in manifest["skipped_files"]] == ["train0001.tfrecord"]
    assert "train0001.tfrecord" in capsys.readouterr().err
    assert len(FeatureCache(features)) == 6


def test_gzip_compressed_shards_are_read(tmp_path):
    import tensorflow as tf

    plain = _small_input(tmp_path / "plain", shards=3, videos=5)
    packed = tmp_path / "gzip" / "frame"
    packed.mkdir(parents=True)
    for shard in sorted((plain / "frame").glob("*.tfrecord")):
        if shard.name == "train0000.tfrecord":  # TensorFlow's own GZIP writer
            options = tf.io.TFRecordOptions(compression_type="GZIP")
            with tf.io.TFRecordWriter(str(packed / shard.name), options) as writer:
                for _, _, payload in iter_records(shard):
                    writer.write(payload)
        else:
            (packed / shard.name).write_bytes(gzip.compress(shard.read_bytes()))
        assert (packed / shard.name).read_bytes()[:2] == b"\x1f\x8b"
    build_features(plain, tmp_path / "f-plain", num_folds=2, progress=False)
    build_features(packed.parent, tmp_path / "f-gzip", num_folds=2, progress=False)
    a, b = FeatureCache(tmp_path / "f-plain"), FeatureCache(tmp_path / "f-gzip")
    assert len(a) == len(b) == 15 and list(a.ids) == list(b.ids)
    for row in range(len(a)):
        np.testing.assert_array_equal(a.frames(row), b.frames(row))
    rows = np.arange(15)
    assert [list(x) for x in a.label_lists(rows)] == [list(x) for x in b.label_lists(rows)]


# 3. Workers die with their parent.

def _proc_stat(pid):
    """(state, ppid) of a process from /proc, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _alive(pid):
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _workers_of(pid):
    """Process-pool workers (multiprocessing `spawn_main`) whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (_proc_stat(entry.name) or ("", 0))[1] != pid:
            continue
        try:
            if b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_die_with_a_killed_build(tmp_path):
    input_dir, features = _small_input(tmp_path / "input", shards=3), tmp_path / "features"
    # Many tiny videos: several seconds to convert, so a worker is busy when its parent dies.
    empty = {"rgb": np.zeros((0, 1024), np.uint8), "audio": np.zeros((0, 128), np.uint8)}
    long = [Video(id=f"long{i:06d}", labels=np.array([i % 7]), **empty) for i in range(40_000)]
    write_shard(input_dir / "frame" / "train0000.tfrecord", long)
    command = [YT8M, "features", "--input", str(input_dir), "--features", str(features),
               "--workers", "2", "--folds", "2", "--quiet"]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _workers_of(parent.pid):
        assert parent.poll() is None, parent.stderr.read().decode()
        assert time.monotonic() < deadline, "no worker process started"
        time.sleep(0.02)
    time.sleep(0.5)  # the workers take their shards
    workers = _workers_of(parent.pid)
    parent.kill()
    parent.wait()
    parent.stderr.close()
    # The kernel kills them as the parent exits; the slack is for a loaded machine.
    deadline = time.monotonic() + 2
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [w for w in workers if _alive(w)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"workers {survivors} outlived their killed parent"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    cache = FeatureCache(features)
    assert len(cache) == 40_000 + 6
    assert list(cache.ids[cache.shard_of == 0][:2]) == ["long000000", "long000001"]
    assert not list((features / "frame").glob(".*"))


# 4. One writer.

def test_a_second_build_fails_at_once_naming_the_first(tmp_path):
    input_dir, features = _small_input(tmp_path / "input"), tmp_path / "features"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from yt8m.fileio import output_lock\n"
         "with output_lock(sys.argv[1], 'yt8m features --level frame'):\n"
         "    print('held', flush=True); time.sleep(60)", str(features)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with pytest.raises(Yt8mError, match=rf"being written by process {holder.pid} "
                                            rf"\(yt8m features --level frame"):
            build_features(input_dir, features, num_folds=2, progress=False)
        assert time.monotonic() - started < 5
        assert not (features / "frame" / "manifest.json").exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    build_features(input_dir, features, num_folds=2, progress=False)  # the lock died with it


# 5a. A full disk names the shard and leaves no half-written shard.

@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   OSError("10152576 requested and 1007488 written")],
                         ids=["ENOSPC", "numpy-short-write"])
def test_a_full_disk_names_the_shard(tmp_path, monkeypatch, error):
    input_dir, features = _small_input(tmp_path / "input"), tmp_path / "features"
    real_save = np.save

    def save(file, array, **kwargs):
        if Path(file).name == "frames.npy":
            Path(file).write_bytes(b"\x93NUMPY half a file")
            raise error
        return real_save(file, array, **kwargs)

    monkeypatch.setattr(np, "save", save)
    with pytest.raises(Yt8mError, match=r"train0000\.tfrecord.*disk is full"):
        build_features(input_dir, features, workers=1, num_folds=2, progress=False)
    assert sorted(p.name for p in (features / "frame").iterdir()) == []


def test_a_file_size_limit_reads_as_a_full_disk(tmp_path):
    input_dir, features = _small_input(tmp_path / "input", videos=300), tmp_path / "features"
    script = ("import resource, sys\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))\n"
              "from yt8m.errors import Yt8mError\n"
              "from yt8m.features.writer import build_features\n"
              "try:\n"
              "    build_features(sys.argv[1], sys.argv[2], workers=1, num_folds=2, "
              "progress=False)\n"
              "except Yt8mError as e:\n"
              "    print(e)\n"
              "    sys.exit(3)\n")
    run = subprocess.run([sys.executable, "-c", script, str(input_dir), str(features)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "train0000.tfrecord" in run.stdout and "disk is full" in run.stdout
    assert sorted(p.name for p in (features / "frame").iterdir()) == []


# 5b. Video ids must be UTF-8.

def _record_with_id(raw, seed):
    message = SequenceExample.FromString(encode(make_video("x", frames=2, seed=seed)))
    message.context.feature["id"].bytes_list.value[0] = raw
    return message.SerializeToString()


def test_non_utf8_video_ids_are_refused_or_skipped(tmp_path):
    input_dir, features = _small_input(tmp_path / "input"), tmp_path / "features"
    write_records(input_dir / "frame" / "train0000.tfrecord",
                  [encode(make_video("ok0")), _record_with_id(b"\xff\xfe", 1),
                   _record_with_id(b"\xfe\xff", 2), encode(make_video("ok3"))])
    with pytest.raises(Yt8mError, match=r"train0000\.tfrecord, record 1: video id "
                                        r"b'\\xff\\xfe' .*UTF-8"):
        build_features(input_dir, features, num_folds=2, progress=False)
    manifest = build_features(input_dir, features, num_folds=2, skip_corrupt=True,
                              progress=False)
    entry = manifest["shards"][0]
    assert (entry["videos"], entry["skipped_records"]) == (2, 2)
    cache = FeatureCache(features)
    assert list(cache.ids[cache.shard_of == 0]) == ["ok0", "ok3"]
    meta = json.loads((features / "frame" / "train0000" / "meta.json").read_text())
    assert any("b'\\xfe\\xff'" in p for p in meta["problems"])


# 5c. Videos without frames are kept and counted.

def test_videos_without_frames_are_counted_and_load(tmp_path, capsys):
    input_dir, features = tmp_path / "input", tmp_path / "features"
    write_shard(input_dir / "frame" / "train0000.tfrecord",
                [make_video("a", frames=0), make_video("b", frames=3), make_video("c", frames=0)])
    write_shard(input_dir / "frame" / "train0001.tfrecord", [make_video("d", frames=0)])
    manifest = build_features(input_dir, features, num_folds=2, progress=False)
    assert [s["zero_frame_videos"] for s in manifest["shards"]] == [2, 1]
    assert manifest["zero_frame_videos"] == 3
    assert "3 videos have no frames" in capsys.readouterr().err
    cache = FeatureCache(features)
    assert list(cache.num_frames) == [0, 3, 0, 0]
    with np.errstate(all="raise"):
        assert np.isfinite(cache.means(np.arange(4))).all()
        for sampling in ("head", "segments", "random"):
            for shuffle in (False, True):
                batch = next(iter(BatchLoader(cache, np.arange(4), batch_size=4, num_frames=4,
                                              sampling=sampling, shuffle=shuffle, prefetch=0)))
                empty = cache.num_frames[batch["rows"]] == 0
                assert empty.sum() == 3 and sorted(batch["rows"]) == [0, 1, 2, 3]
                assert not batch["mask"][empty].any() and batch["mask"][~empty].any()
                assert (batch["frames"][empty] == 0).all()
                assert list(batch["num_frames"][empty]) == [0, 0, 0]

