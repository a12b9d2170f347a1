"""Raw video in: a Kinetics-style dataset (the raw-video side of the workspace).

`input/kinetics/` holds the official CSVs (`label,youtube_id,time_start,time_end,split`) with the
videos under `<split>/<label>/<youtube_id>_<start>_<end>.mp4`, or one folder per class under
`<split>/`. Videos are decoded with PyAV (FFmpeg's libraries, any format FFmpeg reads).

    dataset     a split's videos and labels from the CSVs or the class folders
    video_io    decoding (scaled while converted to RGB) and H.264 encoding
    sample      the generated sample competition (`make sample-video`)

The rest of the raw-video path lives with its stage: clip sampling and batches in
`yt8m.features.clip_sampling` and `yt8m.features.clip_loader`; the specs, the trainer and the
ImageNet start in `yt8m.models.clip_specs`, `yt8m.models.clip_trainer` and
`yt8m.models.pretrained`; the model in `yt8m.models.zoo.stnet`; the results file in
`yt8m.submissions.kinetics`.
"""
