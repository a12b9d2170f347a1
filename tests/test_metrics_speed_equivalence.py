"""`yt8m.metrics` against the metrics' definitions, computed one video and one class at a time,
and against values recorded from the previous implementation (per-row sorts, all triplets'
precisions): equal to 1e-12 on tied, unlabeled, skewed and streamed predictions, whichever way
`Evaluator` finds and ranks each video's candidates."""

import itertools

import numpy as np
import pytest

from yt8m import metrics, ranking
from yt8m.errors import Yt8mError
from yt8m.metrics import Evaluator


def expected_precision_sum(pairs):
    """Sum of precision at each hit of (score, hit) pairs ranked by score, in expectation over
    the orders of tied scores: each place of a run of g ties holding h hits is a hit with
    probability h/g, the hits before it among the run spread evenly."""
    total, ranked, found = 0.0, 0, 0
    for _, run in itertools.groupby(sorted(pairs, key=lambda pair: -pair[0]), lambda p: p[0]):
        hits = [hit for _, hit in run]
        g, h = len(hits), sum(hits)
        for offset in range(g):
            spread = offset * (h - 1) / (g - 1) if g > 1 else 0.0
            total += (h / g) * (found + 1 + spread) / (ranked + offset + 1)
        ranked, found = ranked + g, found + h
    return total


def reference(p, y, top_k, from_logits=False):
    """GAP@k, Hit@1, PERR, mAP and per-class APs from their definitions (module docstring)."""
    num_videos, num_classes = p.shape
    triplets, hit1, perr = [], 0, 0.0
    for scores, truth in zip(p.astype(np.float64), y > 0, strict=True):
        order = sorted(range(num_classes), key=lambda c: (-scores[c], c))
        hit1 += truth[order[0]]
        labels = int(truth.sum())
        if labels:
            cut = scores[order[labels - 1]]
            good = truth & (scores > (-np.inf if from_logits else 0.0))
            above, tied = scores > cut, scores == cut
            slots = labels - above.sum()
            share = slots * (good & tied).sum() / tied.sum() if slots > 0 else 0.0
            perr += ((good & above).sum() + share) / labels
        triplets += [(scores[c], c, bool(truth[c])) for c in order[:top_k]]
    positives = (y > 0).sum(axis=0)
    aps = np.full(num_classes, np.nan)
    for c in np.flatnonzero(positives):
        pairs = [(s, hit) for s, cls, hit in triplets if cls == c]
        aps[c] = expected_precision_sum(pairs) / positives[c]
    total = positives.sum()
    gap = expected_precision_sum([(s, hit) for s, _, hit in triplets]) / total if total else 0.0
    return {"gap": gap, "hit_at_one": hit1 / num_videos, "perr": perr / num_videos,
            "map": float(np.nanmean(aps)) if positives.any() else 0.0}, aps


def predictions(kind, rng, shape):
    """Score matrices that tie, skew and overflow in the ways that matter to the candidates."""
    rows, classes = shape
    if kind == "uniform":
        return rng.random(shape, dtype=np.float32)
    if kind == "float16 logits":
        return rng.normal(-4, 2, shape).astype(np.float16)
    if kind == "few values":
        return rng.integers(-3, 4, shape).astype(np.float32)
    if kind == "signed zeros and -inf":
        values = np.array([-np.inf, -1.5, -0.0, 0.0, 0.25, 1.0], np.float32)
        return rng.choice(values, shape)
    if kind == "all equal":
        return np.zeros(shape, np.float32)
    if kind == "levels per video":  # confident and unsure videos: no common threshold fits
        levels = rng.normal(0, 2, (rows, 1))
        return np.round((rng.normal(-6, 1.5, shape) + levels) * 4).astype(np.float32) / 4
    if kind == "float64":
        return rng.normal(size=shape)
    if kind == "levels and empty rows":  # each row's first guess is far off, or has no bound
        p = predictions("levels per video", rng, shape) * rng.choice([1, 8], (rows, 1))
        p[rng.random(rows) < 0.2] = -np.inf
        few = rng.random(rows) < 0.2
        p[few] = np.where(rng.random((few.sum(), classes)) < 0.1, p[few], -np.inf)
        return p.astype(np.float32)
    raise ValueError(kind)


KINDS = ["uniform", "float16 logits", "few values", "signed zeros and -inf", "all equal",
         "levels per video", "float64", "levels and empty rows"]
# (videos in flight, threads (contiguous parts), block maxima per video, most candidates placed
# by counting): the defaults (32 blocks of 1 or 2 classes at 45 classes); small chunks in three
# parts, blocks of about 11 classes; blocks of 5 or 6 classes, every video's candidates
# merge-sorted
SETTINGS = [None, (64, 3, 4, 64), (128, 1, 8, 0)]


def labels_for(rng, shape):
    y = rng.random(shape) < 4 / shape[1]
    y[rng.random(shape[0]) < 0.25] = False  # videos without labels
    y[3, : min(shape[1], 30)] = True  # more labels than the top k
    return y


