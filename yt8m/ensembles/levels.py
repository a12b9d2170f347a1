"""Which specs build at a feature level (`yt8m specs`, which Make lists its targets with)."""

from pathlib import Path

from yt8m.ensembles import load_spec as load_ensemble
from yt8m.models.clip_specs import is_clip_spec
from yt8m.models.registry import load_spec


def specs_at_level(specs, level="frame"):
    """The paths among `specs` that build at `level`: the YouTube-8M model specs that train on
    features/<level>/ (every one at frame level, the video-level models at video level), then
    the ensemble specs (a path under an `ensembles` folder) whose members are all among them."""
    models = [Path(p) for p in specs if Path(p).parent.name != "ensembles"]
    ensembles = [Path(p) for p in specs if Path(p).parent.name == "ensembles"]
    kept = [p for p in models if not is_clip_spec(p)
            and (level == "frame" or load_spec(p).level == "video")]
    ids = {p.stem for p in kept}
    return kept + [p for p in ensembles if set(load_ensemble(p)["members"]) <= ids]
