"""Video-level Kaggle submissions (2017 and 2018): `VideoId,LabelConfidencePairs` CSVs.

Each row is a test video id, a comma, then its top 20 `label confidence` pairs, best first,
separated by single spaces, confidences formatted `%g` as the 2018 starter code does.

Writing, checking and scoring go `_ROWS_PER_CHUNK` videos at a time: the predictions (a
memory-map) are read a slice at a time and the file a line at a time. What grows with the
number of videos is the ids (one dict) and, to score, the answer key and the Evaluator's
top-20 triplets.
"""

import math
import re

import numpy as np

from ..errors import Yt8mError
from ..fileio import atomic_path
from ..metrics import Evaluator, top_candidates
from .files import Report, data_rows, open_text, read_lines

HEADER = "VideoId,LabelConfidencePairs"
TOP_K = 20
_ROWS_PER_CHUNK = 1024  # 16 MB of float32 logits at 3862 classes
_INTEGER = re.compile(r"^\d+$")


def confidences(scores, from_logits):
    """Scores as float64 confidences in [0, 1] (sigmoid of logits)."""
    scores = np.asarray(scores, dtype=np.float64)
    if from_logits:  # a sigmoid exact in the tails: exp of a non-positive number only
        e = np.exp(-np.abs(scores))
        scores = np.where(scores >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return np.clip(scores, 0.0, 1.0)


def format_lines(ids, scores, top_k=TOP_K, from_logits=True):
    """Yield the CSV rows (without newline) of (videos, classes) scores, chunk by chunk.

    `scores` may be a memory-map or anything else sliced by rows: only a chunk is read at a time.
    """
    if len(ids) != len(scores):
        raise Yt8mError(f"{len(ids)} ids for {len(scores)} rows of predictions")
    k = min(top_k, scores.shape[1])
    for start in range(0, len(ids), _ROWS_PER_CHUNK):
        yield from _format_chunk(ids, scores, start, k, from_logits)


def _format_chunk(ids, scores, start, k, from_logits):
    """The rows of one chunk, as a list: its work arrays are freed before the next is read."""
    stop = start + _ROWS_PER_CHUNK
    chunk = np.asarray(scores[start:stop], dtype=np.float32)
    if np.isnan(chunk).any():
        row = start + int(np.flatnonzero(np.isnan(chunk).any(axis=1))[0])
        raise Yt8mError(f"predictions for video {ids[row]} (row {row}) contain NaN")
    best, classes = top_candidates(chunk, k)
    del chunk
    pairs = np.empty((len(best), 2 * k))
    pairs[:, 0::2] = classes[:, :k]
    pairs[:, 1::2] = confidences(best[:, :k], from_logits)
    pattern = " ".join(["%d %g"] * k)
    return [f"{video},{pattern % tuple(row)}"
            for video, row in zip(ids[start:stop], pairs.tolist(), strict=True)]


def write(path, ids, scores, top_k=TOP_K, from_logits=True):
    """Write a submission atomically (gzip when `path` ends in .gz); returns the row count."""
    rows = 0
    with atomic_path(path) as tmp, open_text(tmp, "w", gz=str(path).endswith(".gz")) as f:
        f.write(HEADER + "\n")
        for line in format_lines(np.asarray(ids).astype(str), scores, top_k, from_logits):
            f.write(line + "\n")
            rows += 1
    return rows


def check(path, test_ids=None, classes=None, top_k=TOP_K):
    """Every problem of a video-level submission, with line numbers.

    Args:
        test_ids: the ids that must each appear exactly once (None: not checked).
        classes: the valid label ids, e.g. the vocabulary's Index column (None: any integer).
        top_k: pairs required per row.
    """
    report = Report(path)
    valid_classes = None if classes is None else set(int(c) for c in classes)
    # the line each video is on, 0 for a test video not seen yet: the one O(videos) structure
    line_of = {} if test_ids is None else dict.fromkeys(map(str, test_ids), 0)
    for number, video, rest in data_rows(path, report, HEADER, "video id and its pairs"):
        if not video:
            report.add(number, "empty video id")
        elif line_of.get(video):
            report.add(number, f"video {video} already appears on line {line_of[video]}")
        else:
            if test_ids is not None and video not in line_of:
                report.add(number, f"video {video} is not a test video")
            line_of[video] = number
        _check_pairs(report, number, rest, valid_classes, top_k)
    if test_ids is not None:
        missing = sorted(video for video, line in line_of.items() if not line)
        if missing:
            report.add(None, f"{len(missing)} test videos have no row, e.g. "
                             f"{', '.join(missing[:5])}")
    return report


def _check_pairs(report, number, text, valid_classes, top_k):
    tokens = text.split(" ")
    if "" in tokens:
        report.add(number, "pairs must be separated by single spaces (found an empty field)")
        return
    if len(tokens) % 2:
        report.add(number, f"{len(tokens)} fields: labels and confidences must come in pairs")
        return
    if len(tokens) // 2 != top_k:
        report.add(number, f"{len(tokens) // 2} label-confidence pairs, expected {top_k}")
    labels, previous = set(), math.inf
    for label, confidence in zip(tokens[0::2], tokens[1::2], strict=True):
        if not _INTEGER.match(label):
            report.add(number, f"label {label!r} is not a non-negative integer")
        else:
            value = int(label)
            if valid_classes is not None and value not in valid_classes:
                report.add(number, f"label {value} is not in the vocabulary")
            if value in labels:
                report.add(number, f"label {value} is listed twice")
            labels.add(value)
        try:
            score = float(confidence)
        except ValueError:
            report.add(number, f"confidence {confidence!r} of label {label} is not a number")
            continue
        if not 0.0 <= score <= 1.0:  # also refuses nan
            report.add(number, f"confidence {confidence} of label {label} is outside [0, 1]")
            continue
        if score > previous:
            report.add(number, f"confidences are not sorted highest first (label {label})")
        previous = score


def read(path):
    """Parse a (valid) submission: ids, (videos, pairs) label ids padded with -1, confidences."""
    lines = [line for number, line in read_lines(path, Report(path)) if number > 1]
    return _parse(lines)


def read_chunks(path, rows=_ROWS_PER_CHUNK):
    """`read`, `rows` videos at a time: yields (ids, labels, confidences) of each chunk."""
    chunk = []
    for number, line in read_lines(path, Report(path)):
        if number > 1:
            chunk.append(line)
        if len(chunk) == rows:
            yield _parse(chunk)
            chunk = []
    if chunk:
        yield _parse(chunk)


def _parse(lines):
    ids, labels, scores = [], [], []
    for line in lines:
        video, _, rest = line.partition(",")
        tokens = rest.split()
        ids.append(video)
        labels.append([int(t) for t in tokens[0::2]])
        scores.append([float(t) for t in tokens[1::2]])
    width = max((len(row) for row in labels), default=0)
    label_array = np.full((len(ids), width), -1, np.int64)
    score_array = np.zeros((len(ids), width))
    for i, (row_labels, row_scores) in enumerate(zip(labels, scores, strict=True)):
        label_array[i, : len(row_labels)] = row_labels
        score_array[i, : len(row_scores)] = row_scores
    return ids, label_array, score_array


def read_solution(path):
    """A `VideoId,Labels` answer key as {video id: [label ids]}."""
    return {video: [int(t) for t in labels.split()] for video, labels in _solution_rows(path)}


def _solution_rows(path):
    """Yield (video id, label ids as text) of an answer key, checking the header and the ids."""
    report = Report(path)
    for number, line in read_lines(path, report):
        if number == 1:
            if line.split(",")[:2] != ["VideoId", "Labels"]:
                raise Yt8mError(f"{path}: header is {line!r}, expected 'VideoId,Labels'")
            continue
        video, _, labels = line.partition(",")
        try:
            [int(t) for t in labels.split()]
        except ValueError:
            raise Yt8mError(f"{path}, line {number}: labels must be integers") from None
        yield video, labels
    if not report.ok:
        raise Yt8mError(f"{path}: cannot read the answer key ({report.problems[0][1]})")


def score(path, solution_path, num_classes):
    """GAP@20, Hit@1, PERR and mAP of a submission against a `VideoId,Labels` answer key.

    Answer-key videos without a row count as predicted nothing (their labels are missed). The
    key is held as text ({id: "3 17 902"}, about a third of the memory of lists of ints) and
    the submission is read and scored a chunk of rows at a time.
    """
    solution = dict(_solution_rows(solution_path))

    def truth(videos):
        return [[int(t) for t in solution[video].split()] for video in videos]

    evaluator, seen, unknown = Evaluator(num_classes), set(), []
    for ids, labels, scores in read_chunks(path):
        unknown += [video for video in ids if video not in solution]
        if not unknown:
            evaluator.update_top_k(labels, scores, truth(ids))
            seen.update(ids)
    if unknown:
        raise Yt8mError(f"{path}: {len(unknown)} videos are not in {solution_path}, "
                        f"e.g. {', '.join(unknown[:3])}")
    rest = sorted(video for video in solution if video not in seen)
    for start in range(0, len(rest), _ROWS_PER_CHUNK):
        part = rest[start : start + _ROWS_PER_CHUNK]
        nothing = np.full((len(part), 1), -1)
        evaluator.update_top_k(nothing, np.zeros(nothing.shape), truth(part))
    return evaluator.result()
