"""The YouTube-8M 8-bit feature quantization, exactly as the starter code does it.

Frame features were clipped to [-2, 2] and stored as `round((x + 2) * 255 / 4)`; readers map a
byte q back with `q * 4/255 + 4/512 - 2` (the half-bin offset is the starter code's, kept as is),
so byte 0 reads -1.9921875 and byte 255 reads 2.0078125.
"""

import numpy as np

MAX_QUANTIZED = 2.0
MIN_QUANTIZED = -2.0
SCALE = (MAX_QUANTIZED - MIN_QUANTIZED) / 255.0
BIAS = (MAX_QUANTIZED - MIN_QUANTIZED) / 512.0 + MIN_QUANTIZED
MAX_FRAMES = 300


def dequantize(q, dtype=np.float32):
    """uint8 features -> floats on the YouTube-8M grid."""
    return (np.asarray(q, dtype=dtype) * dtype(SCALE) + dtype(BIAS)).astype(dtype, copy=False)


def quantize(x):
    """Floats -> uint8 with the dataset's quantizer (clip to [-2, 2], 8 bits, round half even)."""
    x = np.clip(np.asarray(x, dtype=np.float32), MIN_QUANTIZED, MAX_QUANTIZED)
    return np.rint((x - MIN_QUANTIZED) * (255.0 / (MAX_QUANTIZED - MIN_QUANTIZED))).astype(np.uint8)
