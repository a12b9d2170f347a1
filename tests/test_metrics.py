import itertools

import numpy as np
import pytest

from yt8m import metrics
from yt8m.bench.heap_metrics import heap_gap_and_map
from yt8m.errors import Yt8mError
from yt8m.metrics import Evaluator, evaluate, gap, hit_at_one, mean_ap, perr, top_candidates


def reference_vector():
    rng = np.random.RandomState(0)
    p = rng.rand(50, 30).astype(np.float32)
    y = (rng.rand(50, 30) < 0.1).astype(np.float32)
    y[np.arange(50), rng.randint(0, 30, 50)] = 1
    return p, y


def test_the_starter_code_reference_vector():
    p, y = reference_vector()
    result = evaluate(p, y, 20)
    assert abs(result["gap"] - 0.08787903) < 1e-7
    assert abs(gap(p, y, 5) - 0.02528590) < 1e-7
    assert result["hit_at_one"] == pytest.approx(0.1)
    assert result["perr"] == pytest.approx(0.0855)
    assert abs(result["map"] - 0.13162967) < 1e-7


def test_gap_hand_worked_and_missed_labels_count():
    p = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.7]])
    y = np.array([[1, 0, 1], [0, 0, 1]])
    # top-1 pooled: 0.9 (hit), 0.8 (miss) -> precision 1 at the hit; 3 labels in all.
    assert abs(gap(p, y, top_k=1) - 1 / 3) < 1e-12
    # top-2: 0.9 hit, 0.8 miss, 0.7 hit (2/3), 0.1 miss -> (1 + 2/3) / 3
    assert abs(gap(p, y, top_k=2) - (1 + 2 / 3) / 3) < 1e-12
    assert gap(p, np.zeros_like(y)) == 0.0


def test_hit_perr_and_map_hand_worked():
    p = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.7], [0.3, 0.2, 0.05]])
    y = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 0]])
    assert hit_at_one(p, y) == pytest.approx(1 / 3)
    # video 0: top-2 = {0, 1}, one hit of 2 -> 0.5; video 1: top-1 = {1} -> 0; video 2: no labels.
    assert perr(p, y) == pytest.approx(0.5 / 3)
    # class 0: one positive ranked first of three (0.9, 0.3, 0.2) -> AP 1.
    # class 2: positives at 0.7 (rank 1) and 0.1 (rank 2 of 3) -> (1 + 1) / 2.
    # class 1 has no positives and is skipped.
    assert mean_ap(p, y, top_k=3) == pytest.approx(1.0)
    # with k=1 class 2 is in no top-1 list, so its AP is 0 but still counted
    assert mean_ap(p, y, top_k=1) == pytest.approx(0.5)
    y[2, 1] = 1  # class 1's positive is ranked 3rd of 3 -> AP 1/3
    assert mean_ap(p, y, top_k=3) == pytest.approx((1 + 1 / 3 + 1) / 3)


def test_perr_needs_positive_scores_unless_logits():
    p = np.array([[0.0, -1.0, -2.0]])
    y = np.array([[1, 0, 0]])
    assert perr(p, y) == 0.0  # the starter code only counts scores > 0
    assert perr(p, y, from_logits=True) == 1.0  # any finite logit is a positive probability


def test_videos_without_labels_and_k_beyond_the_classes():
    p = np.array([[0.9, 0.1], [0.4, 0.6]])
    y = np.array([[1, 0], [0, 0]])
    small = evaluate(p, y, top_k=20)
    assert small["gap"] == pytest.approx(1.0)  # only one label, ranked first of all
    assert small["perr"] == pytest.approx(0.5)  # the unlabeled video counts as 0
    assert small["hit_at_one"] == pytest.approx(0.5)
    assert evaluate(p, y, top_k=2)["gap"] == small["gap"]


def tie_average(scores, hits, positives):
    """Mean AP over every order of the tied items, as the starter code's shuffle would give."""
    groups = {}
    for s, h in zip(scores, hits, strict=True):
        groups.setdefault(s, []).append(h)
    totals = []
    orders = [list(itertools.permutations(groups[s])) for s in sorted(groups, reverse=True)]
    for combo in itertools.product(*orders):
        ranked = [h for group in combo for h in group]
        found = np.cumsum(ranked)
        totals.append(sum(found[i] / (i + 1) for i, h in enumerate(ranked) if h) / positives)
    return float(np.mean(totals))


