"""The dataset's class vocabulary (`input/vocabulary.csv`)."""

from pathlib import Path

import numpy as np
import pandas as pd

from yt8m.errors import InputError


def read_vocabulary_size(input_dir):
    """Number of classes in `input_dir/vocabulary.csv`, or None when there is none."""
    path = Path(input_dir) / "vocabulary.csv"
    if not path.exists():
        return None
    try:
        index = pd.read_csv(path, usecols=["Index"])["Index"].to_numpy()
    except (ValueError, pd.errors.ParserError) as e:
        raise InputError(path, f"cannot read the 'Index' column of the vocabulary ({e}); expected "
                               f"the dataset's vocabulary.csv (Index, TrainVideoCount, "
                               f"KnowledgeGraphId, Name, ...)") from None
    if len(index) == 0 or not np.array_equal(np.sort(index), np.arange(len(index))):
        raise InputError(path, "the Index column must hold each class id 0..N-1 exactly once")
    return len(index)
