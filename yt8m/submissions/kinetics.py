"""Results files of the ActivityNet Kinetics challenge: every test video's top-5 labels.

    {"version": "...",
     "results": {"<youtube_id>": [{"label": "<class name>", "score": 0.91}, ... 5 entries]},
     "external_data": {"used": true, "details": "..."}}

The challenge's evaluation reads `results` (top-1 and top-5 error: is the true label among the
first 1 or 5 entries) and requires the three keys. `write_results` writes
`submissions/<id>.results.json` from a raw-video model's `test_scores.npz` (the mean of each
video's clip softmax), then checks what it wrote with `check_results`; `<id>.json` beside it
records where it came from, as for the YouTube-8M submissions.
"""

import datetime
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import Yt8mError
from ..fileio import atomic_path, output_lock, write_json
from ..predictions import source_metrics
from .writer import existing_submission, file_stamp, record_provenance

TOP_K = 5
RESULTS_KEYS = ("version", "results", "external_data")


def results(video_ids, scores, classes, version, external_data, top_k=TOP_K):
    """The results mapping for `scores` (videos, classes), best label first."""
    k = min(top_k, len(classes))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {"version": version,
            "results": {str(v): [{"label": classes[j], "score": round(float(s[j]), 6)}
                                 for j in row] for v, s, row in zip(video_ids, scores, top)},
            "external_data": external_data}


def check_results(data, classes=None, video_ids=None, top_k=TOP_K, max_problems=10):
    """The problems of a results mapping (empty when valid): the three keys, a list of exactly
    top_k (or every class, if fewer) distinct labels per video with finite scores in decreasing
    order, known labels and, given `video_ids`, every test video and no other."""
    if not isinstance(data, dict):
        return ["the file is not a JSON object with keys version, results, external_data"]
    problems = [f"no {key!r} key" for key in RESULTS_KEYS if key not in data]
    extra = data.get("external_data")
    if "external_data" in data and not (isinstance(extra, dict) and
                                        isinstance(extra.get("used"), bool) and
                                        isinstance(extra.get("details"), str)):
        problems.append("external_data must be {\"used\": true|false, \"details\": \"...\"}")
    entries = data.get("results")
    if not isinstance(entries, dict):
        return problems + ["results must map each video id to its list of labels and scores"]
    known = set(classes) if classes is not None else None
    k = min(top_k, len(known)) if known else top_k
    for video, ranked in entries.items():
        where = f"results[{video!r}]"
        if not isinstance(ranked, list) or len(ranked) != k:
            problems.append(f"{where}: expected a list of {k} {{label, score}} entries")
            continue
        if not all(isinstance(e, dict) and set(e) == {"label", "score"} for e in ranked):
            problems.append(f"{where}: every entry is {{\"label\": ..., \"score\": ...}}")
            continue
        labels, scores = [e["label"] for e in ranked], [e["score"] for e in ranked]
        if len(set(labels)) != len(labels):
            problems.append(f"{where}: a label appears twice")
        if known is not None and not set(labels) <= known:
            problems.append(f"{where}: unknown label {sorted(set(labels) - known)[0]!r}")
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)
                   for s in scores):
            problems.append(f"{where}: scores must be finite numbers")
        elif any(a < b for a, b in zip(scores, scores[1:])):
            problems.append(f"{where}: entries are not in decreasing order of score")
        if len(problems) >= max_problems:
            break
    if video_ids is not None:
        expected = {str(v) for v in video_ids}
        missing, unknown = expected - set(entries), set(entries) - expected
        if missing:
            problems.append(f"{len(missing)} test videos have no results, e.g. "
                            f"{sorted(missing)[0]!r}")
        if unknown:
            problems.append(f"{len(unknown)} videos are not test videos, e.g. "
                            f"{sorted(unknown)[0]!r}")
    return problems[:max_problems]


def read_results(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Yt8mError(f"{path}: cannot read it as JSON ({e})") from None


def score(data, solution):
    """Top-1 and top-5 accuracy of a results mapping against `solution` (a CSV of
    youtube_id,label); a video without results counts as wrong."""
    table = pd.read_csv(solution, dtype={"youtube_id": str})
    if not {"youtube_id", "label"} <= set(table):
        raise Yt8mError(f"{solution}: expected columns youtube_id,label")
    entries = data["results"]
    ranked = [[e["label"] for e in entries.get(v, [])] for v in table["youtube_id"]]
    hits = {k: np.mean([label in r[:k] for label, r in zip(table["label"], ranked)])
            for k in (1, 5)}
    return {"top1": float(hits[1]), "top5": float(hits[5]), "videos": len(table),
            "missing": int(sum(not r for r in ranked))}


def is_clip_source(source):
    return (Path(source) / "test_scores.npz").is_file()


def write_results(source, output="submissions", sub_id=None, force=False):
    """Write `<output>/<id>.results.json` (and `<id>.json`, its provenance) from a raw-video
    model folder; returns (path, provenance, written: bool)."""
    source = Path(source)
    scores_path = source / "test_scores.npz"
    sub_id = sub_id or source.name
    path = Path(output) / f"{sub_id}.results.json"
    meta_path = Path(output) / f"{sub_id}.json"
    with output_lock(output, f"yt8m submission write {sub_id}"):  # one writer per folder
        current = existing_submission(path, meta_path, source, scores_path, force)
        if current:
            return path, current, False
        with np.load(scores_path) as saved:
            ids, scores, classes = saved["video_ids"], saved["scores"], list(saved["classes"])
        metrics = source_metrics(source)
        pretrained = metrics.get("pretrained")
        external = {"used": bool(pretrained),
                    "details": f"ResNet initialised from ImageNet weights ({pretrained})"
                    if pretrained else "none: trained from scratch on the training split"}
        data = results(ids, scores.mean(axis=1), classes, f"Kinetics-{len(classes)}", external)
        problems = check_results(data, classes, ids)
        if problems:
            raise Yt8mError("the results failed their own check: " + "; ".join(problems))
        with atomic_path(path) as tmp:  # <id>.json first, then the results (`record_provenance`)
            write_json(tmp, data)
            info = record_provenance(meta_path, {
                "id": sub_id, "file": str(path), "source": str(source), "source_kind": "model",
                "config_hash": metrics.get("config"), "validate": metrics.get("validate"),
                "dataset": metrics.get("dataset"), "rows": len(ids), "classes": len(classes),
                "top_k": min(TOP_K, len(classes)), "predictions": file_stamp(scores_path),
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "yt8m_version": __version__}, tmp, path)
    return path, info, True
