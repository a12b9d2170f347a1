import numpy as np

from yt8m.metrics import gap


def test_gap_matches_the_starter_code_reference_vector():
    rng = np.random.RandomState(0)
    p = rng.rand(50, 30).astype(np.float32)
    y = (rng.rand(50, 30) < 0.1).astype(np.float32)
    y[np.arange(50), rng.randint(0, 30, 50)] = 1
    assert abs(gap(p, y, 20) - 0.08787903) < 1e-7
    assert abs(gap(p, y, 5) - 0.02528590) < 1e-7


def test_gap_hand_worked_and_missed_labels_count():
    p = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.7]])
    y = np.array([[1, 0, 1], [0, 0, 1]])
    # top-1 pooled: 0.9 (hit), 0.8 (miss) -> precision 1 at the hit; 3 labels in all.
    assert abs(gap(p, y, top_k=1) - 1 / 3) < 1e-12
    # top-2: 0.9 hit, 0.8 miss, 0.7 hit (2/3), 0.1 miss -> (1 + 2/3) / 3
    assert abs(gap(p, y, top_k=2) - (1 + 2 / 3) / 3) < 1e-12
    assert gap(p, np.zeros_like(y)) == 0.0
