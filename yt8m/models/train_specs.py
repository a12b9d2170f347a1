"""Training several YouTube-8M specs in one command: one after another, side by side in worker
processes, or as one process of a cluster."""

from yt8m.errors import Yt8mError
from yt8m.models.distribution import cluster_from_environment, join_cluster
from yt8m.models.trainer import train, train_many


def join_training_cluster(distribute, jobs=1, clip_specs=()):
    """With `distribute` and a cluster in the environment (YT8M_WORKERS and YT8M_PROCESS_ID, or
    TF_CONFIG): join it before the backend computes anything; returns the cluster, or None.

    A cluster trains one YouTube-8M spec at a time, so it refuses `jobs` > 1 and raw-video specs.
    """
    if not distribute:
        return None
    cluster = cluster_from_environment()
    if cluster is None:
        return None
    if jobs > 1 or clip_specs:
        raise Yt8mError("a cluster of processes trains YouTube-8M specs one at a time: drop "
                        "--jobs and the raw-video specs, or unset YT8M_WORKERS")
    join_cluster(cluster)
    return cluster


def train_specs(specs, folds=None, features="features", models_dir=None, jobs=1,
                distribute=False, level="frame", progress=True):
    """Train YouTube-8M specs; yields (spec, metrics, folds trained now, error text) as each ends.

    With `jobs` > 1 and several specs they train in worker processes (`train_many`), where a
    spec's error is yielded and does not stop the others; otherwise one after another in this
    process (with `progress` bars), where an error is raised and the error text is always None.
    """
    if jobs > 1 and len(specs) > 1:
        yield from train_many(specs, jobs, folds, features, models_dir, distribute, level)
        return
    for spec in specs:
        metrics, trained = train(spec, folds, features, models_dir, progress=progress,
                                 distribute=distribute, level=level)
        yield spec, metrics, trained, None
