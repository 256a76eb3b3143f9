"""Opening and reading videos, with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2

from painface.errors import PainfaceError


class VideoError(PainfaceError):
    """A video that cannot be decoded; the message names the file."""


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, int, float, tuple[int, int]]:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video not found")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: video is empty (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: cannot open video (corrupt or unsupported codec)")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if size[0] == 0 or size[1] == 0:
        raise VideoError(f"{path}: video has no decodable frames")
    return cap, n, fps, size


class H264Writer:
    """An H.264 MP4 that browsers play (OpenCV's pip wheel can only write mp4v), through the
    ffmpeg that imageio-ffmpeg ships; the same ``write``/``release`` as cv2.VideoWriter."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]):
        import imageio_ffmpeg

        # yuv420p (what browsers decode) needs even sides; ffmpeg pads by at most one pixel
        self._frames = imageio_ffmpeg.write_frames(
            str(path),
            size,
            fps=fps,
            codec="libx264",
            pix_fmt_in="bgr24",
            pix_fmt_out="yuv420p",
            quality=7,
            macro_block_size=2,
            ffmpeg_log_level="error",
            output_params=["-movflags", "+faststart"],
        )
        self._frames.send(None)

    def write(self, frame_bgr) -> None:
        import numpy as np

        self._frames.send(np.ascontiguousarray(frame_bgr))

    def release(self) -> None:
        self._frames.close()
