"""Data-parallel training: over the devices of one machine, or over several processes (hosts).

One process, several devices: `data_parallel_scope(True)` is Keras' `DataParallel`
distribution on JAX and `tf.distribute.MirroredStrategy` on TensorFlow.

Several processes (one per host, or several on one host): every process runs the same program
with the cluster described in its environment, and they train ONE model together:

    YT8M_WORKERS=host0:port0,host1:port1,...   every process's address, in process order
    YT8M_PROCESS_ID=i                         this process's place in that list (0 is the chief)

On JAX the first address is the coordinator of `jax.distributed.initialize` (the others are only
counted); on TensorFlow the list becomes the `TF_CONFIG` of a `MultiWorkerMirroredStrategy`,
whose workers listen on their addresses. A `TF_CONFIG` already in the environment (the form
cluster schedulers write) is used as it is when `YT8M_WORKERS` is not set, on either backend.

Inside `data_parallel_scope(True)` with a cluster configured, the processes are joined (once per
process: neither engine can leave a cluster and join another) and each global batch is split
over every device of every process. The gradient is the mean over the whole global batch, so the
variables stay identical in every process after every step, and equal those of one process
training on the same global batches (tests/test_multiprocess_training.py checks all three).

What each process feeds differs by engine; `shard_batch(global_batch)` gives it:
- JAX: only its own slice of every global batch (rows `local_batch_rows(size)`): Keras makes the
  global array from every process's part (`jax.make_array_from_process_local_data`), and its
  automatic sharding of inputs is off, since it covers `tf.data` datasets only;
- TensorFlow: the whole global batch, the same in every process: the strategy's automatic
  sharding of the dataset Keras makes of the input gives each worker its part of each batch (a
  process feeding only its slice would train on half of it, a quarter of the rows).
The batch size is the global one in both, a multiple of the number of devices over all processes.

Only the chief (`is_chief()`) writes outputs; every process must still take part in every
training, evaluation and prediction step, since each holds a part of every batch.
"""

import contextlib
import json
import os
from dataclasses import dataclass

import keras
import numpy as np

from ..errors import Yt8mError

WORKERS_ENV = "YT8M_WORKERS"
PROCESS_ID_ENV = "YT8M_PROCESS_ID"


@dataclass(frozen=True)
class Cluster:
    """The processes of a multi-process run: every worker's "host:port", and this one's index."""

    workers: tuple
    process_id: int

    @property
    def num_processes(self):
        return len(self.workers)

    @property
    def coordinator(self):
        return self.workers[0]

    def tf_config(self):
        """The `TF_CONFIG` of this process for `tf.distribute.MultiWorkerMirroredStrategy`."""
        return {"cluster": {"worker": list(self.workers)},
                "task": {"type": "worker", "index": self.process_id}}


def cluster_from_environment(environ=None):
    """The `Cluster` that `YT8M_WORKERS`/`YT8M_PROCESS_ID` (or else `TF_CONFIG`) describe, or
    None for a single-process run (nothing set, or a cluster of one)."""
    environ = os.environ if environ is None else environ
    if environ.get(WORKERS_ENV):
        workers = tuple(w.strip() for w in environ[WORKERS_ENV].split(",") if w.strip())
        if PROCESS_ID_ENV not in environ:
            raise Yt8mError(f"{WORKERS_ENV} is set but {PROCESS_ID_ENV} is not: every process "
                            f"needs its index in the worker list")
        try:
            process_id = int(environ[PROCESS_ID_ENV])
        except ValueError:
            raise Yt8mError(f"{PROCESS_ID_ENV}={environ[PROCESS_ID_ENV]!r} is not an "
                            f"integer") from None
    elif environ.get("TF_CONFIG"):
        try:
            config = json.loads(environ["TF_CONFIG"])
            cluster, task = config["cluster"], config["task"]
            # a "chief" task, when there is one, is process 0; the workers follow
            workers = tuple(cluster.get("chief", [])) + tuple(cluster.get("worker", []))
            process_id = int(task["index"]) + (len(cluster.get("chief", []))
                                               if task["type"] == "worker" else 0)
        except (ValueError, KeyError, TypeError) as e:
            raise Yt8mError(f"TF_CONFIG is not a cluster and task description: {e}") from None
    else:
        return None
    if not 0 <= process_id < len(workers):
        raise Yt8mError(f"process id {process_id} is not in 0..{len(workers) - 1}, the "
                        f"{len(workers)} workers of the cluster")
    if len(workers) == 1:
        return None
    return Cluster(workers, process_id)


# the cluster this process joined (joining is once per process) and the TensorFlow strategy
_joined = {"cluster": None, "tf_strategy": None}


