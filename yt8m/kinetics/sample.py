"""A small Kinetics-style competition of real H.264 videos whose classes differ only in motion.

Every video shows one object (a bar with a dot at one end, random colour, size and orientation)
on a random, static, textured background; the class is how it moves: up, down or sideways at a
constant speed, growing, shrinking, or turning in place. Any single frame is a bar at a
random place and angle, so a model that averages frames cannot do better than chance; telling
the classes apart needs consecutive frames.

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

from ..fileio import write_json, write_text
from .video_io import write_video

# Every class is its own mirror image, because StNet's training flips clips left-right: "moving
# sideways" is left or right, "turning" either way.
CLASSES = ("moving up", "moving down", "moving sideways", "growing", "shrinking", "turning")
ID_CHARACTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


@dataclass(frozen=True)
class VideoSampleSpec:
    train_per_class: int = 40
    validate_per_class: int = 10
    test_per_class: int = 10
    frames: int = 16
    fps: int = 8
    width: int = 112
    height: int = 84
    seed: int = 400


def folder_name(label):
    return label.replace(" ", "_")


def video_file(split, youtube_id, start, end, label=None):
    name = f"{youtube_id}_{start:06d}_{end:06d}.mp4"
    return Path(split) / folder_name(label) / name if label else Path(split) / name


def render(motion, spec, rng):
    """uint8 RGB frames `(frames, height, width, 3)` of one video of class `motion`."""
    h, w, n = spec.height, spec.width, spec.frames
    texture = rng.normal(0, 10, (h // 4 + 1, w // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:h, :w]
    base = rng.uniform(40, 215, 3)
    background = np.clip(base + texture, 0, 255)
    color = np.clip(255 - base + rng.normal(0, 20, 3), 0, 255)  # contrasting with the background
    half_width, dot = rng.uniform(2.5, 3.5), rng.uniform(3, 4)
    lengths = np.full(n, rng.uniform(6, 13))
    if motion in ("growing", "shrinking"):
        lengths = np.linspace(6, 13, n)[:: 1 if motion == "growing" else -1]
    angle = rng.uniform(0, 2 * np.pi)
    t = np.arange(n)
    # the object stays inside the centre (4:3 frames lose their sides to a square crop)
    reach = lengths.max() + dot + 1
    lo_x, hi_x = (w - h) / 2 + reach, (w + h) / 2 - reach
    lo_y, hi_y = reach, h - reach
    angles = np.full(n, angle)
    if motion.startswith("moving"):
        speed = rng.uniform(2.0, 2.5)
        path = speed * (n - 1)
        dx, dy = {"up": (0, -1), "down": (0, 1), "sideways": (rng.choice([-1, 1]), 0)}[
            motion.split()[1]]
        cx = rng.uniform(lo_x + max(0, -dx) * path, hi_x - max(0, dx) * path) + dx * speed * t
        cy = rng.uniform(lo_y + max(0, -dy) * path, hi_y - max(0, dy) * path) + dy * speed * t
    else:
        cx, cy = np.full(n, rng.uniform(lo_x, hi_x)), np.full(n, rng.uniform(lo_y, hi_y))
        if motion == "turning":
            angles = angle + rng.uniform(0.25, 0.4) * rng.choice([-1, 1]) * t
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        c, s = np.cos(angles[i]), np.sin(angles[i])
        u = (x - cx[i]) * c + (y - cy[i]) * s
        v = -(x - cx[i]) * s + (y - cy[i]) * c
        shape = ((np.abs(u) <= lengths[i]) & (np.abs(v) <= half_width)) | \
            ((u - lengths[i]) ** 2 + v ** 2 <= dot ** 2)
        frames[i] = np.where(shape[..., None], color, background).astype(np.uint8)
    return frames


def generate(root, spec=VideoSampleSpec(), progress=True):
    """Write the sample video competition into `root` (a no-op when the same one is there)."""
    from tqdm import tqdm

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
    for split, label in tqdm(jobs, desc="sample videos", unit="video", disable=not progress):
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
