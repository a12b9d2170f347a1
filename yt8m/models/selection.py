"""Which specs `yt8m train` takes: the raw-video ones apart."""

from yt8m.models.clip_specs import is_clip_spec


def split_clip_specs(specs):
    """(YouTube-8M specs, raw-video specs) of `specs`, each in the given order."""
    clips = [spec for spec in specs if is_clip_spec(spec)]
    return [spec for spec in specs if spec not in clips], clips
