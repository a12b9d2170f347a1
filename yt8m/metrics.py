"""Competition metrics with the starter code's semantics (`eval_util.calculate_gap`)."""

import numpy as np


def gap(predictions, labels, top_k=20):
    """Global average precision over each video's top-k predictions, pooled across videos.

    The (video, class, score) triplets of every video's `top_k` highest scores are ranked by score
    across all videos; GAP is the sum of precision at each true triplet divided by the total number
    of true labels, including labels that fall outside every top k. Accumulated in float64.

    Args:
        predictions: (videos, classes) scores.
        labels: (videos, classes) 0/1 labels.
        top_k: predictions kept per video (20 in the competitions).
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels)
    k = min(top_k, predictions.shape[1])
    top = np.argpartition(-predictions, k - 1, axis=1)[:, :k]
    scores = np.take_along_axis(predictions, top, axis=1).ravel()
    hits = (np.take_along_axis(labels, top, axis=1).ravel() > 0).astype(np.float64)
    positives = float((labels > 0).sum())
    if positives == 0:
        return 0.0
    hits = hits[np.argsort(-scores, kind="stable")]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / positives)
