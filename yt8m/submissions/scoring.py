"""Scoring written submissions against the answer keys that the sample competitions write."""

from pathlib import Path

from yt8m.errors import Yt8mError
from yt8m.predictions import source_metrics
from yt8m.submissions import kinetics, segments, video_level
from yt8m.submissions.writer import first_line, scored_segment_classes, test_ids

DEFAULT_CLASSES = 3862  # a video-level answer key's classes when no cache tells: the 2018 count
VIDEO_KEY = "solution.csv"  # VideoId,Labels (and a Kinetics dataset's youtube_id,label)
SEGMENT_KEY = "segment_solution.csv"  # Segment,Class,Rating


def is_segment_submission(path):
    """Whether `path` is a 2019 Class,Segments submission (by its header)."""
    return first_line(path) == segments.HEADER


def answer_key(input_dir="input", segment=False):
    """The sample competition's answer key in `input_dir` (the segment one with `segment`), or
    None when there is none, as with a real competition."""
    path = Path(input_dir) / (SEGMENT_KEY if segment else VIDEO_KEY)
    return path if path.is_file() else None


def score_videos(path, solution, features="features", level=None, num_classes=None):
    """GAP@20, Hit@1, PERR and mAP of a video-level submission (`video_level.score`)
    over `num_classes`, by default the test cache's, else `DEFAULT_CLASSES`."""
    num_classes = num_classes or test_ids(features, level)[1] or DEFAULT_CLASSES
    return video_level.score(path, solution, num_classes)


def score_segments(path, solution, input_dir="input"):
    """MAP@K of a segment submission over the scored classes in `input_dir`
    (`yt8m.submissions.segments.score`); an error when they are missing."""
    classes = scored_segment_classes(input_dir)
    if classes is None:
        raise Yt8mError(f"{input_dir}/segment_label_ids.csv is missing: the scored classes of "
                        f"a segment submission")
    return segments.score(path, solution, classes)


def results_answer_key(source, info):
    """The answer key of a raw-video source's dataset (from the results' provenance `info`, else
    the source's metrics.json), or None when the dataset has none."""
    dataset = info.get("dataset") or source_metrics(source).get("dataset")
    solution = Path(dataset or "") / VIDEO_KEY
    return solution if dataset and solution.is_file() else None


def score_results(path, solution):
    """Top-1 and top-5 accuracy of a Kinetics results file (`yt8m.submissions.kinetics.score`)."""
    return kinetics.score(kinetics.read_results(path), solution)