def test_ties_score_the_expectation_over_tie_orders():
    p = np.array([[0.5, 0.5, 0.5, 0.2], [0.5, 0.9, 0.2, 0.2], [0.2, 0.2, 0.7, 0.5]])
    y = np.array([[1, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0]])
    pooled = [(s, int(h)) for s, h in zip(p.ravel(), y.ravel(), strict=True)]
    expected = tie_average([s for s, _ in pooled], [h for _, h in pooled], y.sum())
    assert gap(p, y, top_k=4) == pytest.approx(expected, abs=1e-12)
    # and the heap implementation's single fixed shuffle is one of the orders, so it differs
    heap = heap_gap_and_map(p, y, 4)[0]
    assert heap != pytest.approx(expected, abs=1e-6)


def test_ties_at_the_top_k_boundary_go_to_the_lowest_class_id():
    scores, classes = top_candidates(np.array([[0.1, 0.5, 0.5, 0.5, 0.9]], np.float32), 2)
    assert classes[0, :2].tolist() == [4, 1]
    p = np.array([[0.5, 0.5, 0.5]])
    assert gap(p, np.array([[1, 0, 0]]), top_k=1) == 1.0
    assert gap(p, np.array([[0, 0, 1]]), top_k=1) == 0.0
    assert hit_at_one(p, np.array([[1, 0, 0]])) == 1.0  # numpy.argmax picks the first


