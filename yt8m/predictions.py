"""Stored predictions: float16 logits aligned to the feature cache's rows, ids beside them.

A model or ensemble folder (`models/<id>/`, `ensembles/<id>/`) holds one pair of files per part:

    <part>_logits.npy   (videos, classes) float16 logits, memory-mapped on load
    <part>_ids.npy      (videos,) video ids, same order

`part` is `oof` (out-of-fold rows of the labeled folds) or `test`. `metrics.json` beside them
carries the source's scores (`{"oof": {"gap": ...}, "config_hash": ...}`).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import Yt8mError
from .fileio import atomic_path


@dataclass
class Predictions:
    ids: np.ndarray
    logits: np.ndarray
    path: Path

    def __len__(self):
        return len(self.ids)

    def aligned_to(self, ids):
        """Logits reordered to `ids`; an error names missing and unexpected ids."""
        ids = np.asarray(ids)
        if len(ids) == len(self.ids) and np.array_equal(ids, self.ids):
            return self.logits
        position = {video: i for i, video in enumerate(self.ids.tolist())}
        missing = [video for video in ids.tolist() if video not in position]
        extra = sorted(set(position) - set(ids.tolist()))
        if missing or extra:
            raise Yt8mError(
                f"{self.path}: predictions do not cover the expected videos: {len(missing)} "
                f"missing (e.g. {', '.join(missing[:3]) or '-'}), {len(extra)} unexpected "
                f"(e.g. {', '.join(extra[:3]) or '-'}); rebuild them against the current features"
            )
        return self.logits[np.array([position[video] for video in ids.tolist()])]


def paths(directory, part):
    directory = Path(directory)
    return directory / f"{part}_logits.npy", directory / f"{part}_ids.npy"


def save(directory, part, ids, logits, dtype=np.float16):
    """Write one part as float16 logits plus ids (each file atomically, ids last).

    `dtype=np.float32` keeps full precision for intermediate parts that are scored later.
    """
    ids = np.asarray(ids).astype(str)
    logits = np.asarray(logits)
    if logits.ndim != 2 or len(logits) != len(ids):
        raise Yt8mError(f"{len(ids)} ids for logits of shape {logits.shape}")
    if len(set(ids.tolist())) != len(ids):
        raise Yt8mError(f"{part} predictions repeat video ids")
    logits_path, ids_path = paths(directory, part)
    for path, array in ((logits_path, logits.astype(dtype)), (ids_path, ids)):
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, array)


def load(directory, part):
    """Read one part (logits memory-mapped); errors say what is missing or inconsistent."""
    logits_path, ids_path = paths(directory, part)
    for path in (logits_path, ids_path):
        if not path.is_file():
            raise Yt8mError(f"{path}: no {part} predictions here; train or blend this source first")
    ids = _read(ids_path, directory)
    logits = _read(logits_path, directory, mmap_mode="r")
    if logits.ndim != 2 or len(logits) != len(ids):
        raise Yt8mError(
            f"{logits_path}: shape {logits.shape} does not match the {len(ids)} ids in {ids_path}"
        )
    return Predictions(ids=ids, logits=logits, path=logits_path)


def _read(path, directory, **kwargs):
    """np.load, with a damaged or truncated file (numpy's errors name none) named."""
    try:
        return np.load(path, **kwargs)
    except (ValueError, EOFError, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:  # permissions and the like
            raise
        raise Yt8mError(f"{path}: truncated or damaged ({e}); retrain or re-blend {directory} "
                        f"to write it again") from None


def non_finite_rows(logits, chunk_rows=4096):
    """How many rows of `logits` hold a NaN or an infinity, read `chunk_rows` rows at a time (a
    memory-mapped array is never loaded whole)."""
    return sum(int((~np.isfinite(logits[start:start + chunk_rows])).any(axis=1).sum())
               for start in range(0, len(logits), chunk_rows))


def source_metrics(directory):
    """The source's metrics.json as a dict ({} when there is none)."""
    path = Path(directory) / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise Yt8mError(f"{path}: not valid JSON ({e})") from None


def find_sources(roots=("ensembles", "models")):
    """(folder, metrics.json dict) of the folders under `roots` holding test predictions, best
    OOF GAP first (unscored last)."""
    found = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if all(p.is_file() for p in paths(folder, "test")):
                found.append((folder, source_metrics(folder)))

    def gap(item):
        return (item[1].get("oof") or {}).get("gap")

    found.sort(key=lambda item: (gap(item) is None, -(gap(item) or 0.0)))
    return found
