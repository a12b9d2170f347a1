"""A workspace for YouTube-8M video classification competitions.

Stages, each a subpackage named after the folder it writes:
`yt8m.input` (raw shards), `yt8m.features` (the decoded cache and folds).
"""

import os

# Quiet TensorFlow's C++ start-up logging unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
