"""The built-in sample competition: a small YouTube-8M written in the real format.

It is generated, deterministically from a seed, to be learnable in the ways the real data is:

- 1,000 classes (the size of the 2019 segment vocabulary; `num_classes=3862` gives the 2018
  vocabulary's size at about three times the training cost) in the 24 YouTube-8M verticals;
  class frequencies fall off like Zipf's law (class 0 is the most frequent, as in the real
  vocabulary); about 3 labels per video, mostly from the first label's vertical, so labels
  co-occur inside verticals.
- Every class has a prototype direction in the 1024-d rgb space (and one in the 128-d audio space),
  made of a shared vertical component plus its own, so classes of one vertical are confusable.
- A label's evidence is local: its prototype shows strongly in one contiguous key segment
  (8-25% of the frames) and nowhere else. Each video also carries distractors: prototypes of
  classes it is *not* labeled with, spread thinly over every frame. In the mean over frames a
  distractor looks much like a label, so mean pooling is misled where attention or VLAD pooling,
  which see the strong key frames, are not.
- Some classes are events whose evidence has an order (`ordered_classes`, a share of the classes
  whose evidence is in the rgb only): the key segment's first half shows one motif, its second
  half another, and each such class has a twin that shows the same two motifs the other way
  round. Over the frames, in any order, the twins look the same; only a model that reads the
  frames in order (a recurrent one) tells them apart.
- For a third of the classes (most of "Arts & Entertainment", which holds music, and a random share
  of the rest) the evidence is mainly in the audio, so models that ignore audio lose them.
- Features are Gaussian noise plus a per-video scene vector plus the evidence above, clipped and
  quantized with the dataset's own 8-bit quantizer.

Written through TensorFlow's TFRecord writer: `input/frame/{train,validate,test}NNNN.tfrecord`
(test without labels), `input/vocabulary.csv` with the real columns, `input/solution.csv` (the
test labels: an answer key no real competition hands out, kept so a sample submission can be
scored), and `input/sample.json` (the spec that made them).

`version="2019"` writes the 2019 challenge's layout: train shards with video labels only, validate
shards whose videos also carry segment ratings (`segment_start_times`, `segment_labels`,
`segment_scores`) of their labels among the scored classes, `input/segment_label_ids.csv` (the
scored classes, the starter code's format) and `input/segment_solution.csv`, the test videos'
ratings (`Segment,Class,Rating`; the answer key of the segment task). A rating is 1 for the
5-second segments that lie mostly in the label's key segment, 0 for one clear of it.
"""

import dataclasses
import json
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yt8m.errors import Yt8mError
from yt8m.fileio import atomic_path, ensure_writable, write_json
from yt8m.input.quantization import quantize
from yt8m.input.schema import FRAME_FEATURES, VERSIONS, Video, encode
from yt8m.input.tfrecord import write_records

