"""Epoch checkpoints that let a killed training run resume to the result of an uninterrupted one.

`EpochCheckpoint` commits a run's state at the end of every epoch, in a folder:

    state.json                 the commit record, replaced atomically and written last: the run's
                               identity, every finished epoch's logs, the kept backups
    backup/epoch_<N>.npz       every model and optimizer variable after N epochs: the last two,
                               and the one after the best epoch so far by `monitor` (its
                               weights are the best weights: nothing more is written for them)
    log.csv                    the finished epochs' logs, rewritten from state.json

Every file is written to a temporary name and renamed, referenced by `state.json` only once it
is complete, and deleted only once no kept state refers to it. A kill at any moment therefore
leaves either the previous commit or the new one, and a resumed run starts from exactly the
variables, the epoch and the best-so-far an uninterrupted run had there.

A model trained by a cluster of processes (`distribution`) is committed by the chief alone:
the other processes' checkpoints (`write=False`) keep the same history, and so take the same
early-stopping decisions, but write nothing. `restore` gives every process the chief's state:
its committed history and its variables, sent to the others (`broadcast_from_chief`), so a
killed cluster resumes from the chief's last commit in every process, whether or not the
others can see the chief's files. A process of the cluster that fails leaves the others
waiting in their next collective (they stop with an error, or are stopped); running the same
command again in every process resumes from the chief's last commit.

Keras' `BackupAndRestore` does not fit here: it overwrites its weights file in place (a kill
mid-write leaves a file that no rerun can open), leaves the dropout seed generators out of the
backup (a resumed run draws other dropout masks), and sets the epoch to resume from on the
model object, where it outlives the run.
"""

import json
import math
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np

from ..errors import Yt8mError
from ..fileio import atomic_path, write_json, write_text

STATE = "state.json"
KEPT_BACKUPS = 2


def _is_better(value, best):
    return value is not None and not math.isnan(value) and (best is None or value > best[1])


def best_epoch(history, monitor):
    """(epoch, value) of the first epoch with the highest `monitor` in `history` (None if no
    epoch has a number there): the epoch `ModelCheckpoint(save_best_only=True)` would keep."""
    best = None
    for row in history:
        value = row.get(monitor)
        if _is_better(value, best):
            best = (row["epoch"], value)
    return best


def _variables(model):
    optimizer = getattr(model, "optimizer", None)
    return list(model.variables) + (list(optimizer.variables) if optimizer is not None else [])


def _storable(value):
    value = np.asarray(value)
    return value.astype(np.float32) if value.dtype.kind == "V" or value.dtype.name == "bfloat16" \
        else value


