"""A workspace for YouTube-8M video classification competitions.

Stages, each a subpackage named after the folder it writes:
`yt8m.input` (raw shards), `yt8m.features` (the decoded cache and folds).
"""

import ctypes
import ctypes.util
import os
import sys

# Quiet TensorFlow's C++ start-up logging unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def reuse_freed_memory():
    """Let glibc's malloc keep and reuse freed blocks of up to 32 MB instead of returning each to
    the kernel. Training allocates and frees megabyte-sized batch arrays many times a second; by
    default each one is a fresh `mmap`, zero-filled page by page by the kernel. Measured on two
    cores: a demo DBoF fold 48 s -> 33 s (system time 27 s -> 5 s) for 10% more peak RSS. Set
    `YT8M_MALLOC=default` to leave malloc alone; a no-op where the C library is not glibc."""
    if os.environ.get("YT8M_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # <malloc.h>
    return all(mallopt(option, value) == 1 for option, value in (
        (m_mmap_threshold, 32 << 20), (m_trim_threshold, 256 << 20), (m_top_pad, 64 << 20)))


reuse_freed_memory()
