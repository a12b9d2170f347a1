"""The videos of a Kinetics-style dataset, from the official CSVs or from one folder per class.

CSV layout: `<root>/<split>.csv` with `youtube_id,time_start,time_end` (and `label` where the
split is labeled); the video of a row is `<root>/<split>/<label>/<id>_<start:06d>_<end:06d>.<ext>`
(spaces in labels may be underscores in folder names) or the same name directly under
`<root>/<split>/`. Folder layout (no CSV): `<root>/<split>/<class>/<any name>.<ext>`.
"""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...errors import Yt8mError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov")
CSV_COLUMNS = ("youtube_id", "time_start", "time_end")


@dataclass(frozen=True)
class Clip:
    path: Path
    video_id: str  # the CSV's youtube_id, or the file's name without extension
    label: str | None


@dataclass
class Split:
    clips: list
    missing: list  # (where, what) of the rows whose video was not found, when skipped


def _find(root, split, label, stem):
    folders = [root / split]
    if label:
        folders = [root / split / label, root / split / label.replace(" ", "_"), *folders]
    for folder in folders:
        for extension in VIDEO_EXTENSIONS:
            if (folder / f"{stem}{extension}").is_file():
                return folder / f"{stem}{extension}"
    return None


def read_split(root, split, skip_missing=False):
    """The clips of one split (`train`, `validate`, `test`); a row whose video is missing is an
    error naming the CSV line and the file looked for, or skipped and listed in `missing`."""
    root = Path(root)
    table_path = root / f"{split}.csv"
    if not table_path.is_file():
        return _read_folders(root, split)
    try:
        table = pd.read_csv(table_path, dtype={"youtube_id": str})
    except (OSError, pd.errors.ParserError) as e:
        raise Yt8mError(f"{table_path}: cannot read it as CSV ({e})") from None
    absent = [c for c in CSV_COLUMNS if c not in table]
    if absent:
        raise Yt8mError(f"{table_path}: no column {', '.join(absent)}; expected "
                        f"label,youtube_id,time_start,time_end,split (label where labeled)")
    clips, missing = [], []
    for line, row in enumerate(table.itertuples(index=False), start=2):
        label = getattr(row, "label", None)
        label = None if pd.isna(label) else str(label)
        stem = f"{row.youtube_id}_{int(row.time_start):06d}_{int(row.time_end):06d}"
        path = _find(root, split, label, stem)
        if path is None:
            where = f"{table_path}, line {line}"
            if not skip_missing:
                raise Yt8mError(f"{where}: no video {stem}.mp4 (or another video extension) in "
                                f"{root / split}/{label + '/' if label else ''}; download it or "
                                f"skip missing videos")
            missing.append((where, stem))
            continue
        clips.append(Clip(path, str(row.youtube_id), label))
    return Split(clips, missing)


def _read_folders(root, split):
    folder = root / split
    if not folder.is_dir():
        raise Yt8mError(f"{root}: no {split}.csv and no {split}/ folder")
    clips = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        label = path.parent.name if path.parent != folder else None
        clips.append(Clip(path, path.stem, label))
    if not clips:
        raise Yt8mError(f"{folder}: no videos ({', '.join(VIDEO_EXTENSIONS)})")
    return Split(clips, [])


def class_names(train):
    """The sorted labels of the training split: the classifier's outputs, in order."""
    labels = sorted({clip.label for clip in train.clips if clip.label is not None})
    if not labels:
        raise Yt8mError("the training split has no labeled videos")
    return labels
