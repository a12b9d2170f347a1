"""Training and its assembly in memory bounded by a batch or a chunk: the same stage at two sizes
(`yt8m.bench.scale`, each run in a fresh process), peak anonymous memory compared."""

import pytest

from yt8m.bench import scale as bench_scale

# a stage that holds (videos x classes) float32 grows by this many MB per 1,000 videos
DENSE_MB_PER_1000 = 3862 * 4 * 1000 / 2**20


@pytest.mark.slow  # about two minutes on two cores; `make test-slow`, run by CI
def test_training_memory_does_not_grow_with_the_videos(tmp_path):
    # TensorFlow's start-up and thread arenas make one run's peak vary by about +-20 MB, so the
    # sizes are 10x apart: a dense copy at 20,000 videos (265 MB) stands well clear of that
    peaks = {}
    for n in (2_000, 20_000):
        bench_scale.prepare(tmp_path / str(n), n)
        peaks[n] = bench_scale.measure("train", tmp_path / str(n))["peak_bytes"] / 2**20
    growth = peaks[20_000] - peaks[2_000]
    # 18,000 more videos: one dense float32 (videos x classes) copy alone would add 265 MB
    assert growth < 0.25 * 18 * DENSE_MB_PER_1000, peaks
