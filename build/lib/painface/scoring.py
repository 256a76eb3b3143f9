"""From per-crop probabilities to per-minute pain probability (paper step 6).

- ``fuse_cameras``: where both cameras see the face, sum each class's probability over
  the cameras and the larger sum wins; one camera: its prediction; none: skipped.
- ``pain_probability_per_minute``: per minute (fps x 60 frames) count pain, no-pain and
  skipped frames; pain probability = pain / (pain + no pain), empty (NaN) without faces.
- ``wilson_interval``: a confidence interval for each minute's proportion (beyond the paper).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from painface import defaults
from painface.errors import PainfaceError


class ScoringError(PainfaceError):
    """A bad scoring setting (e.g. a temperature)."""


def is_pain(p_pain) -> np.ndarray:
    """The paper's decision for one image: the larger class wins; a tie (p = 0.5) is no pain."""
    p = p_pain if hasattr(p_pain, "dtype") else np.asarray(p_pain)  # numpy, pandas or torch
    return p > defaults.PAIN_CUTOFF


def fuse_cameras(pred: pd.DataFrame) -> pd.DataFrame:
    """One row per (session_id, frame) with at least one face.

    ``pred`` has session_id, camera, frame, p_pain. Returns session_id, frame,
    n_cameras, sum_pain, sum_no_pain and ``pain`` (bool: the larger summed class).
    """
    p = pred.assign(p_no_pain=1.0 - pred["p_pain"])
    g = p.groupby(["session_id", "frame"], sort=True)
    out = g.agg(
        n_cameras=("camera", "nunique"), sum_pain=("p_pain", "sum"), sum_no_pain=("p_no_pain", "sum")
    ).reset_index()
    # the larger summed probability wins; an exact tie (0.5 vs 0.5) counts as no pain
    out["pain"] = out["sum_pain"] > out["sum_no_pain"]
    return out


def pain_probability_per_minute(
    fused: pd.DataFrame, n_frames: int, fps: float, treatment_time_s: float = 0.0, bin_s: float = 60.0
) -> pd.DataFrame:
    """Tally one session's fused frames per minute (paper step 6), or per ``bin_s`` seconds.

    ``n_frames`` is the recording's length, so frames where no camera saw a face count as
    skipped. ``minute`` is measured from the treatment: -1 is the minute before it; with
    another bin width it is the bin's start in minutes (per 10 s: ..., -0.1667, 0, 0.1667).
    """
    per_min = int(round(fps * bin_s))
    if per_min < 1:
        raise ScoringError(f"bin width {bin_s:g} s is shorter than one frame at {fps:g} fps")
    frames = np.arange(n_frames)
    state = np.full(n_frames, -1)  # -1 skipped, 0 no pain, 1 pain
    f = fused["frame"].to_numpy(int)
    keep = f < n_frames
    state[f[keep]] = fused["pain"].to_numpy(bool)[keep].astype(int)
    offset = int(round(treatment_time_s * fps))
    minute = np.floor((frames - offset) / per_min).astype(int)
    if bin_s != 60:
        minute = minute * (bin_s / 60.0)
    df = pd.DataFrame({"minute": minute, "state": state})
    counts = df.groupby("minute")["state"].agg(
        pain=lambda s: int((s == 1).sum()),
        no_pain=lambda s: int((s == 0).sum()),
        skipped=lambda s: int((s == -1).sum()),
    )
    counts = counts.reset_index()
    faces = counts["pain"] + counts["no_pain"]
    counts["pain_probability"] = np.where(faces > 0, counts["pain"] / faces.where(faces > 0, 1), np.nan)
    lo, hi = wilson_interval(counts["pain"].to_numpy(), faces.to_numpy())
    counts["ci_low"], counts["ci_high"] = lo, hi
    return counts


def wilson_interval(successes, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (statsmodels' ``proportion_confint``); NaN where n == 0."""
    from statsmodels.stats.proportion import proportion_confint

    k = np.asarray(successes, float)
    n = np.asarray(n, float)
    safe = np.where(n > 0, n, 1.0)
    lo, hi = proportion_confint(np.minimum(k, safe), safe, alpha=1 - confidence, method="wilson")
    # the exact endpoints at k = 0 and k = n are 0 and 1; do not let rounding move them
    lo = np.where(k == 0, 0.0, np.clip(lo, 0, 1))
    hi = np.where(k == n, 1.0, np.clip(hi, 0, 1))
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)
