"""Blends of member logits: the `mean` and `weighted` combiners."""

import numpy as np

from ..metrics import evaluate


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def blend(stack, weights, space="logits"):
    """Weighted mean of (members, videos, classes) logits, as logits (float32)."""
    weights = np.asarray(weights, np.float32)
    weights = weights / weights.sum()
    if space == "logits":
        return np.tensordot(weights, stack, axes=1).astype(np.float32)
    p = np.clip(np.tensordot(weights, _sigmoid(stack.astype(np.float32)), axes=1), 1e-7, 1 - 1e-7)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


def fit_weights(stack, labels, space="logits", rounds=2, grid=6):
    """Non-negative weights summing to 1 that maximise GAP@20, by coordinate search: each round
    tries, for every member, `grid` shares of the blend between 0 and 1 against the others.
    Starts from equal weights; returns (weights, GAP)."""
    n = len(stack)
    weights = np.full(n, 1.0 / n)
    best = evaluate(blend(stack, weights, space), labels, from_logits=True)["gap"]
    for _ in range(rounds):
        improved = False
        for i in range(n):
            others = np.delete(weights, i)
            if others.sum() == 0:  # member i holds all the weight: nothing to trade against
                continue
            others = others / others.sum()
            # in logit space a trial is a mix of two fixed blends: compute the others' once
            rest = (np.tensordot(np.insert(others, i, 0.0).astype(np.float32), stack, axes=1)
                    if space == "logits" else None)
            for share in np.linspace(0.0, 1.0, grid):
                trial = np.insert(others * (1 - share), i, share)
                if rest is None:
                    blended = blend(stack, trial, space)
                else:
                    blended = rest * np.float32(1 - share)
                    blended += np.float32(share) * stack[i]
                gap = evaluate(blended, labels, from_logits=True)["gap"]
                if gap > best + 1e-9:
                    best, weights, improved = gap, trial, True
        if not improved:
            break
    return weights, best