def test_perr_shares_out_ties_at_the_cut():
    # two labels; 2nd place is a tie of three holding one label: on average 1/3 of a hit there
    p = np.array([[0.9, 0.4, 0.4, 0.4, 0.1]])
    y = np.array([[1, 0, 1, 0, 0]])
    assert perr(p, y) == pytest.approx((1 + 1 / 3) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_the_per_class_heap_implementation(seed):
    rng = np.random.default_rng(seed)
    p = rng.random((300, 400))  # float64: no ties, where the two are defined to agree
    y = rng.random((300, 400)) < 0.01
    y[np.arange(300), rng.integers(0, 400, 300)] = True
    p += y * 0.6
    result = evaluate(p, y, 20)
    heap_gap, heap_map = heap_gap_and_map(p, y, 20)
    assert result["gap"] == pytest.approx(heap_gap, abs=1e-12)
    assert result["map"] == pytest.approx(heap_map, abs=1e-12)
    assert result["gap"] > 0.3


def test_streaming_equals_one_shot_with_dense_sparse_and_float16():
    rng = np.random.default_rng(5)
    p = rng.normal(size=(5000, 300)).astype(np.float32)
    y = rng.random((5000, 300)) < 0.02
    p[y] += 2.0  # learnable: labels score higher
    one_shot = evaluate(p, y, 20, from_logits=True)
    assert 0.3 < one_shot["gap"] < 1.0
    streaming = Evaluator(300, 20, from_logits=True)
    lists = [np.flatnonzero(row) for row in y]
    for start in range(0, 5000, 777):
        stop = start + 777
        labels = y[start:stop] if start % 2 else lists[start:stop]
        streaming.update(p[start:stop], labels)
    assert streaming.result() == pytest.approx(one_shot, abs=1e-12)
    half = evaluate(p.astype(np.float16), lists, 20, from_logits=True)
    assert half["gap"] == pytest.approx(one_shot["gap"], abs=2e-3)
    assert half["videos"] == 5000


def test_sums_stay_float64_for_float32_inputs():
    rng = np.random.default_rng(7)
    p = rng.random((20000, 50)).astype(np.float32)
    y = (rng.random((20000, 50)) < 0.05).astype(np.float32)
    p += y * 0.3
    ours = gap(p, y)
    exact = gap(p.astype(np.float64), y.astype(np.float64))
    assert ours == exact
    # A float32 running sum of the same terms drifts measurably.
    k = 20
    top = np.argsort(-p, axis=1)[:, :k]
    s = np.take_along_axis(p, top, 1).ravel()
    h = np.take_along_axis(y, top, 1).ravel()[np.argsort(-s, kind="stable")]
    drifted = float(np.sum(np.cumsum(h) / np.arange(1, len(h) + 1, dtype=np.float32) * h,
                           dtype=np.float32) / y.sum())
    assert abs(drifted - exact) > abs(ours - exact)


def test_memory_is_per_top_k_not_per_class():
    ev = Evaluator(3862, top_k=20)
    rng = np.random.default_rng(0)
    for _ in range(3):
        ev.update(rng.random((1000, 3862), dtype=np.float32), [[1, 2]] * 1000)
    assert ev.kept_bytes <= 3000 * 20 * (4 + 2 + 1)  # float32 score, uint16 class, bool hit


def test_top_k_submission_form_matches_dense():
    rng = np.random.default_rng(3)
    p = rng.random((200, 50))
    y = rng.random((200, 50)) < 0.05
    scores, classes = top_candidates(p, 20)
    ev = Evaluator(50)
    ev.update_top_k(classes[:, :20], scores[:, :20], [np.flatnonzero(r) for r in y])
    dense = evaluate(p, y)
    assert ev.result()["gap"] == pytest.approx(dense["gap"], abs=1e-12)
    assert ev.result()["hit_at_one"] == pytest.approx(dense["hit_at_one"])


def test_bad_inputs_are_clear_errors():
    with pytest.raises(Yt8mError, match="NaN .*row 1"):
        gap(np.array([[0.1, 0.2], [np.nan, 0.1]]), np.zeros((2, 2)))
    with pytest.raises(Yt8mError, match="label id 7 is outside"):
        gap(np.zeros((1, 3)), [[7]])
    with pytest.raises(Yt8mError, match="shape"):
        gap(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(Yt8mError, match="2 label lists for 1 videos"):
        gap(np.zeros((1, 3)), [[0], [1]])


def tied_cases():
    """Predictions whose kept scores tie in every way: float16, few values, all equal, signed
    zeros and infinities among negatives."""
    rng = np.random.default_rng(11)
    few = rng.integers(-2, 3, (100, 40)).astype(np.float32)
    signed = rng.choice(np.array([-np.inf, -1.5, -0.0, 0.0, 0.25], np.float32), (100, 40))
    return [rng.normal(size=(100, 40)).astype(np.float16), few, np.zeros((100, 40), np.float32),
            signed]


@pytest.mark.parametrize("case", range(4))
def test_float32_key_sort_equals_the_float64_argsort(case):
    p = tied_cases()[case].astype(np.float32)
    y = np.random.default_rng(case).random(p.shape) < 0.1
    as32 = Evaluator(40, 20, from_logits=True)
    as32.update(p, y)
    as64 = Evaluator(40, 20, from_logits=True)
    as64.update(p.astype(np.float64), y)
    # float32 scores are kept as their 4-byte order keys, float64 scores as they are
    assert as32._scores[0].dtype == np.uint32 and as64._scores[0].dtype == np.float64
    assert as32.result() == as64.result()  # the same order and ties, so the same sums
    np.testing.assert_array_equal(as32.average_precisions(), as64.average_precisions())
    kept32 = metrics._flip(as32._kept()[0].copy()).view(np.float32)
    np.testing.assert_array_equal(kept32, as64._kept()[0].astype(np.float32))


def test_result_can_be_asked_again_and_between_updates():
    rng = np.random.default_rng(2)
    p = rng.random((900, 60)).astype(np.float32)
    y = rng.random((900, 60)) < 0.05
    ev = Evaluator(60)
    ev.update(p[:400], y[:400])
    first = ev.result()
    assert ev.result() == first
    ev.update(p[400:], y[400:])
    assert ev.result() == pytest.approx(evaluate(p, y), abs=1e-12)


def test_more_classes_than_uint16_keep_int32_ids():
    ev = Evaluator(70_000, top_k=2)
    p = np.zeros((2, 70_000), np.float32)
    p[0, 69_999], p[1, 5] = 2.0, 1.0
    ev.update(p, [[69_999], [6]])
    assert ev._classes[0].dtype == np.int32
    assert ev.result()["gap"] == 0.5
    assert ev.average_precisions()[69_999] == 1.0


class RowSliced:
    """An array-like that only has a shape, a dtype and row slicing (as an HDF5 dataset)."""

    def __init__(self, array):
        self._array, self.shape, self.dtype = array, array.shape, array.dtype

    def __getitem__(self, index):
        return self._array[index].copy()

    def __len__(self):
        return len(self._array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_array_likes_with_row_slicing_score_as_arrays(dtype):
    rng = np.random.default_rng(3)
    p = rng.normal(size=(50, 30)).astype(dtype)
    y = rng.random((50, 30)) < 0.1
    assert evaluate(RowSliced(p), y) == evaluate(p, y)
