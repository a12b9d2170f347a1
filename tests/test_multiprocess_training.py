"""Two processes on this machine train ONE data-parallel model (`yt8m.models.distribution`).

Each backend is tried in its own subprocesses: a cluster of two CPU processes joined through
`YT8M_WORKERS`/`YT8M_PROCESS_ID`, each feeding what its engine wants of every global batch
(`shard_batch`), must end with the same variables in both processes, equal to those of a single
process trained on the same global batches; and exactly one of them is the chief. The control:
two processes that do not join end with two different models. Run as a script, this file is one
such process.

Then `yt8m train SPEC --fold 0 --distribute` in two such processes, each in a workspace of its
own: the chief alone writes the fold, whose out-of-fold logits are those of one process training
the same spec; and a cluster killed mid-fold resumes to that same result.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

NUM_CLASSES, GLOBAL_BATCH, STEPS = 20, 16, 6
LEARNING_RATE = 0.5


def _global_batches():
    """The deterministic training data: STEPS global batches of video-level features."""
    rng = np.random.default_rng(7)
    means = rng.normal(size=(STEPS * GLOBAL_BATCH, 1152)).astype(np.float32)
    truth = rng.normal(size=(1152, NUM_CLASSES)).astype(np.float32)
    labels = (means @ truth > 8.0).astype(np.float32)
    return means, labels


def _train(out, mode):
    """One process: train the demo video_logistic model and write its variables to `out`.

    mode: "cluster" (the environment's cluster, each process feeding `shard_batch` of every
    global batch), "single" (one process, the whole global batches) or "alone" (a cluster's
    process that trains without joining, on its half of every batch: two independent models)."""
    import keras

    from yt8m.models import build
    from yt8m.models.distribution import (
        data_parallel_scope,
        distribution_record,
        is_chief,
        shard_batch,
    )

    means, labels = _global_batches()

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return STEPS

        def __getitem__(self, index):
            rows = slice(index * GLOBAL_BATCH, (index + 1) * GLOBAL_BATCH)
            batch = ({"means": means[rows]}, labels[rows])
            if mode == "cluster":  # what the engine wants from this process
                return shard_batch(batch)
            if mode == "alone":  # this process's half, trained on as if it were all
                half = GLOBAL_BATCH // 2
                first = index * GLOBAL_BATCH + int(os.environ["YT8M_PROCESS_ID"]) * half
                own = slice(first, first + half)
                return {"means": means[own]}, labels[own]
            return batch

    with data_parallel_scope(mode != "alone"):
        keras.utils.set_random_seed(0)
        model = build({"model": "video_logistic", "preset": "demo"}, NUM_CLASSES)
        start = [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]
        # plain SGD: a gradient summed (not averaged) over the processes would show, where
        # Adam's normalisation would hide it
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True))
        model.fit(Batches(), epochs=1, shuffle=False, verbose=0)
        record = distribution_record()
    end = [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]
    np.savez(out, *start, *end)
    Path(f"{out}.json").write_text(json.dumps({"chief": is_chief(), "record": record}))


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _environment(backend, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("YT8M_WORKERS", "YT8M_PROCESS_ID", "TF_CONFIG")}
    env.update(KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.update(extra)
    return env


def _run(processes, timeout=120):
    """Wait for every (process, log path); fail with the logs of any that failed."""
    failures = []
    for process, log in processes:
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = "timeout"
        if code != 0:
            failures.append(f"exit {code}:\n{Path(log).read_text()[-3000:]}")
    for process, _ in processes:  # none outlives a failed partner
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not failures, "\n".join(failures)


def _start(out, mode, env, log):
    with open(log, "w") as f:
        process = subprocess.Popen([sys.executable, __file__, str(out), mode], env=env,
                                   stdout=f, stderr=subprocess.STDOUT)
    return process, log


def _load(out):
    """(variables at the start, at the end, the process's record)"""
    with np.load(f"{out}.npz") as stored:
        weights = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    half = len(weights) // 2
    return weights[:half], weights[half:], json.loads(Path(f"{out}.json").read_text())


def _train_cluster(tmp_path, backend, mode="cluster"):
    workers = ",".join(f"localhost:{p}" for p in _free_ports(2))
    processes = [_start(tmp_path / f"process_{i}", mode,
                        _environment(backend, YT8M_WORKERS=workers, YT8M_PROCESS_ID=str(i)),
                        tmp_path / f"process_{i}.log")
                 for i in range(2)]
    _run(processes)
    return [_load(tmp_path / f"process_{i}") for i in range(2)]


_SINGLE = {}


@pytest.fixture
def single(tmp_path_factory, backend):
    """The reference: one process of `backend` trained on the whole global batches (once)."""
    if backend == "jax":
        pytest.importorskip("jax")
    if backend not in _SINGLE:
        folder = tmp_path_factory.mktemp(f"single_{backend}")
        _run([_start(folder / "single", "single", _environment(backend),
                     folder / "single.log")])
        _SINGLE[backend] = _load(folder / "single")
    return _SINGLE[backend]


BACKENDS = ["jax", "tensorflow"]


# each process starts its backend and trains: half a minute apiece on a busy 2-core machine
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_train_one_model(tmp_path, backend, single):
    (start, first, first_info), (_, second, second_info) = _train_cluster(tmp_path, backend)
    single_start, single, single_info = single

    # (a) one model: the same variables in both processes, which did move away from the start
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert max(np.abs(a - s).max() for a, s in zip(first, start, strict=True)) > 1e-2
    # (b) the model that one process trains on the whole global batches, from the same start
    for a, s in zip(start, single_start, strict=True):
        np.testing.assert_array_equal(a, s)
    for a, s in zip(first, single, strict=True):
        np.testing.assert_allclose(a, s, rtol=1e-4, atol=1e-5)
    # (c) exactly one chief, and the record names the cluster
    assert [first_info["chief"], second_info["chief"]] == [True, False]
    assert single_info["chief"] is True
    strategy = {"jax": "DataParallel", "tensorflow": "MultiWorkerMirroredStrategy"}[backend]
    assert first_info["record"] == second_info["record"]
    assert first_info["record"] == {"strategy": strategy, "replicas": 2, "processes": 2}


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_that_do_not_join_train_two_models(tmp_path, backend, single):
    """The control: the same two processes, each training alone on its half of every batch,
    end with different variables, neither of them the single-process model's."""
    (_, first, _), (_, second, _) = _train_cluster(tmp_path, backend, mode="alone")
    _, single, _ = single
    assert not all(np.allclose(a, b, atol=1e-5) for a, b in zip(first, second, strict=True))
    assert not all(np.allclose(a, s, atol=1e-5) for a, s in zip(first, single, strict=True))


def test_cluster_settings_from_the_environment():
    import keras

    from yt8m.errors import Yt8mError
    from yt8m.models.distribution import Cluster, cluster_from_environment, local_batch_rows

    assert cluster_from_environment({}) is None
    assert cluster_from_environment({"YT8M_WORKERS": "a:1", "YT8M_PROCESS_ID": "0"}) is None
    cluster = cluster_from_environment({"YT8M_WORKERS": "a:1, b:2", "YT8M_PROCESS_ID": "1"})
    assert cluster == Cluster(("a:1", "b:2"), 1)
    assert cluster.coordinator == "a:1" and cluster.num_processes == 2
    assert cluster.tf_config() == {"cluster": {"worker": ["a:1", "b:2"]},
                                   "task": {"type": "worker", "index": 1}}
    tf_config = {"cluster": {"chief": ["c:0"], "worker": ["a:1", "b:2"]},
                 "task": {"type": "worker", "index": 0}}
    assert cluster_from_environment({"TF_CONFIG": json.dumps(tf_config)}) == Cluster(
        ("c:0", "a:1", "b:2"), 1)
    for bad in ({"YT8M_WORKERS": "a:1,b:2"},
                {"YT8M_WORKERS": "a:1,b:2", "YT8M_PROCESS_ID": "2"},
                {"YT8M_WORKERS": "a:1,b:2", "YT8M_PROCESS_ID": "one"},
                {"TF_CONFIG": "{}"}):
        with pytest.raises(Yt8mError):
            cluster_from_environment(bad)
    # JAX: each process feeds its own slice; TensorFlow: the whole batch, the strategy splits it
    expected = slice(8, 16) if keras.backend.backend() == "jax" else slice(0, 16)
    assert local_batch_rows(16, cluster) == expected


# `yt8m train --distribute` in a cluster of two processes: one out-of-fold training
SPEC = ("model: video_logistic\npreset: demo\nseed: 1\n"
        "training: {epochs: 3, batch_size: 16}\n")  # a global batch both processes split
TRAIN = ["-m", "yt8m.cli", "train", "models/x.yaml", "--fold", "0", "--distribute", "--quiet"]


def _spec_workspace(folder, features):
    """A workspace of its own: the features (a link) and the spec, nothing else."""
    (folder / "models").mkdir(parents=True)
    (folder / "features").symlink_to(features)
    (folder / "models" / "x.yaml").write_text(SPEC)
    return folder


def _start_train(folder, env, log):
    with open(log, "w") as f:
        process = subprocess.Popen([sys.executable, *TRAIN], cwd=folder, env=env, stdout=f,
                                   stderr=subprocess.STDOUT)
    return process, log


def _start_cluster(tmp_path, backend, run="run"):
    """`yt8m train` in two processes, each in its own workspace (a fresh one for the first
    run, the same ones after); returns the processes and the workspaces."""
    workers = ",".join(f"localhost:{p}" for p in _free_ports(2))
    folders, processes = [], []
    for i in range(2):
        folder = tmp_path / f"process_{i}"
        folders.append(folder)
        env = _environment(backend, YT8M_WORKERS=workers, YT8M_PROCESS_ID=str(i))
        processes.append(_start_train(folder, env, tmp_path / f"{run}_{i}.log"))
    return processes, folders


def _written(folder):
    """Every file under a workspace's models/ but the spec."""
    return sorted(str(p.relative_to(folder)) for p in (folder / "models").rglob("*")
                  if p.is_file() and p.name != "x.yaml")


def _oof_logits(folder):
    return np.load(folder / "models" / "x" / "fold_0" / "oof_logits.npy")


_SINGLE_TRAIN = {}


@pytest.fixture
def single_train(tmp_path_factory, tiny_features, backend):
    """The reference: the same spec trained in one process, on the same global batches."""
    if backend == "jax":
        pytest.importorskip("jax")
    if backend not in _SINGLE_TRAIN:
        folder = _spec_workspace(tmp_path_factory.mktemp(f"train_{backend}"), tiny_features)
        _run([_start_train(folder, _environment(backend), folder / "train.log")], timeout=300)
        _SINGLE_TRAIN[backend] = folder
    return _SINGLE_TRAIN[backend]


def _check_cluster_outputs(chief, other, single):
    """One fold trained and recorded by the chief alone, equal to the single process's."""
    assert (chief / "models/x/fold_0/fold.json").is_file()
    assert _written(other) == [], "the non-chief process wrote files"
    record = json.loads((chief / "models/x/fold_0/fold.json").read_text())
    assert record["distribution"]["processes"] == 2
    assert record["distribution"]["replicas"] == 2
    reference = json.loads((single / "models/x/fold_0/fold.json").read_text())
    assert "processes" not in reference["distribution"]
    assert record["epochs"] == reference["epochs"] == 3
    np.testing.assert_allclose(_oof_logits(chief), _oof_logits(single), rtol=1e-4, atol=1e-4)
    assert np.abs(_oof_logits(single)).max() > 1.0  # trained: logits well away from zero
    for key in ("gap", "hit_at_one", "perr"):
        assert record["metrics"][key] == pytest.approx(reference["metrics"][key], abs=1e-6)
    # every epoch's loss and held-out scores (the early-stopping input) match too
    np.testing.assert_allclose(_epoch_logs(chief), _epoch_logs(single), rtol=1e-5)


def _epoch_logs(folder):
    lines = (folder / "models/x/fold_0/log.csv").read_text().splitlines()[1:]
    return np.array([[float(v) for v in line.split(",")] for line in lines])


# two processes start their backend and train, and one process as the reference
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_yt8m_train_in_two_processes_trains_one_fold(tmp_path, tiny_features, backend,
                                                     single_train):
    for i in range(2):
        _spec_workspace(tmp_path / f"process_{i}", tiny_features)
    processes, (chief, other) = _start_cluster(tmp_path, backend)
    _run(processes, timeout=300)
    _check_cluster_outputs(chief, other, single_train)
    assert "process 1 of 2 trained fold(s) [0]" in (tmp_path / "run_1.log").read_text()


def _kill_after_first_epoch(processes, chief):
    """Kill every process of the cluster once the chief has committed an epoch of fold 0 (and
    before the fold is done); returns the epochs committed then."""
    import time

    state = chief / "models/x/fold_0/state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and all(p.poll() is None for p, _ in processes):
        if state.is_file():
            try:
                committed = len(json.loads(state.read_text())["history"])
            except (ValueError, KeyError):  # being replaced: read it again
                continue
            if committed:
                for process, _ in processes:
                    process.kill()
                for process, _ in processes:
                    process.wait()
                return committed
        time.sleep(0.02)
    _run(processes)  # failed or finished first: show why
    raise AssertionError("the cluster did not commit an epoch before finishing")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow"])  # the CLI's default backend
def test_a_killed_cluster_resumes_to_the_uninterrupted_result(tmp_path, tiny_features, backend,
                                                              single_train):
    """The chief's commit restores in both processes, which do not share their files, to the
    result of one uninterrupted process."""
    for i in range(2):
        _spec_workspace(tmp_path / f"process_{i}", tiny_features)
    processes, (chief, other) = _start_cluster(tmp_path, backend)
    committed = _kill_after_first_epoch(processes, chief)
    assert committed < 3 and not (chief / "models/x/fold_0/fold.json").exists()
    processes, _ = _start_cluster(tmp_path, backend, run="resumed")
    _run(processes, timeout=300)
    assert f"resuming after epoch {committed}" in (chief / "models/x/train.log").read_text()
    _check_cluster_outputs(chief, other, single_train)


if __name__ == "__main__":
    _train(sys.argv[1], sys.argv[2])