def scored(p, y, top_k, from_logits, batches):
    ev = Evaluator(p.shape[1], top_k, from_logits=from_logits)
    lists = [np.flatnonzero(row) for row in y]
    for i, (start, stop) in enumerate(batches):
        ev.update(p[start:stop], y[start:stop] if i % 2 else lists[start:stop])
    return ev.result(), ev.average_precisions()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("setting", range(len(SETTINGS)))
def test_equals_the_definitions_on_ties_skews_and_streams(monkeypatch, kind, setting):
    if SETTINGS[setting]:
        for module, name, value in zip((metrics, metrics, ranking, ranking),
                                       ("_CHUNK_ROWS", "_THREADS", "BLOCKS", "COUNTING_MOST"),
                                       SETTINGS[setting], strict=True):
            monkeypatch.setattr(module, name, value)
    rng = np.random.default_rng(KINDS.index(kind))
    shape = (300, 45)
    p, y = predictions(kind, rng, shape), labels_for(rng, shape)
    batches = [(0, 170), (170, 171), (171, 300)]
    for top_k, from_logits in ((20, True), (3, False), (60, False)):
        expected, expected_aps = reference(p, y, top_k, from_logits)
        result, aps = scored(p, y, top_k, from_logits, batches)
        assert result["videos"] == 300
        for name, value in expected.items():
            assert result[name] == pytest.approx(value, abs=1e-12), (name, top_k)
        np.testing.assert_allclose(aps, expected_aps, atol=1e-12)


def test_submission_lists_and_mixed_dtypes_in_one_evaluator():
    rng = np.random.default_rng(9)
    p = predictions("levels per video", rng, (240, 30))
    y = labels_for(rng, (240, 30))
    lists = [np.flatnonzero(row) for row in y]
    scores, classes = metrics.top_candidates(p[80:160].astype(np.float64), 20)
    ev = Evaluator(30, 20)
    ev.update(p[:80], lists[:80])  # float32: kept as 4-byte keys
    ev.update_top_k(classes[:, :20], scores[:, :20], lists[80:160])  # float64 scores
    ev.update(p[160:].astype(np.float64), y[160:])
    expected, expected_aps = reference(p, y, 20)
    result = ev.result()
    for name in ("gap", "map"):  # the submission rows list exactly the top 20
        assert result[name] == pytest.approx(expected[name], abs=1e-12)
    np.testing.assert_allclose(ev.average_precisions(), expected_aps, atol=1e-12)


def recorded_case(seed):
    """3,000 videos x 500 classes of logits with per-video levels, ties (steps of 1/8), videos
    without labels and labeled classes raised by 3."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(-5, 2, (3000, 500)) + rng.normal(0, 1.5, (3000, 1))
    y = rng.random((3000, 500)) < 3 / 500
    y[rng.random(3000) < 0.1] = False
    logits[y] += 3
    return (np.round(logits * 8) / 8).astype(np.float32), [np.flatnonzero(row) for row in y]


# (seed, top_k, from_logits): gap, hit_at_one, perr, map of the previous implementation
RECORDED = {
    (0, 20, True): (0.033058299359946475, 0.16666666666666666, 0.11466045093795094,
                    0.05867182816519771),
    (0, 5, False): (0.026750468448091442, 0.16666666666666666, 0.07942670755170755,
                    0.05348309677822179),
    (1, 20, True): (0.03220660474603806, 0.16933333333333334, 0.11426453776382345,
                    0.05709912981741346),
    (1, 5, False): (0.023964426592156304, 0.16933333333333334, 0.08384748749927322,
                    0.04953113270769312),
    (2, 20, True): (0.034227692261792786, 0.17666666666666667, 0.12571792328042328,
                    0.06055971085936974),
    (2, 5, False): (0.02807914652595399, 0.17666666666666667, 0.08818048941798941,
                    0.055068857459902656),
}


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_equals_the_previous_implementation(case):
    seed, top_k, from_logits = case
    p, labels = recorded_case(seed)
    ev = Evaluator(500, top_k, from_logits=from_logits)
    ev.update(p, labels)
    result = ev.result()
    for name, value in zip(("gap", "hit_at_one", "perr", "map"), RECORDED[case], strict=True):
        assert result[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("column", [3, 250, 300, 499])  # folded pair's either side, copied, last
def test_nan_names_its_row_whatever_the_chunk_thread_and_column(monkeypatch, column):
    monkeypatch.setattr(metrics, "_CHUNK_ROWS", 16)
    p = np.random.default_rng(0).random((40, 500), dtype=np.float32)
    p[23, column] = np.nan  # three threads' parts: rows 0-12, 13-25 and 26-39, in chunks of 5
    p[29, 0] = np.nan  # a later row, in the next thread's part
    ev = Evaluator(500, 20, threads=3)
    with pytest.raises(Yt8mError, match="NaN .*row 23"):
        ev.update(p, [[1]] * 40)
