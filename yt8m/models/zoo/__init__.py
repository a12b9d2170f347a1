"""The model zoo: one module per model id (`models/<id>.yaml` -> `yt8m/models/zoo/<id>.py`), each
with a `build_<id>(num_classes, **architecture)` builder and its `MODELS` entry (presets, training,
reference). `common` and `recurrent` hold what several share; `stnet` is the raw-video model."""
