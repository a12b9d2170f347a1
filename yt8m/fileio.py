"""Atomic file and folder writes: readers see the old artifact or the new one, never half of one."""

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside `path` (ending in `suffix`, for writers that insist on
    one); rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; swap it in for `path` only if the block succeeds.

    An existing `path` is moved aside first and deleted after the swap, so an interruption leaves
    either the old folder, the new one, or (for an instant) none: never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(folder):
    """Delete `.name.*.tmp` leftovers of interrupted writes inside `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.glob(".*.tmp"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    for p in folder.glob(".*.old-*"):
        shutil.rmtree(p, ignore_errors=True)


def ensure_writable(folder):
    """Raise a clear error when `folder` cannot be created or written."""
    from yt8m.errors import Yt8mError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise Yt8mError(
            f"{folder}: cannot write here ({e.strerror}); check the folder's permissions and free "
            f"disk space, or point the command at another output folder"
        ) from None


LOCK_FILE = ".lock"


@contextlib.contextmanager
def output_lock(folder, what="this folder"):
    """Hold `<folder>/.lock` (an exclusive `flock`) while inside: one writer per output folder.

    A second writer fails at once with an error naming the process that holds the lock and
    what it is doing (`what`), instead of racing it. The kernel drops the lock when its holder
    dies, however it dies, so a killed run never leaves a stale lock behind; the file itself
    stays (it only records the holder).
    """
    import fcntl
    import time

    from yt8m.errors import Yt8mError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise Yt8mError(
                f"{folder}/ is being written by {holder}; wait for it to finish or stop it, "
                f"then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({what}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent_pid):
    """Process-pool initializer: end this worker when the build that started it dies.

    Without it a killed build (kill -9, the OOM killer) leaves its workers converting and writing
    into the cache. On Linux the kernel is asked to SIGKILL the worker when its parent dies
    (`PR_SET_PDEATHSIG`; it follows the thread that started the worker, and the executor starts
    workers from the thread that submits, the build's main thread). A parent that died before
    that request took effect shows as a changed parent pid. Elsewhere a worker ends only when it
    next reads its task queue and finds it closed.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)
