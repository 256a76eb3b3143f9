"""``painface render``: a copy of a recording with the crop box, the keypoints and the
running pain probability drawn on it, so a person can check the results by eye."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from painface import defaults
from painface.errors import PainfaceError
from painface.files import temporary_name
from painface.predictions import read_predictions
from painface.scoring import is_pain
from painface.store import read_index, read_summaries
from painface.video import H264Writer, open_video

POINT_COLOURS = {"nose": (80, 220, 80), "right_eye": (60, 60, 255), "left_eye": (255, 120, 60)}


def render_annotated(
    video: str | Path,
    store: str | Path,
    predictions: str | Path,
    session_id: str,
    camera: str,
    out: str | Path,
    window_s: float = 10.0,
    threshold: float = defaults.LIKELIHOOD_THRESHOLD,
) -> Path:
    idx = read_index(store, verify=False)
    idx = idx[(idx.session_id == session_id) & (idx.camera == camera)].set_index("frame")
    if idx.empty:
        raise PainfaceError(f"{store}: no crops for session '{session_id}', camera '{camera}'")
    pred, _ = read_predictions(predictions, store)
    pred = pred[(pred.session_id == session_id) & (pred.camera == camera)].set_index("frame")["p_pain"]
    # the store counts a session's frames from the camera's frame_offset; draw on raw frames
    summaries = read_summaries(store)
    unit = summaries[(summaries.session_id == session_id) & (summaries.camera == camera)]
    offset = int(unit["frame_offset"].iloc[0]) if len(unit) and "frame_offset" in unit else 0
    idx.index = idx.index + offset
    pred.index = pred.index + offset
    cap, n, fps, (w, h) = open_video(video)
    # running pain probability: fraction of face frames called pain over the last window_s seconds
    called = pd.Series(np.nan, index=np.arange(n))
    called.loc[pred.index[pred.index < n]] = is_pain(pred[pred.index < n]).astype(float).to_numpy()
    running = called.rolling(int(max(window_s * fps, 1)), min_periods=1).mean().to_numpy()
    out = Path(out)
    tmp = temporary_name(out)
    writer = H264Writer(tmp, fps, (w, h))
    scale = max(h / 480, 0.8)
    for i in tqdm(range(n), desc=f"render {session_id}/{camera}", unit="frame"):
        ok, frame = cap.read()
        if not ok:
            break
        if i in idx.index:
            r = idx.loc[i]
            x0, y0, s = int(r.box_x0), int(r.box_y0), int(r.box_size)
            p = pred.get(i, np.nan)
            colour = (60, 60, 230) if is_pain(p) else (230, 160, 60)
            cv2.rectangle(frame, (x0, y0), (x0 + s, y0 + s), colour, max(1, int(2 * scale)))
            cv2.putText(
                frame,
                f"p(pain) {p:.2f}  rule {r.rule}",
                (x0, max(y0 - 6, 12)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5 * scale,
                colour,
                max(1, int(scale)),
                cv2.LINE_AA,
            )
            for name, c in POINT_COLOURS.items():
                # filled: a point the crop rules trusted; hollow: below the likelihood threshold
                filled = -1 if r[f"{name}_likelihood"] >= threshold else max(1, int(scale))
                cv2.circle(
                    frame, (int(r[f"{name}_x"]), int(r[f"{name}_y"])), max(2, int(3 * scale)), c, filled, cv2.LINE_AA
                )
        bar = running[i]
        cv2.rectangle(frame, (10, h - 30), (10 + int(200 * scale), h - 14), (60, 60, 60), -1)
        if np.isfinite(bar):
            cv2.rectangle(frame, (10, h - 30), (10 + int(200 * scale * bar), h - 14), (60, 60, 230), -1)
        text = f"pain, last {window_s:g} s: {bar:.2f}" if np.isfinite(bar) else "no face yet"
        cv2.putText(
            frame,
            text,
            (14 + int(200 * scale), h - 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45 * scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        writer.write(frame)
    writer.release()
    cap.release()
    os.replace(tmp, out)
    return out
