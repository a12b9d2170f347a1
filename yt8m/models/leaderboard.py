"""Everything trained under the output roots, best first: the rows of `yt8m leaderboard`."""

from pathlib import Path

from yt8m.errors import Yt8mError
from yt8m.predictions import find_sources, source_metrics


def clip_rows(roots=("ensembles", "models")):
    """(folder, metrics, validate accuracy) of the raw-video models, best video top-1 first."""
    rows = []
    for root in roots:
        for path in sorted(Path(root).glob("*/metrics.json")):
            info = source_metrics(path.parent)
            if isinstance(info.get("validate"), dict) and "video_top1" in info["validate"]:
                rows.append((path.parent, info, info["validate"]))
    return sorted(rows, key=lambda row: -row[2]["video_top1"])


def oof_rows(roots=("ensembles", "models")):
    """(folder, metrics, out-of-fold scores) of the sources with test predictions, best OOF
    GAP@20 first; the scores are {} for a source that has none."""
    return [(folder, info, info.get("oof") or {}) for folder, info in find_sources(roots)]


def leaderboard(roots=("ensembles", "models")):
    """(raw-video rows, out-of-fold rows) as `clip_rows` and `oof_rows` give them; an error when
    there is neither."""
    rows = oof_rows(roots)
    clips = clip_rows(roots)
    if not rows and not clips:
        raise Yt8mError(f"nothing trained yet under {', '.join(roots)}; run make train-all")
    return clips, rows