def join_cluster(cluster):
    """Join this process to `cluster` (idempotent); must come before the backend runs anything:
    JAX's devices become the global ones, and TensorFlow's collectives are set up."""
    if _joined["cluster"] is not None:
        if _joined["cluster"] != cluster:
            raise Yt8mError(f"this process already joined the cluster {_joined['cluster']}; "
                            f"it cannot join another")
        return
    backend = keras.backend.backend()
    if backend == "jax":
        # the coordinator address, the number of processes and this one's index; Keras also
        # agrees on one random seed over the processes when none is set
        keras.distribution.initialize(cluster.coordinator, cluster.num_processes,
                                      cluster.process_id)
    elif backend == "tensorflow":
        import tensorflow as tf

        if os.environ.get(WORKERS_ENV) or not os.environ.get("TF_CONFIG"):
            os.environ["TF_CONFIG"] = json.dumps(cluster.tf_config())
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        _joined["tf_strategy"] = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver)
        _patch_keras_multi_worker()
    else:
        raise Yt8mError(f"multi-process training supports the jax and tensorflow backends, "
                        f"not {backend}")
    _joined["cluster"] = cluster


def _patch_keras_multi_worker():
    """Two fixes to Keras' (3.15) TensorFlow trainer, which does not run `fit` under a
    `MultiWorkerMirroredStrategy` of several workers as it stands:

    - to build a model from the first batch it takes the MEAN of the batch over the replicas by
      `strategy.reduce`, which this strategy does for a single tensor only, not an (inputs,
      labels) structure; the build needs only shapes and dtypes, so the first local replica's
      part of each tensor serves;
    - it averages each step's logs (scalars) over the replicas along axis 0, which scalars do not
      have; the mean over the replicas is taken element by element instead.
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "multi_worker", False):
        return
    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = trainer.reduce_per_replica

    def multi_worker(strategy):
        return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or not multi_worker(strategy):
            return original_build(self, iterator, data_batch)
        for _, _, it in iterator:
            data_batch = tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if not multi_worker(strategy) or reduction not in ("auto", "mean"):
            return original_reduce(values, strategy, reduction)
        return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)

    reduce_per_replica.multi_worker = True
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica


def current_cluster():
    """The cluster this process joined, or the one its environment describes, or None."""
    return _joined["cluster"] or cluster_from_environment()


def is_chief():
    """True in the one process that writes outputs: process 0 of the cluster, or the only one."""
    cluster = current_cluster()
    return cluster is None or cluster.process_id == 0


def local_batch_rows(global_batch_size, cluster=None):
    """The rows of each global batch of `global_batch_size` rows that this process feeds to the
    engine: on JAX its own slice (Keras assembles the global batch from every process's slice),
    on TensorFlow all of them (the strategy gives each worker its part of the global batch)."""
    cluster = current_cluster() if cluster is None else cluster
    if cluster is None or keras.backend.backend() != "jax":
        return slice(0, global_batch_size)
    if global_batch_size % cluster.num_processes:
        raise Yt8mError(f"the batch size {global_batch_size} is not a multiple of the "
                        f"{cluster.num_processes} processes")
    size = global_batch_size // cluster.num_processes
    return slice(cluster.process_id * size, (cluster.process_id + 1) * size)


def shard_batch(batch, cluster=None):
    """What this process feeds of a global batch (`local_batch_rows`): arrays, or nested
    dicts/tuples/lists of arrays, whose first axis is the batch."""
    if isinstance(batch, dict):
        return {key: shard_batch(value, cluster) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(shard_batch(value, cluster) for value in batch)
    if batch is None:
        return None
    return batch[local_batch_rows(len(batch), cluster)]


@contextlib.contextmanager
def data_parallel_scope(enabled):
    """Data parallelism while inside, when `enabled`: over every local device, or, with a cluster
    in the environment (see the module), over every device of every process of the cluster.
    Keras' `DataParallel` distribution (JAX) or `tf.distribute.MirroredStrategy` /
    `MultiWorkerMirroredStrategy` (TensorFlow). Models are built, trained and used inside.
    Each batch is split across the devices, so the batch size must be a multiple of their number
    (training drops the short last batch, prediction pads it); in a cluster, each process feeds
    its own slice of each global batch (`shard_batch`)."""
    backend = keras.backend.backend()
    if not enabled:
        yield
        return
    if backend not in ("jax", "tensorflow"):
        raise Yt8mError(f"data parallel training supports the jax and tensorflow backends, "
                        f"not {backend}")
    cluster = current_cluster()
    if cluster is not None:
        join_cluster(cluster)
    if backend == "jax":
        previous = keras.distribution.distribution()
        # every input is this process's slice already (`shard_batch`): Keras does not shard it
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(auto_shard_dataset=False))
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
    else:
        import tensorflow as tf

        strategy = _joined["tf_strategy"] or tf.distribute.MirroredStrategy()
        with strategy.scope():
            yield


def distribution_record():
    """{"strategy", "replicas"} of the distribution the model is trained under here, and
    "processes" when they are more than one."""
    backend = keras.backend.backend()
    record = {"strategy": None, "replicas": 1}
    if backend == "jax":
        current = keras.distribution.distribution()
        if current is not None:
            record = {"strategy": type(current).__name__,
                      "replicas": int(np.prod(current.device_mesh.shape))}
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            strategy = tf.distribute.get_strategy()
            name = ("MultiWorkerMirroredStrategy"
                    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                    else type(strategy).__name__)
            record = {"strategy": name,
                      "replicas": int(strategy.num_replicas_in_sync)}
    if record["strategy"] is not None and _joined["cluster"] is not None:
        record["processes"] = _joined["cluster"].num_processes
    return record


def joined_cluster():
    """The cluster this process has joined (`join_cluster`), or None: then nothing is shared."""
    return _joined["cluster"]


def local_numpy(value):
    """A variable's (or array's) value as a numpy array, read from this process's own copy:
    no step that the other processes of a cluster would have to take part in (the variables of
    a data-parallel model are replicated: every process holds the whole value)."""
    if keras.backend.backend() == "jax":
        import jax

        if isinstance(value, keras.Variable):
            value = value.value
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            if not value.is_fully_replicated:
                raise Yt8mError(f"a value of shape {value.shape} is split over the processes; "
                                f"no process holds all of it")
            value = value.addressable_data(0)
        return np.asarray(value)
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _to_words(values):
    """The bytes of `values` (arrays), each padded to whole 32-bit words, as one int32 array."""
    parts = []
    for value in values:
        raw = np.ascontiguousarray(value).tobytes()
        parts.append(np.frombuffer(raw + b"\0" * (-len(raw) % 4), np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def _from_words(words, like):
    """The arrays of `_to_words`, read back in the shapes and dtypes of `like`."""
    raw, values, at = words.astype(np.int32).tobytes(), [], 0
    for value in like:
        size = value.nbytes
        values.append(np.frombuffer(raw[at:at + size], value.dtype).reshape(value.shape).copy())
        at += size + (-size % 4)
    return values


def _sum_over_processes(words, own):
    """The sum over the processes of the cluster of an int32 vector, to which only the process
    where `own` is true contributes: that process's vector, bit for bit, in every process."""
    backend = keras.backend.backend()
    if backend == "jax":
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.broadcast_one_to_all(words, is_source=own))
    import tensorflow as tf

    strategy = _joined["tf_strategy"]
    zeros = np.zeros_like(words)

    def part(context):  # one replica of the whole cluster contributes; the others add zeros
        return tf.constant(words if own and context.replica_id_in_sync_group == 0 else zeros)

    values = strategy.experimental_distribute_values_from_function(part)
    return strategy.reduce("SUM", values, axis=None).numpy()


