"""The Kinetics side of the workspace: raw video in, StNet, top-k results out.

`input/kinetics/` holds a Kinetics-style dataset: the official CSVs
(`label,youtube_id,time_start,time_end,split`) with the videos under
`<split>/<label>/<youtube_id>_<start>_<end>.mp4`, or one folder per class under `<split>/`.
Videos are decoded with PyAV (FFmpeg's libraries, any format FFmpeg reads).
"""
