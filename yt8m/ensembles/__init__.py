"""Level-2 blends of trained models: `yt8m ensemble ensembles/<id>.yaml` -> `ensembles/<id>/`.

A spec names its members (model ids under `models/`) and a combiner:

    members: [nextvlad, mix_nextvlad, attention_lstm]
    combiner: weighted        # mean | weighted | stack
    space: logits             # mean only: average logits, or probabilities
    stacker: {epochs: 15}     # stack only: see `stacking.STACKER_DEFAULTS`
    segments: true            # 2019: blend the members' segment scores (`segments`)

`weighted` fits non-negative weights (summing to 1) that maximise OOF GAP@20 (`blending`);
`stack` trains a Keras level-2 model per fold (`stacking`). Reported OOF scores are honest: the
rows of fold k are blended with weights fitted, or by a stacker trained, on the other folds only.
Outputs: `oof_*`/`test_*` predictions in the models' format, `metrics.json` and `report.md`.

The combiners are in `combiners`, the video-level build in `videos`, the report in `reports`.
"""

from pathlib import Path

import yaml

from ..errors import Yt8mError
from ..fileio import output_lock
from . import video_level
from .combiners import COMBINERS, segment_combiners, settings_owners
from .members import load_members, members_level
from .reports import report, summary_line

__all__ = ["COMBINERS", "SPEC_KEYS", "build", "load_members", "load_spec", "members_level",
           "report", "summary_line"]

SPEC_KEYS = ("members", "combiner", "space", "seed", *settings_owners(), "segments")


def load_spec(path):
    """The checked spec dict; errors name the file, the key and what is allowed."""
    path = Path(path)
    spec = _read_spec(path)
    members = spec.get("members")
    if not isinstance(members, list) or len(members) < 2 or \
            not all(isinstance(m, str) for m in members) or len(set(members)) != len(members):
        raise Yt8mError(f"{path}: members must list at least two distinct model ids")
    if spec.get("combiner") not in tuple(COMBINERS):
        raise Yt8mError(f"{path}: combiner must be one of {list(COMBINERS)}, "
                        f"not {spec.get('combiner')!r}")
    combiner = COMBINERS[spec["combiner"]]
    space = spec.get("space", "logits")
    if space not in ("logits", "probabilities"):
        raise Yt8mError(f"{path}: space must be logits or probabilities")
    for key, owner in settings_owners().items():
        if key in spec and spec["combiner"] != owner:
            raise Yt8mError(f"{path}: {key} settings only apply to combiner: {owner}")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise Yt8mError(f"{path}: seed must be an integer, not {seed!r}")
    segments = spec.get("segments", False)
    if not isinstance(segments, bool):
        raise Yt8mError(f"{path}: segments must be true or false, not {segments!r}")
    if segments and (combiner.weigh is None or space != "logits"):
        raise Yt8mError(f"{path}: segment ensembles blend logits with combiner "
                        f"{' or '.join(segment_combiners())}")
    checked = {"members": members, "combiner": spec["combiner"], "space": space, "seed": seed,
               "segments": segments}
    if combiner.settings:
        checked[combiner.settings] = combiner.check_settings(spec.get(combiner.settings), path)
    return checked


def _read_spec(path):
    """The spec file's mapping, its keys all known."""
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise Yt8mError(f"{path}: cannot read the ensemble spec ({e})") from None
    if not isinstance(spec, dict):
        raise Yt8mError(f"{path}: expected a mapping with {', '.join(SPEC_KEYS)}")
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise Yt8mError(f"{path}: unknown keys {sorted(unknown)}; allowed: {list(SPEC_KEYS)}")
    return spec


def build(spec_path, features="features", models_dir="models", out_dir=None, progress=False):
    """Blend (or stack) the members of one ensemble spec; returns its metrics dict."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    out = Path(out_dir or spec_path.parent) / spec_path.stem
    with output_lock(out, f"yt8m ensemble {spec_path}"):  # one writer per ensembles/<id>/
        if spec["segments"]:
            from . import segments

            return segments.build(spec, out, features, models_dir)
        return video_level.build(spec, out, features, models_dir, progress)
