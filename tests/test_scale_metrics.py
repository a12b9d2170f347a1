"""Scoring runs in memory bounded by a chunk and the kept top-k triplets, never by videos x classes.

Each stage runs in a fresh process (`peak_growth`) while a thread samples the process's anonymous
resident memory (RssAnon: what it allocated, not the page cache of memory-mapped predictions).
glibc is told to map every block over 4 MiB on its own, so freed NumPy arrays go back to the
system and a later allocation cannot hide in them. A stage that made a dense (rows x 3862)
float32 copy again needs 463 MB more for 30k more rows; the allowances below are a small
fraction of that.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 3862
MB = 1e6

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(),
                                reason="reads RssAnon from /proc")

_SAMPLER = """
import threading

def _anon():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))

_base = _peak = _anon()
_done = threading.Event()

def _sample():
    global _peak
    while not _done.wait(0.002):
        _peak = max(_peak, _anon())

_thread = threading.Thread(target=_sample, daemon=True)
_thread.start()
"""


def peak_growth(setup, stage, *args):
    """Peak anonymous memory (bytes) that the Python code `stage` adds, run after `setup` in a
    fresh interpreter with `args` as sys.argv[1:]."""
    script = f"{setup}\n{_SAMPLER}\n{stage}\n_done.set()\n_thread.join()\n" \
             f"print(max(_peak, _anon()) - _base)\n"
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(4 << 20))
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return int(out.stdout.split()[-1])


def write_logits(path, videos, classes=CLASSES, seed=0):
    """A (videos, classes) float16 .npy of logits, written a block at a time (a few random
    blocks repeated: the stages' memory does not depend on the values)."""
    block = np.random.default_rng(seed).normal(-4.0, 2.0, (1000, classes)).astype(np.float16)
    logits = np.lib.format.open_memmap(path, "w+", np.float16, (videos, classes))
    for start in range(0, videos, len(block)):
        logits[start : start + len(block)] = block[: videos - start]
    logits.flush()
    return path


EVALUATE = """
import sys
import numpy as np
from yt8m.metrics import Evaluator
logits = np.load(sys.argv[1], mmap_mode="r")
labels = [[i % 3862, (7 * i) % 3862] for i in range(len(logits))]
evaluator = Evaluator(3862, from_logits=True)
"""


def test_evaluate_memory_does_not_grow_with_videos_times_classes(tmp_path):
    growth = {}
    for videos in (10_000, 40_000):
        path = write_logits(tmp_path / f"logits{videos}.npy", videos)
        growth[videos] = peak_growth(EVALUATE, "evaluator.update(logits, labels)\n"
                                               "evaluator.result()", path)
        path.unlink()
    # the kept triplets grow by 30k x 20 x 7 bytes (4.2 MB); result() needs about twice that
    assert growth[40_000] - growth[10_000] < 40 * MB, growth


RESULT = """
import numpy as np
from yt8m.metrics import Evaluator
rows, k = 200_000, 20
rng = np.random.default_rng(0)
evaluator = Evaluator(3862)
for start in range(0, rows, 10_000):  # each video's sorted top 20 and one true label
    scores = -np.sort(-rng.random((10_000, k), dtype=np.float32), axis=1)
    classes = rng.integers(0, 3862, (10_000, k))
    truth = rng.integers(0, 3862, 10_000)
    classes[::2, 0] = truth[::2]
    evaluator._add(scores, classes, np.arange(10_001), truth)
kept = evaluator.kept_bytes
"""


def test_result_peak_is_a_small_multiple_of_the_kept_triplets():
    growth = peak_growth(RESULT, "evaluator.result()")
    # 4M triplets: 28 MB kept; the peak is about 3x that: the kept parts joined (28 MB) and one
    # uint64 per triplet to sort (32 MB), with the sort's work space (86 MB measured; full-length
    # float64 and int64 work arrays took about 20x)
    assert growth < 2.5 * 28 * MB + 25 * MB, growth / MB

