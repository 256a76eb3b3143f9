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
