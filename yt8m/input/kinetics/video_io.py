"""Decoding and encoding video files with PyAV.

PyAV binds FFmpeg's own libraries, so it reads whatever FFmpeg reads (Kinetics downloads are
mostly H.264 mp4, some webm), decodes with FFmpeg's threads, and scales frames with swscale
while converting them to RGB, in one step; its wheels bring FFmpeg along, so nothing else needs
installing. OpenCV would also decode, but through a larger package whose video backend varies by
platform.
"""

import numpy as np

from ...errors import Yt8mError
from ...fileio import atomic_path


class VideoError(Yt8mError):
    """A video file that cannot be used; the message names the file and the problem."""


def scaled_size(width, height, short_side, long_side=None):
    """(width, height) with the short side at `short_side` and the long side at `long_side`, or
    with the aspect ratio kept (even sizes) when `long_side` is None."""
    if long_side:
        return (long_side, short_side) if width >= height else (short_side, long_side)
    scale = short_side / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def read_frames(path, short_side=None, long_side=None):
    """Every frame of `path` as uint8 RGB `(frames, height, width, 3)`, scaled (bilinear) to
    `short_side` and `long_side` when given (see `scaled_size`)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = []
            for frame in container.decode(stream):
                size = {}
                if short_side:
                    width, height = scaled_size(frame.width, frame.height, short_side,
                                                long_side)
                    size = {"width": width, "height": height}
                frames.append(frame.to_ndarray(format="rgb24", interpolation="BILINEAR", **size))
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path}: cannot decode ({type(e).__name__}: {e})") from None
    if not frames:
        raise VideoError(f"{path}: no frames could be decoded")
    return np.stack(frames)


def write_video(path, frames, fps=12, crf=18):
    """Encode uint8 RGB `(frames, height, width, 3)` as H.264 mp4 (written atomically)."""
    import av

    frames = np.asarray(frames, np.uint8)
    height, width = frames.shape[1:3]
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
