"""Segment-level Kaggle submissions (2019): `Class,Segments` CSVs.

One row per scored class: the class id, a comma, then up to 100,000 segment ids
(`<video id>:<start second>`, starts on the 5-second grid) separated by single spaces, most
confident first. As in the starter code, each segment first keeps only its 20 best classes among
the scored ones, then each class keeps its best segments.
"""

import re

import numpy as np

from ..errors import Yt8mError
from ..fileio import atomic_path
from ..metrics import top_candidates
from .files import Report, data_rows, open_text

HEADER = "Class,Segments"
MAX_SEGMENTS = 100_000
SEGMENT_SECONDS = 5
CLASSES_PER_SEGMENT = 20
_SEGMENT = re.compile(r"^([^:\s,]+):(\d+)$")


def rank_segments(segment_ids, scores, classes, per_segment=CLASSES_PER_SEGMENT,
                  max_segments=MAX_SEGMENTS):
    """{class: [segment ids, best first]} for the scored `classes`."""
    classes = np.asarray(sorted(set(int(c) for c in classes)), dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    if len(segment_ids) != len(scores):
        raise Yt8mError(f"{len(segment_ids)} segment ids for {len(scores)} rows of predictions")
    if classes.size and (classes.min() < 0 or classes.max() >= scores.shape[1]):
        raise Yt8mError(f"scored classes must be in [0, {scores.shape[1]})")
    k = min(per_segment, classes.size)
    ranked = {int(c): [] for c in classes}
    if k == 0 or len(scores) == 0:
        return ranked
    best, column = top_candidates(scores[:, classes], k)
    segment = np.repeat(np.arange(len(scores)), k)
    cls = classes[column[:, :k].ravel()]
    score = best[:, :k].ravel()
    order = np.lexsort((segment, -score, cls))
    cls, segment = cls[order], segment[order]
    starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
    for begin, end in zip(starts, np.r_[starts[1:], len(cls)], strict=True):
        chosen = segment[begin : min(end, begin + max_segments)]
        ranked[int(cls[begin])] = [segment_ids[i] for i in chosen.tolist()]
    return ranked


def write(path, segment_ids, scores, classes, max_segments=MAX_SEGMENTS):
    """Write a `Class,Segments` submission atomically (gzip for .gz); returns the row count."""
    ranked = rank_segments(segment_ids, scores, classes, max_segments=max_segments)
    with atomic_path(path) as tmp, open_text(tmp, "w", gz=str(path).endswith(".gz")) as f:
        f.write(HEADER + "\n")
        for cls, segments in ranked.items():
            f.write(f"{cls},{' '.join(segments)}\n")
    return len(ranked)


def segment_ids_of(video_ids, num_frames):
    """Segment ids of every video: `<id>:<start>` for starts 0, 5, ... covering its frames."""
    return [f"{video}:{start}" for video, frames in zip(video_ids, num_frames, strict=True)
            for start in range(0, int(frames), SEGMENT_SECONDS)]


def check(path, classes=None, segment_ids=None, max_segments=MAX_SEGMENTS):
    """Every problem of a segment-level submission, with line numbers.

    Args:
        classes: the scored class ids (e.g. `segment_label_ids.csv`); None: any integer.
        segment_ids: the known segment ids; None: only their form is checked.
    """
    report = Report(path, kind="segments")
    valid_classes = None if classes is None else set(int(c) for c in classes)
    known = None if segment_ids is None else set(segment_ids)
    seen = {}
    for number, label, rest in data_rows(path, report, HEADER, "class id and its segments"):
        if not label.isdigit():
            report.add(number, f"class {label!r} is not a non-negative integer")
        elif int(label) in seen:
            report.add(number, f"class {int(label)} already appears on line {seen[int(label)]}")
        else:
            seen[int(label)] = number
            if valid_classes is not None and int(label) not in valid_classes:
                report.add(number, f"class {int(label)} is not a scored class")
        segments = rest.split(" ") if rest else []
        if len(segments) > max_segments:
            report.add(number, f"{len(segments)} segments, at most {max_segments} allowed")
        listed = set()
        for segment in segments:
            match = _SEGMENT.match(segment)
            if not match:
                report.add(number, f"segment {segment!r} is not '<video id>:<start second>'")
                continue
            if int(match.group(2)) % SEGMENT_SECONDS:
                report.add(number, f"segment {segment} does not start on the "
                                   f"{SEGMENT_SECONDS}-second grid")
            if segment in listed:
                report.add(number, f"segment {segment} is listed twice")
            listed.add(segment)
            if known is not None and segment not in known:
                report.add(number, f"segment {segment} is not a test segment")
    return report
