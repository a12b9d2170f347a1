"""`submission write`, `check` and `score` run in memory bounded by a chunk of rows.

Each stage runs at two sizes in a fresh process and the peaks of its anonymous memory are
compared (see `tests/test_scale_metrics.py`). What may grow with the videos is a set of ids, the
answer key and the Evaluator's top-20 triplets: a few hundred bytes a video. Holding every row's
text costs about 300 bytes a video more, its parsed pairs about 2 KB, and a dense float32 copy of
the logits 15 KB.
"""

import numpy as np

from tests.test_scale_metrics import MB, peak_growth, write_logits

# 20 distinct labels with decreasing confidences: a valid row for any video id
PAIRS = " ".join(f"{3 * j + 1} {0.9 - 0.04 * j:g}" for j in range(20))


def video_ids(videos):
    return np.array([f"vid{i:08d}" for i in range(videos)])


WRITE = """
import sys
import numpy as np
from yt8m.submissions import writer as build
root = sys.argv[1]
test_ids = np.load(f"{root}/src/test_ids.npy")[::-1].copy()  # the cache's order is not the rows'
build.test_ids = lambda *args, **kwargs: (test_ids, 3862)
"""


def test_write_memory_does_not_grow_with_videos_times_classes(tmp_path):
    growth = {}
    for videos in (5_000, 20_000):
        root = tmp_path / str(videos)
        (root / "src").mkdir(parents=True)
        write_logits(root / "src" / "test_logits.npy", videos)
        np.save(root / "src" / "test_ids.npy", video_ids(videos))
        # writes the CSV, then checks it
        growth[videos] = peak_growth(WRITE, "build.write_submission(f'{root}/src', "
                                            "f'{root}/out', features=f'{root}/none', "
                                            "input_dir=f'{root}/none')", root)
        assert len((root / "out" / "src.csv").read_text().splitlines()) == videos + 1
    # 15k more videos: a float32 copy of their logits is 232 MB, a float16 one 116 MB
    assert growth[20_000] - growth[5_000] < 40 * MB, growth


def write_csvs(root, videos):
    """A valid submission and an answer key for `videos` videos, written as text."""
    root.mkdir()
    ids = video_ids(videos)
    np.save(root / "ids.npy", ids)
    rows = "".join(f"{video},{PAIRS}\n" for video in ids)
    (root / "sub.csv").write_text("VideoId,LabelConfidencePairs\n" + rows)
    key = "".join(f"{video},{i % 3862} {(7 * i) % 3862}\n" for i, video in enumerate(ids))
    (root / "solution.csv").write_text("VideoId,Labels\n" + key)


CHECK = """
import sys
import numpy as np
from yt8m.submissions import video_level as video
root = sys.argv[1]
test_ids = np.load(f"{root}/ids.npy")
"""


def growth_of(tmp_path, stage):
    growth = {}
    for videos in (10_000, 40_000):
        write_csvs(tmp_path / str(videos), videos)
        growth[videos] = peak_growth(CHECK, stage, tmp_path / str(videos))
    return (growth[40_000] - growth[10_000]) / 30_000


def test_check_holds_ids_not_rows(tmp_path):
    per_video = growth_of(tmp_path, "report = video.check(f'{root}/sub.csv', test_ids, "
                                    "range(3862))\nassert report.ok, report.format()")
    # measured: 120 bytes a video (one dict: id -> line); holding every line measured 420
    assert per_video < 250, per_video


def test_score_holds_the_key_and_triplets_not_rows(tmp_path):
    per_video = growth_of(tmp_path, "video.score(f'{root}/sub.csv', f'{root}/solution.csv', "
                                    "3862)")
    # measured: 770 bytes a video, the answer key and the sort of 20 float64 triplets (about 2.5
    # x 220 bytes); parsing the whole file first measured 2,740
    assert per_video < 1300, per_video
