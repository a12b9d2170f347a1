"""The Kinetics side of the workspace: raw video in, StNet, top-k results out.

`input/kinetics/` holds a Kinetics-style dataset: the official CSVs
(`label,youtube_id,time_start,time_end,split`) with the videos under
`<split>/<label>/<youtube_id>_<start>_<end>.mp4`, or one folder per class under `<split>/`.
Videos are decoded with PyAV (FFmpeg's libraries, any format FFmpeg reads).

    dataset     a split's videos and labels from the CSVs or the class folders
    video_io    decoding (scaled while converted to RGB) and H.264 encoding
    sampling    the reference's segments, crops, flips and super-images
    loader      the pre-training scan, training batches by parallel workers, test-time clips
    spec        raw-video model specs (`models/<id>.yaml` with `model: stnet`)
    training    `yt8m train` for those specs: fit, resume, multi-clip testing, metrics
    pretrained  ImageNet weights from a local torchvision-layout file, conv1 inflated
    sample      the generated sample competition (`make sample-video`)

The model is `yt8m.models.zoo.stnet`; the results file writer is `yt8m.submissions.kinetics`.
"""
