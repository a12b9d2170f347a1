"""A small Kinetics-style competition of real H.264 videos whose classes differ only in time.

Every video shows one disk (random colour and size) on a random, static, textured background.
The six classes are three pairs, each pair the same motion played forwards and backwards:
moving up / moving down, growing / shrinking, fading in / fading out. A video of one class of a
pair, reversed, is a video of the other, so the two hold exactly the same frames: a model that
ignores frame order (averaging single frames) cannot beat a coin flip within a pair, 50%
accuracy at most, while one that sees consecutive frames can reach 100%. Every class is also its
own mirror image, so the left-right flip of StNet's training keeps its label.

Layout, as the official Kinetics CSVs and downloader have it:

    <root>/train.csv, validate.csv   label,youtube_id,time_start,time_end,split
    <root>/test.csv                  youtube_id,time_start,time_end,split (no labels)
    <root>/solution.csv              youtube_id,label of the test videos (the answer key)
    <root>/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4   (test: <root>/test/<file>)
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...fileio import write_json, write_text
from .video_io import write_video

# (forwards, backwards) pairs: the second of a pair is the first played in reverse
PAIRS = (("moving up", "moving down"), ("growing", "shrinking"), ("fading in", "fading out"))
CLASSES = tuple(label for pair in PAIRS for label in pair)
ID_CHARACTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


@dataclass(frozen=True)
class VideoSampleSpec:
    train_per_class: int = 40
    validate_per_class: int = 10
    test_per_class: int = 10
    frames: int = 16
    fps: int = 8
    width: int = 128
    height: int = 96
    seed: int = 400


def folder_name(label):
    return label.replace(" ", "_")


def video_file(split, youtube_id, start, end, label=None):
    name = f"{youtube_id}_{start:06d}_{end:06d}.mp4"
    return Path(split) / folder_name(label) / name if label else Path(split) / name


def render(label, spec, rng):
    """uint8 RGB frames `(frames, height, width, 3)` of one video of class `label`. The random
    draws do not depend on the class, so the two classes of a pair rendered from the same `rng`
    state are the same video, one reversed."""
    h, w, n = spec.height, spec.width, spec.frames
    texture = rng.normal(0, 12, (h // 4 + 1, w // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:h, :w]
    base = rng.uniform(40, 215, 3)
    background = np.clip(base + texture, 0, 255)
    color = np.clip(255 - base + rng.normal(0, 20, 3), 0, 255)  # contrasting with the background
    small, large = 0.08 * h, 0.24 * h
    radius = rng.uniform(small, large)
    travel = rng.uniform(0.35, 0.45) * h
    top = rng.uniform(large, h - large - travel)
    cx = w / 2 + rng.uniform(-0.25, 0.25) * h  # inside the centre square that crops keep
    cy = rng.uniform(0.3, 0.7) * h
    pair = next(p for p in PAIRS if label in p)
    progress = np.linspace(0.0, 1.0, n)
    if label == pair[1]:
        progress = progress[::-1]
    radii, alphas, centres = np.full(n, radius), np.ones(n), np.full(n, cy)
    if pair[0] == "moving up":
        centres = top + travel * (1 - progress)
    elif pair[0] == "growing":
        radii = small + (large - small) * progress
    else:
        alphas = progress
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        distance = np.hypot(x - cx, y - centres[i])
        cover = (np.clip(radii[i] + 0.5 - distance, 0, 1) * alphas[i])[..., None]  # antialiased
        frames[i] = (background * (1 - cover) + color * cover).astype(np.uint8)
    return frames


def generate(root, spec=VideoSampleSpec(), progress=True):
    """Write the sample video competition into `root` (a no-op when the same one is there)."""
    from ...progress import progress_bar

    root = Path(root)
    stamp = root / "sample.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == asdict(spec):
        return False
    rng = np.random.default_rng(spec.seed)
    seconds = spec.frames // spec.fps
    tables = {"train": [], "validate": [], "test": []}
    counts = {"train": spec.train_per_class, "validate": spec.validate_per_class,
              "test": spec.test_per_class}
    jobs = [(split, label) for split, count in counts.items() for label in CLASSES
            for _ in range(count)]
    for split, label in progress_bar(jobs, desc="sample videos", unit="video", progress=progress):
        youtube_id = "".join(rng.choice(ID_CHARACTERS, 11))
        start = int(rng.integers(0, 300))
        row = {"label": label, "youtube_id": youtube_id, "time_start": start,
               "time_end": start + seconds, "split": split}
        tables[split].append(row)
        path = root / video_file(split, youtube_id, start, start + seconds,
                                 None if split == "test" else label)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, render(label, spec, rng), fps=spec.fps)
    for split, rows in tables.items():
        table = pd.DataFrame(rows)
        if split == "test":
            write_text(root / "solution.csv", table[["youtube_id", "label"]].to_csv(index=False))
            table = table.drop(columns="label")
        write_text(root / f"{split}.csv", table.to_csv(index=False))
    write_json(stamp, asdict(spec))
    return True
