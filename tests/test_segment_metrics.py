import numpy as np
import pytest

from yt8m.errors import Yt8mError
from yt8m.segment_metrics import SegmentEvaluator, average_precision, segment_map, submission_map
from yt8m.submissions.segments import rank_segments

# Five segments, three classes of which 0 and 2 are scored.
SCORES = np.array([[0.90, 0.5, 0.1],
                   [0.20, 0.0, 0.8],
                   [0.70, 0.9, 0.7],   # classes 0 and 2 tie: class 0 first
                   [0.95, 0.1, 0.3],
                   [0.10, 0.2, 0.6]], np.float32)
CLASSES = [0, 2]
# (segment, class, rating); class 1 is not scored, so its rating is ignored
RATED = [(0, 0, 1), (2, 0, 1), (3, 0, 0), (1, 2, 1), (4, 2, 1), (2, 2, 1), (0, 1, 1)]


def _map(scores=SCORES, rated=RATED, **kwargs):
    segments, labels, ratings = map(list, zip(*rated, strict=True))
    return segment_map(scores, CLASSES, segments, labels, ratings, **kwargs)


def test_average_precision_by_hand():
    assert average_precision([1, 0, 1, 0], 3) == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert average_precision([0, 0], 2) == 0.0
    assert np.isnan(average_precision([0], 0))
    with pytest.raises(ValueError):
        average_precision([1, 1], 1)


def test_map_by_hand():
    # One class per segment, two segments per class:
    #   class 0 keeps s0, s2, s3 and lists s3 (0.95), s0 (0.9): ratings 0, 1 of 2 positives
    #   -> AP (1/2) / 2 = 0.25; class 2 keeps s1, s4 and lists s1, s4: ratings 1, 1 of 3
    #   positives (s2 is rated but listed for class 0 only) -> AP 2/3.
    assert _map(per_segment=1, top_k=2) == pytest.approx((0.25 + 2 / 3) / 2)
    # Three a class: class 0 lists s3, s0, s2: ratings 0, 1, 1 -> (1/2 + 2/3) / 2.
    assert _map(per_segment=1, top_k=3) == pytest.approx(((1 / 2 + 2 / 3) / 2 + 2 / 3) / 2)
    # Both classes a segment: class 2 lists s1 (0.8), s2 (0.7), s4 (0.6): all three positives.
    assert _map(per_segment=2, top_k=3) == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1) / 2)


def test_equal_scores_list_the_earlier_segment_first():
    scores = np.array([[0.5, 0.0, 0.0], [0.5, 0.0, 0.0]], np.float32)
    rated = [(0, 0, 0), (1, 0, 1)]
    assert _map(scores, rated, top_k=1) == 0.0  # only s0 is listed
    assert _map(scores, rated, top_k=2) == pytest.approx(0.5)


def test_a_class_with_positives_but_never_listed_scores_zero():
    rated = RATED + [(3, 2, 1)]  # s3 keeps only class 0 with one class a segment
    full = _map(rated=rated, per_segment=2, top_k=5)
    assert _map(rated=rated, per_segment=1, top_k=5) < full
    never = [(0, 0, 1), (1, 2, 1)]
    scores = SCORES.copy()
    scores[:, 2] = -1.0  # class 2 is never among a segment's best one
    assert _map(scores, never, per_segment=1) == pytest.approx(0.5)  # (1 + 0) / 2


def _random_case(seed, segments=300, classes=40, scored=25):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random((segments, classes)), 2).astype(np.float32)  # many ties
    chosen = np.sort(rng.choice(classes, scored, replace=False))
    rated = {(int(s), int(c)): float(rng.random() < 0.4)
             for s, c in zip(rng.integers(0, segments, 900), rng.integers(0, classes, 900),
                             strict=True)}
    return scores, chosen, rated


@pytest.mark.parametrize("top_k", [3, 17, 1000])
def test_streaming_matches_one_shot_and_the_written_submission(top_k):
    scores, chosen, rated = _random_case(top_k)
    segments, labels = np.array(list(rated)).T
    ratings = list(rated.values())
    one_shot = segment_map(scores, chosen, segments, labels, ratings, top_k=top_k)
    ev = SegmentEvaluator(chosen, segments, labels, ratings, top_k=top_k)
    for lo in range(0, len(scores), 7):  # small batches: class lists compacted many times
        ev.update(scores[lo : lo + 7])
    assert ev.result()["map"] == pytest.approx(one_shot, abs=1e-12)
    ids = [f"v{s}:0" for s in range(len(scores))]
    ranked = rank_segments(ids, scores, chosen, max_segments=top_k)
    by_id = {(ids[s], c): r for (s, c), r in rated.items()}
    assert submission_map(ranked, chosen, by_id, top_k=top_k) == pytest.approx(one_shot,
                                                                                 abs=1e-12)
    assert 0.0 < one_shot < 1.0


def test_scores_of_the_scored_classes_only_give_the_same_result():
    full = _map(per_segment=1, top_k=2)
    segments, labels, ratings = map(list, zip(*RATED, strict=True))
    assert segment_map(SCORES[:, CLASSES], CLASSES, segments, labels, ratings,
                       per_segment=1, top_k=2) == full


def test_bad_input_is_named():
    segments, labels, ratings = map(list, zip(*RATED, strict=True))
    with pytest.raises(Yt8mError, match="rated twice"):
        SegmentEvaluator(CLASSES, segments + [0], labels + [0], ratings + [1])
    ev = SegmentEvaluator(CLASSES, segments, labels, ratings)
    with pytest.raises(Yt8mError, match="segment 1 has a NaN"):
        ev.update(np.array([[0, 0, 0], [np.nan, 0, 0]], np.float32))
    with pytest.raises(Yt8mError, match="columns"):
        ev.update(np.zeros((2, 1), np.float32))