def broadcast_from_chief(values):
    """The chief's `values` (a list of arrays of the same shapes and dtypes in every process),
    bit for bit, in every process of the joined cluster; `values` themselves outside a cluster.
    A collective: every process of the cluster calls it at the same point of the program."""
    values = [np.asarray(value) for value in values]
    cluster = _joined["cluster"]
    if cluster is None or not values:
        return values
    words = _sum_over_processes(_to_words(values), cluster.process_id == 0)
    return _from_words(words, values)


def share_from_chief(value):
    """The chief's `value` (anything JSON can carry) in every process of the joined cluster:
    e.g. a decision the chief takes from files that only it may read. A collective, like
    `broadcast_from_chief`."""
    if _joined["cluster"] is None:
        return value
    text = np.frombuffer(json.dumps(value).encode(), np.uint8)
    (size,) = broadcast_from_chief([np.array([len(text)], np.int64)])
    if len(text) != int(size[0]):  # the others' own value is replaced by the chief's
        text = np.zeros(int(size[0]), np.uint8)
    (text,) = broadcast_from_chief([text])
    return json.loads(text.tobytes().decode())


_local = {"executor": None}


def outside_distribution(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` where no distribution is in force, with the caller's dtype policy:
    in this process's own worker thread (Keras' distribution and TensorFlow's strategy scope are
    per thread), for what one process does alone, such as the chief's evaluation and
    predictions. Models built there belong there: use them only through this function."""
    import concurrent.futures

    if _local["executor"] is None:
        _local["executor"] = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="yt8m-local")
    policy = keras.mixed_precision.global_policy()

    def task():
        keras.mixed_precision.set_global_policy(policy)
        return fn(*args, **kwargs)

    return _local["executor"].submit(task).result()


class LocalModel:
    """This process's own copy of a model that trains under the distribution, for the work one
    process does alone (the chief's evaluation and predictions in a cluster: a prediction under
    the distribution would need every process, and its results span them). Built on first use
    by `build()` (a model with the same weights, in the same order) in the thread of
    `outside_distribution`."""

    def __init__(self, build):
        self._build, self._model = build, None

    def run(self, fn, weights):
        """`fn(copy)` in the thread of `outside_distribution`, the copy holding `weights`: a
        model's current weights (a model trained under the distribution), a weights file, or
        None: those it holds already."""
        if isinstance(weights, keras.Model):
            weights = [local_numpy(w) for w in weights.weights]

        def task():
            if self._model is None:
                self._model = self._build()
            if isinstance(weights, list):
                for variable, value in zip(self._model.weights, weights, strict=True):
                    variable.assign(value)
            elif weights is not None:
                self._model.load_weights(str(weights))
            return fn(self._model)

        return outside_distribution(task)