VERTICALS = (
    "Arts & Entertainment", "Games", "Autos & Vehicles", "Sports", "Food & Drink",
    "Computers & Electronics", "Business & Industrial", "Pets & Animals", "Hobbies & Leisure",
    "Beauty & Fitness", "Shopping", "Internet & Telecom", "Home & Garden", "Science",
    "Law & Government", "Health", "Books & Literature", "Travel", "Reference",
    "Jobs & Education", "People & Society", "Finance", "Real Estate", "News",
)
# Relative number of classes per vertical (roughly the real vocabulary's shape).
_VERTICAL_SIZES = (30, 12, 9, 9, 6, 6, 5, 4, 4, 3, 3, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
SPLITS = ("train", "validate", "test")
SEGMENT_SECONDS = 5
SCORED_CLASSES = "segment_label_ids.csv"  # 2019: the scored classes, as the starter code has it
SEGMENT_SOLUTION = "segment_solution.csv"  # 2019: the test segments' ratings (the answer key)
VOCABULARY_COLUMNS = ("Index", "TrainVideoCount", "KnowledgeGraphId", "Name", "WikiUrl",
                      "Vertical1", "Vertical2", "Vertical3", "WikiDescription")


@dataclass(frozen=True)
class SampleSpec:
    """Size and difficulty knobs of the sample competition.

    The defaults make a competition small enough that the whole `make all` (every demo model
    trained out-of-fold, stacked and submitted) fits in ten minutes on two CPU cores. The
    classifier heads dominate the demo models' cost, so the class count is the main knob: 1,000
    classes train about 2x faster than the 2018 vocabulary's 3,862 (5x for the video-level MoE,
    whose context gate is classes x classes).
    """

    seed: int = 2018
    version: str = "2018"
    num_classes: int = 1000
    train_shards: int = 8
    validate_shards: int = 2
    test_shards: int = 2
    videos_per_shard: int = 200
    min_frames: int = 60
    max_frames: int = 300
    labels_per_video: float = 3.0   # mean; 1 to 9 per video
    zipf_exponent: float = 1.1
    same_vertical: float = 0.85     # chance a further label comes from the first label's vertical
    audio_classes: float = 0.3      # share of classes whose evidence is mostly in the audio
    key_fraction: tuple = (0.08, 0.25)  # share of a video's frames in a label's key segment
    signal: float = 3.0             # norm of a label's evidence in one key frame
    noise: float = 0.5              # per-dimension std of the frame noise
    scene: float = 0.08             # per-dimension std of the per-video scene vector
    distractors_per_video: float = 2.0
    distractor_strength: float = 0.5  # a distractor's weight in the mean, relative to a label's
    vertical_similarity: float = 0.1  # cosine between prototypes of two classes of one vertical
    ordered_classes: float = 0.0    # share of classes whose key segment is two motifs in order
    scored_classes: int = 1000      # 2019: classes whose segments are rated (at most num_classes)

    def shard_counts(self):
        return {"train": self.train_shards, "validate": self.validate_shards,
                "test": self.test_shards}

    def check(self):
        if self.version not in VERSIONS:
            raise Yt8mError(f"unknown dataset version {self.version!r}; choose one of "
                            f"{sorted(VERSIONS)}")
        if not 1 <= self.min_frames <= self.max_frames <= 300:
            raise Yt8mError(f"frames per video must satisfy 1 <= min_frames ({self.min_frames}) "
                            f"<= max_frames ({self.max_frames}) <= 300")
        if self.num_classes < len(VERTICALS):
            raise Yt8mError(f"num_classes must be at least {len(VERTICALS)} (one per vertical)")
        if not 0 <= self.ordered_classes <= 1:
            raise Yt8mError(f"ordered_classes is a share of the classes, in [0, 1], not "
                            f"{self.ordered_classes}")
        if min(self.shard_counts().values()) < 0 or self.videos_per_shard < 1:
            raise Yt8mError("shard counts must be >= 0 and videos_per_shard >= 1")

    def to_json(self):
        d = dataclasses.asdict(self)
        d["key_fraction"] = list(self.key_fraction)
        return d


class _World:
    """What every split shares: verticals, class frequencies, prototypes, the vocabulary."""

    def __init__(self, spec):
        rng = np.random.default_rng([spec.seed, 0])
        c = spec.num_classes
        sizes = np.asarray(_VERTICAL_SIZES, float)
        # Every vertical gets at least one class; the rest are drawn by vertical size.
        self.vertical = np.concatenate([np.arange(len(VERTICALS)),
                                        rng.choice(len(VERTICALS), c - len(VERTICALS),
                                                   p=sizes / sizes.sum())])
        rng.shuffle(self.vertical)
        self.popularity = 1.0 / np.arange(1, c + 1) ** spec.zipf_exponent  # class 0 most frequent
        self.members = [np.flatnonzero(self.vertical == v) for v in range(len(VERTICALS))]
        self.vertical_popularity = np.array([self.popularity[m].sum() for m in self.members])
        self.audio_class = rng.random(c) < spec.audio_classes
        self.audio_class[self.vertical == 0] = rng.random((self.vertical == 0).sum()) < 0.7
        self.prototypes = {}
        for key, dim in FRAME_FEATURES.items():
            shared = _unit(rng.standard_normal((len(VERTICALS), dim)))
            own = _unit(rng.standard_normal((c, dim)))
            mix = np.sqrt(spec.vertical_similarity)
            self.prototypes[key] = _unit(mix * shared[self.vertical]
                                         + np.sqrt(1 - mix**2) * own).astype(np.float32)
        # Audio-heavy classes show weakly in rgb and strongly in audio; the others only in rgb.
        self.weight = {"rgb": np.where(self.audio_class, 0.3, 1.0).astype(np.float32),
                       "audio": np.where(self.audio_class, 1.0, 0.0).astype(np.float32)}
        self.names = _class_names(rng, c)
        scored = min(spec.scored_classes, c)
        # 2019: the scored classes are drawn from the more frequent half (all when scored >= c/2)
        pool = np.arange(max(scored, (c + 1) // 2))
        self.scored = np.zeros(c, bool)
        self.scored[np.random.default_rng([spec.seed, 5]).choice(pool, scored, replace=False)] = 1
        self.motifs, self.twin = _ordered_motifs(np.random.default_rng([spec.seed, 4]), self,
                                                 spec)

    def draw_labels(self, rng, spec):
        n = int(np.clip(1 + rng.poisson(spec.labels_per_video - 1), 1, 9))
        first_vertical = rng.choice(len(VERTICALS), p=self.vertical_popularity
                                    / self.vertical_popularity.sum())
        labels = []
        while len(labels) < n:
            pool = (self.members[first_vertical] if not labels or rng.random() < spec.same_vertical
                    else np.arange(len(self.popularity)))
            pool = np.setdiff1d(pool, labels)
            if pool.size == 0:
                break
            p = self.popularity[pool]
            labels.append(int(rng.choice(pool, p=p / p.sum())))
        return np.sort(np.asarray(labels, dtype=np.int64))


def _ordered_motifs(rng, world, spec):
    """{class: (first, second) rgb motifs} and {class: its twin} for the ordered classes.

    Twins come from one vertical and show the same two motifs in opposite orders. Each class's
    rgb prototype becomes its motifs' mean direction, so that a twin's distractors and its mean
    over frames are those of a class like any other."""
    eligible = np.flatnonzero(~world.audio_class)
    count = int(round(spec.ordered_classes * len(world.vertical) / 2))
    twins, used = [], np.zeros(len(world.vertical), bool)
    for c in rng.permutation(eligible):
        if len(twins) == count:
            break
        if used[c]:
            continue
        mates = eligible[~used[eligible] & (eligible != c)
                         & (world.vertical[eligible] == world.vertical[c])]
        if mates.size:
            mate = int(rng.choice(mates))
            used[[c, mate]] = True
            twins.append((int(c), mate))
    motifs, twin = {}, {}
    dim = FRAME_FEATURES["rgb"]
    for c, mate in twins:
        first, second = _unit(rng.standard_normal((2, dim))).astype(np.float32)
        motifs[c], motifs[mate] = (first, second), (second, first)
        twin[c], twin[mate] = mate, c
        mean = _unit(first + second).astype(np.float32)
        world.prototypes["rgb"][c] = world.prototypes["rgb"][mate] = mean
    return motifs, twin


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _class_names(rng, count):
    syllables = ["ka", "lo", "mi", "ren", "tas", "vel", "or", "qui", "zen", "dra", "po", "sul",
                 "nix", "ber", "ta", "go", "fen", "ri", "mas", "tho", "lin", "cor", "wy", "sa"]
    names, seen = [], set()
    while len(names) < count:
        words = [("".join(rng.choice(syllables, rng.integers(2, 4)))).capitalize()
                 for _ in range(rng.integers(1, 3))]
        name = " ".join(words)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _video_ids(rng, count):
    alphabet = np.array(list(string.ascii_letters + string.digits))
    ids, seen = [], set()
    while len(ids) < count:
        vid = "".join(rng.choice(alphabet, 4))
        if vid not in seen:
            seen.add(vid)
            ids.append(vid)
    return ids


def _make_video(rng, world, spec, vid, split):
    """Frames for one video: noise + scene + local label evidence + thin distractors, and the
    video's 2019 segment ratings (None: not rated)."""
    labeled = split != "test"
    labels = world.draw_labels(rng, spec)
    t = int(rng.integers(spec.min_frames, spec.max_frames + 1))
    frames = {}
    lo, hi = spec.key_fraction
    segments = []
    for c in labels:
        length = max(2, int(round(rng.uniform(lo, hi) * t)))
        start = int(rng.integers(0, t - length + 1))
        segments.append((c, start, length))
    n_distract = rng.poisson(spec.distractors_per_video)
    vertical_pool = np.setdiff1d(world.members[world.vertical[labels[0]]], labels)
    any_pool = np.setdiff1d(np.arange(spec.num_classes), labels)
    distractors = []
    for _ in range(n_distract):
        pool = vertical_pool if vertical_pool.size and rng.random() < 0.7 else any_pool
        p = world.popularity[pool]
        distractors.append(int(rng.choice(pool, p=p / p.sum())))
    for key, dim in FRAME_FEATURES.items():
        x = rng.standard_normal((t, dim), dtype=np.float32) * spec.noise
        x += rng.standard_normal(dim, dtype=np.float32) * spec.scene
        proto, weight = world.prototypes[key], world.weight[key]
        for c, start, length in segments:
            if weight[c]:
                amp = spec.signal * weight[c] * rng.uniform(0.7, 1.3, (length, 1))
                if key == "rgb" and c in world.motifs:
                    half = length // 2
                    first, second = world.motifs[c]
                    x[start:start + half] += (amp[:half] * first).astype(np.float32)
                    x[start + half:start + length] += (amp[half:] * second).astype(np.float32)
                else:
                    x[start:start + length] += (amp * proto[c]).astype(np.float32)
        for c in distractors:
            if weight[c]:
                share = rng.uniform(lo, hi) * spec.distractor_strength
                x += spec.signal * weight[c] * share * proto[c]
        frames[key] = quantize(x)
    video = Video(id=vid, labels=labels if labeled else None, rgb=frames["rgb"],
                  audio=frames["audio"])
    ratings = None
    if spec.version == "2019" and split != "train":
        ratings = _segment_ratings(rng, segments, t, world.scored)
        if split == "validate":
            video.segment_start_times, video.segment_labels, video.segment_scores = ratings
    return video, labels, ratings


def _segment_ratings(rng, key_segments, num_frames, scored):
    """2019-style ratings of a video's scored labels: (start times, classes, ratings).

    For each label, the 5-second segments with at least 3 of their frames in its key segment
    (the best-covered one if none has 3) are rated 1, two at most; one segment clear of the key
    segment is rated 0, as a rater who does not see the class there would."""
    starts, classes, scores = [], [], []
    grid = np.arange(0, num_frames, SEGMENT_SECONDS)
    for c, start, length in key_segments:
        if not scored[c]:
            continue
        overlap = (np.minimum(grid + SEGMENT_SECONDS, start + length)
                   - np.maximum(grid, start)).clip(0)
        inside = grid[overlap >= 3][:2] if (overlap >= 3).any() else grid[[overlap.argmax()]]
        picks = [(int(s), 1.0) for s in inside]
        outside = grid[(overlap == 0) & (grid + SEGMENT_SECONDS <= num_frames)]
        if outside.size:
            picks.append((int(rng.choice(outside)), 0.0))
        for s, score in picks:
            starts.append(s)
            classes.append(c)
            scores.append(score)
    return (np.asarray(starts, np.int64), np.asarray(classes, np.int64),
            np.asarray(scores, np.float32))


def _shard_name(split, index):
    return f"{split}{index:04d}.tfrecord"


def planned_files(spec):
    files = [f"frame/{_shard_name(s, i)}" for s, n in spec.shard_counts().items() for i in range(n)]
    files += ["vocabulary.csv", "solution.csv"]
    return files + ([SCORED_CLASSES, SEGMENT_SOLUTION] if spec.version == "2019" else [])


def generate(output, spec=None, force=False, progress=True):
    """Write the sample competition into `output` (normally `input/`).

    Returns a dict of what was written. A folder that already holds this exact sample is left as
    it is; one that holds shards the generator did not write is refused, so real data is never
    mixed with (or overwritten by) generated data.
    """
    from yt8m.progress import progress_bar

    spec = spec or SampleSpec()
    spec.check()
    output = Path(output)
    ensure_writable(output)
    marker = output / "sample.json"
    previous = json.loads(marker.read_text()) if marker.exists() else None
    ours = set(previous["files"]) if previous else set()
    foreign = sorted(str(p.relative_to(output)) for p in output.glob("*/*.tfrecord")
                     if str(p.relative_to(output)) not in ours)
    if foreign:
        raise Yt8mError(f"{output}/ already holds shards the sample generator did not write "
                        f"({foreign[0]}, ... {len(foreign)} in all); refusing to mix the sample "
                        f"with them. Move them elsewhere, or write the sample to another folder "
                        f"with --output")
    if (previous and previous.get("complete") and previous["spec"] == spec.to_json()
            and not force and all((output / f).exists() for f in previous["files"])):
        return {"written": False, "files": previous["files"], "output": str(output)}
    for name in ours:
        (output / name).unlink(missing_ok=True)
    files = planned_files(spec)
    write_json(marker, {"spec": spec.to_json(), "files": files, "complete": False})

    world = _World(spec)
    id_rng = np.random.default_rng([spec.seed, 1])
    total = sum(spec.shard_counts().values()) * spec.videos_per_shard
    ids = iter(_video_ids(id_rng, total))
    train_counts = np.zeros(spec.num_classes, np.int64)
    solution, rated = [], []
    shards = [(s, i) for s in SPLITS for i in range(spec.shard_counts()[s])]
    bar = progress_bar(shards, desc="sample shards", unit="shard", progress=progress)
    for split, index in bar:
        rng = np.random.default_rng([spec.seed, 2, SPLITS.index(split), index])
        videos = []
        for _ in range(spec.videos_per_shard):
            video, labels, ratings = _make_video(rng, world, spec, next(ids), split)
            videos.append(video)
            if split == "train":
                train_counts[labels] += 1
            if split == "test":
                solution.append((video.id, " ".join(map(str, labels))))
                if ratings is not None:
                    rated += [(f"{video.id}:{s}", c, r) for s, c, r in zip(*ratings, strict=True)]
        write_records(output / "frame" / _shard_name(split, index),
                      (encode(v, spec.version, "frame") for v in videos))
    _write_vocabulary(output / "vocabulary.csv", world, train_counts, np.random.default_rng(
        [spec.seed, 3]))
    with atomic_path(output / "solution.csv") as tmp:
        tmp.write_text("VideoId,Labels\n" + "".join(f"{v},{lab}\n" for v, lab in solution))
    if spec.version == "2019":
        with atomic_path(output / SCORED_CLASSES) as tmp:
            tmp.write_text("Index\n" + "".join(f"{c}\n" for c in np.flatnonzero(world.scored)))
        with atomic_path(output / SEGMENT_SOLUTION) as tmp:
            tmp.write_text("Segment,Class,Rating\n"
                           + "".join(f"{s},{c},{r:g}\n" for s, c, r in rated))
    write_json(marker, {"spec": spec.to_json(), "files": files, "complete": True})
    return {"written": True, "files": files, "output": str(output)}


def _write_vocabulary(path, world, train_counts, rng):
    import pandas as pd

    c = len(world.names)
    second = np.where(rng.random(c) < 0.15, rng.integers(0, len(VERTICALS), c), -1)
    third = np.where((second >= 0) & (rng.random(c) < 0.2), rng.integers(0, len(VERTICALS), c), -1)
    kg_alphabet = np.array(list(string.digits + string.ascii_lowercase))

    def vertical_name(v):
        return VERTICALS[v] if v >= 0 else ""

    table = pd.DataFrame({
        "Index": np.arange(c),
        "TrainVideoCount": train_counts,
        "KnowledgeGraphId": ["/m/0" + "".join(rng.choice(kg_alphabet, 5)) for _ in range(c)],
        "Name": world.names,
        "WikiUrl": ["https://en.wikipedia.org/wiki/" + n.replace(" ", "_") for n in world.names],
        "Vertical1": [VERTICALS[v] for v in world.vertical],
        "Vertical2": [vertical_name(v) for v in second],
        "Vertical3": [vertical_name(v) for v in third],
        "WikiDescription": [f"{n} is a generated topic in {VERTICALS[v]}, part of the sample "
                            f"competition." for n, v in zip(world.names, world.vertical)],
    })
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
