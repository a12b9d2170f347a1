"""Mask helpers shared by the frame-level layers."""

from keras import ops


def frame_mask(mask, inputs):
    """(batch, frames, 1) float mask in the inputs' dtype; all ones when `mask` is None."""
    if mask is None:
        return ops.ones_like(inputs[..., :1])
    return ops.expand_dims(ops.cast(mask, inputs.dtype), -1)


def masked_softmax(logits, mask, axis=1):
    """Softmax over `axis` (time) that gives padded steps exactly zero weight.

    `mask` broadcasts against `logits` (1 = keep). Computed in float32; a row without any real
    step gets all-zero weights instead of NaN.
    """
    dtype = logits.dtype
    logits = ops.cast(logits, "float32")
    mask = ops.cast(mask, "float32")
    logits = ops.where(mask > 0, logits, ops.full_like(logits, -1e30))
    logits = logits - ops.max(logits, axis=axis, keepdims=True)
    weights = ops.exp(logits) * mask
    total = ops.sum(weights, axis=axis, keepdims=True)
    return ops.cast(weights / ops.maximum(total, 1e-12), dtype)


def masked_mean(inputs, mask):
    """Mean over frames (axis 1) of the real frames only."""
    weights = frame_mask(mask, inputs)
    total = ops.sum(inputs * weights, axis=1)
    return total / ops.maximum(ops.sum(weights, axis=1), 1.0)