class EpochCheckpoint(keras.callbacks.Callback):
    """A Keras callback committing each finished epoch (see the module docstring).

    Args:
        folder: where the files go (created).
        identity: a JSON-able value naming what is trained (e.g. config and data hashes); a
            state with another identity is discarded by `restore`.
        monitor: a logged value to keep the best epoch of (higher is better), or None.
        patience: stop when `monitor` has not improved for this many epochs (Keras'
            `EarlyStopping(mode="max")`, decided from the committed logs so that it survives a
            resume), or None.
        say: called with a line when `restore` falls back or starts over.
        write: False in the processes of a cluster other than the chief (see the module).

    Call `restore(model)` before `fit` and pass the epoch it returns as `initial_epoch`.
    """

    def __init__(self, folder, identity, monitor=None, patience=None, say=print, write=True):
        super().__init__()
        self.write = write
        self.folder = Path(folder)
        self.identity = identity
        self.monitor = monitor
        self.patience = patience
        self.say = say
        self.history = []
        self.backups = []

    # paths
    def _backup_path(self, epochs):
        return self.folder / "backup" / f"epoch_{epochs}.npz"

    def _best_path(self, epoch):
        return self._backup_path(epoch + 1)

    def best(self, epochs=None):
        """(epoch, value) of the best epoch among the first `epochs` (default: all) finished."""
        history = self.history if epochs is None else self.history[:epochs]
        return best_epoch(history, self.monitor) if self.monitor else None

    def best_weights(self, model):
        """The values of `model.weights` after the best epoch, from its backup (None without a
        monitor or a finished epoch). Raises OSError, ValueError, KeyError, EOFError or
        zipfile.BadZipFile when the backup is damaged."""
        best = self.best()
        if best is None:
            return None
        values = self._read_backup(model, best[0] + 1)
        at = {id(variable): i for i, variable in enumerate(_variables(model))}
        return [values[at[id(weight)]] for weight in model.weights]

    @property
    def epochs_done(self):
        return len(self.history)

    def finished(self, epochs):
        """Whether the run is over: `epochs` epochs done, or early stopping has decided."""
        return self.epochs_done >= epochs or self._stops_early()

    def _stops_early(self):
        best = self.best()
        return bool(self.patience and best and self.epochs_done - 1 - best[0] >= self.patience)

    # saving
    def _commit(self):
        write_json(self.folder / STATE, {"identity": self.identity, "history": self.history,
                                         "backups": self.backups})
        self._write_log()
        self._remove_unreferenced()

    def _write_log(self):
        keys = sorted({key for row in self.history for key in row} - {"epoch"})
        lines = [",".join(["epoch", *keys])]
        lines += [",".join([str(row["epoch"]), *(repr(row[k]) if k in row else "" for k in keys)])
                  for row in self.history]
        write_text(self.folder / "log.csv", "\n".join(lines) + "\n")

    def _remove_unreferenced(self):
        keep = {self._backup_path(n) for n in self.backups}
        keep |= {self._best_path(b[0]) for b in map(self.best, self.backups) if b}
        for path in (self.folder / "backup").glob("*"):
            if path not in keep:
                path.unlink(missing_ok=True)

    def _save_backup(self, epochs):
        from .distribution import local_numpy

        values = [_storable(local_numpy(v)) for v in _variables(self.model)]
        with atomic_path(self._backup_path(epochs), suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, *values)

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
        values = [logs.get("loss"), logs.get(self.monitor) if self.monitor else 0.0]
        if any(v is not None and not math.isfinite(v) for v in values):
            return  # a diverged epoch is never committed (the caller reports it)
        row = {"epoch": epoch} | logs
        if self.write:
            self._save_backup(epoch + 1)
        self.history.append(row)
        self.backups = [*self.backups, epoch + 1][-KEPT_BACKUPS:]
        if self.write:
            self._commit()
        if self._stops_early():
            self.model.stop_training = True

    # restoring
    def _read_state(self):
        path = self.folder / STATE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
            return state if state.get("identity") == self.identity else None
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            self.say(f"{path}: unreadable ({e}); training starts again")
            return None

    def _read_backup(self, model, epochs):
        """The values of `model`'s variables in the backup after `epochs` epochs."""
        variables = _variables(model)
        with np.load(self._backup_path(epochs)) as stored:
            values = [stored[f"arr_{i}"] for i in range(len(stored.files))]
        if len(values) != len(variables) or any(
                tuple(v.shape) != tuple(value.shape) for v, value in zip(variables, values)):
            raise ValueError("its variables do not match the model")
        return [value.astype(variable.dtype) if hasattr(variable, "dtype") else value
                for variable, value in zip(variables, values)]

    def _best_is_readable(self, model, epochs):
        best = self.best(epochs)
        if best is not None and best[0] + 1 != epochs:
            self._read_backup(model, best[0] + 1)

    def restore(self, model):
        """Load the newest readable backup into `model` (and its optimizer, which must be built);
        returns the number of epochs it holds: 0 for a fresh start, which clears the folder.
        In a cluster, every process must call it: each then holds the chief's state."""
        from .distribution import joined_cluster

        self.set_model(model)
        self.history, self.backups = [], []
        if joined_cluster() is None:
            epochs, values = self._restore(model)
        else:  # the chief reads its backup, and every process assigns it (a collective on JAX)
            epochs, values = self._restore(model) if self.write else (0, None)
            epochs = self._take_chiefs(model, values)
            values = None
        if values is not None:
            for variable, value in zip(_variables(model), values, strict=True):
                variable.assign(value)
        return epochs

    def _take_chiefs(self, model, values):
        """The chief's restored history and variables (its backup's `values`, or else its
        current ones), in every process of the cluster."""
        from .distribution import broadcast_from_chief, local_numpy, share_from_chief

        state = share_from_chief({"history": self.history, "backups": self.backups})
        self.history, self.backups = state["history"], state["backups"]
        variables = _variables(model)
        values = broadcast_from_chief(values or [local_numpy(v) for v in variables])
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        return len(self.history)

    def _restore(self, model):
        """(epochs, the variables' values) of the newest readable backup; (0, None) for a fresh
        start, which clears the folder."""
        state = self._read_state()
        if state:
            history, backups = state["history"], state["backups"]
            for epochs in reversed(backups):
                self.history = history[:epochs]
                try:
                    values = self._read_backup(model, epochs)
                    self._best_is_readable(model, epochs)
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                    self.say(f"{self._backup_path(epochs).parent.parent}: the checkpoint after "
                             f"epoch {epochs} is damaged ({type(e).__name__}: {e}); trying an "
                             f"earlier one")
                    continue
                self.backups = [epochs]
                if epochs != backups[-1]:
                    self.say(f"{self.folder}: resuming from the checkpoint after epoch {epochs}")
                self._commit()
                return epochs, values
            self.say(f"{self.folder}: no readable checkpoint; training starts again")
            self.history = []
        self.clear()
        return 0, None

    def clear(self):
        """Forget every committed epoch (state, backups, best weights and log)."""
        self.history, self.backups = [], []
        if not self.write:
            return
        self.clear_backups()
        (self.folder / "log.csv").unlink(missing_ok=True)
        self.history, self.backups = [], []

    def clear_backups(self):
        """Delete the state, backups and best weights, keeping log.csv: once the run's results
        are saved elsewhere."""
        if not self.write:
            return
        (self.folder / STATE).unlink(missing_ok=True)
        for sub in ("backup", "best"):  # best/: the best weights files of earlier versions
            shutil.rmtree(self.folder / sub, ignore_errors=True)


def require_optimizer_built(model):
    """Build `model`'s optimizer variables (a restore assigns into them)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise Yt8mError("compile the model before restoring a checkpoint into it")
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
