"""Segment-level Kaggle submissions (2019): `Class,Segments` CSVs.

One row per scored class: the class id, a comma, then up to 100,000 segment ids
(`<video id>:<start second>`, starts on the 5-second grid) separated by single spaces, most
confident first. As in the starter code, each segment first keeps only its 20 best classes among
the scored ones, then each class keeps its best segments.
"""

import re

import numpy as np

from ..errors import Yt8mError
from ..features.segments import segment_ids_of  # noqa: F401 (part of this module's API)
from ..fileio import atomic_path
from ..input.sample import SEGMENT_SECONDS
from ..predictions import chunks
from ..segment_metrics import CLASSES_PER_SEGMENT, MAX_SEGMENTS, ClassLists, submission_map
from .files import Report, data_rows, open_text

HEADER = "Class,Segments"
_SEGMENT = re.compile(r"^([^:\s,]+):(\d+)$")


def rank_segments(segment_ids, scores, classes, per_segment=CLASSES_PER_SEGMENT,
                  max_segments=MAX_SEGMENTS):
    """{class: [segment ids, best first]} for the scored `classes`.

    `scores` is (segments, classes) with a column per class id, or one per scored class (in
    ascending class order); it is read a chunk of rows at a time, so it may be memory-mapped:
    memory stays that of the classes' lists (`ClassLists`)."""
    return dict(_ranked(segment_ids, scores, classes, per_segment, max_segments))


def _ranked(segment_ids, scores, classes, per_segment, max_segments):
    """Yield (class, [segment ids, best first]) for each scored class in ascending order."""
    classes = np.asarray(sorted(set(int(c) for c in classes)), dtype=np.int64)
    if len(segment_ids) != len(scores):
        raise Yt8mError(f"{len(segment_ids)} segment ids for {len(scores)} rows of predictions")
    if classes.size == 0:
        return
    width = scores.shape[1]
    if width != classes.size and (classes.min() < 0 or classes.max() >= width):
        raise Yt8mError(f"scored classes must be in [0, {width})")
    lists = ClassLists(classes.size, max_segments, per_segment)
    for chunk in chunks(len(scores)):
        block = np.asarray(scores[chunk], np.float32)
        lists.add(block if width == classes.size else block[:, classes])
    for column, c in enumerate(classes.tolist()):
        yield c, [segment_ids[i] for i in lists.ranked(column).tolist()]


def write(path, segment_ids, scores, classes, max_segments=MAX_SEGMENTS):
    """Write a `Class,Segments` submission atomically (gzip for .gz), one class's row at a time;
    returns the row count."""
    rows = 0
    with atomic_path(path) as tmp, open_text(tmp, "w", gz=str(path).endswith(".gz")) as f:
        f.write(HEADER + "\n")
        for cls, segments in _ranked(segment_ids, scores, classes, CLASSES_PER_SEGMENT,
                                     max_segments):
            f.write(f"{cls},{' '.join(segments)}\n")
            rows += 1
    return rows


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


def read(path):
    """{class: [segment ids, in order]} of a `Class,Segments` file (check it first)."""
    report = Report(path, kind="segments")
    ranked = {int(label): rest.split(" ") if rest else []
              for _, label, rest in data_rows(path, report, HEADER, "class id and its segments")
              if label.isdigit()}
    if not report.ok:
        raise Yt8mError(f"{path}: not a readable segment submission:\n{report.format(5)}")
    return ranked


def read_answer_key(path):
    """{(segment id, class): rating} of a `Segment,Class,Rating` answer key (the sample's
    `input/segment_solution.csv`)."""
    import pandas as pd

    table = pd.read_csv(path, dtype={"Segment": str})
    if list(table.columns) != ["Segment", "Class", "Rating"]:
        raise Yt8mError(f"{path}: expected the columns Segment,Class,Rating, found "
                        f"{','.join(map(str, table.columns))}")
    return {(s, int(c)): float(r) for s, c, r in table.itertuples(index=False)}


def score(path, answer_key, classes, max_segments=MAX_SEGMENTS):
    """MAP@K of a segment submission against an answer key (`yt8m.segment_metrics`)."""
    rated = read_answer_key(answer_key)
    return {"map": submission_map(read(path), classes, rated, max_segments),
            "ratings": len(rated), "top_k": max_segments}
