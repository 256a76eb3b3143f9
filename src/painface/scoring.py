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
from scipy.stats import norm

from painface.errors import PainfaceError


class ScoringError(PainfaceError):
    """A bad scoring setting (e.g. a temperature)."""


def is_pain(p_pain) -> np.ndarray:
    """The paper's decision for one image: the larger class wins; a tie (p = 0.5) is no pain."""
    return np.asarray(p_pain) > 0.5


def fuse_cameras(pred: pd.DataFrame) -> pd.DataFrame:
    """One row per (session_id, frame) with at least one face.

    ``pred`` has session_id, camera, frame, p_pain. Returns session_id, frame,
    n_cameras, sum_pain, sum_no_pain and ``pain`` (bool: the larger summed class).
    """
    p = pred.assign(p_no_pain=1.0 - pred["p_pain"])
    g = p.groupby(["session_id", "frame"], sort=True)
    out = g.agg(n_cameras=("camera", "nunique"), sum_pain=("p_pain", "sum"), sum_no_pain=("p_no_pain", "sum")).reset_index()
    # the larger summed probability wins; an exact tie (0.5 vs 0.5) counts as no pain
    out["pain"] = out["sum_pain"] > out["sum_no_pain"]
    return out


def pain_probability_per_minute(fused: pd.DataFrame, n_frames: int, fps: float, treatment_time_s: float = 0.0) -> pd.DataFrame:
    """Tally one session's fused frames per minute.

    ``n_frames`` is the recording's length, so frames where no camera saw a face count as
    skipped. ``minute`` is measured from the treatment: -1 is the minute before it.
    """
    per_min = int(round(fps * 60))
    frames = np.arange(n_frames)
    state = np.full(n_frames, -1)  # -1 skipped, 0 no pain, 1 pain
    f = fused["frame"].to_numpy(int)
    keep = f < n_frames
    state[f[keep]] = fused["pain"].to_numpy(bool)[keep].astype(int)
    offset = int(round(treatment_time_s * fps))
    minute = np.floor((frames - offset) / per_min).astype(int)
    df = pd.DataFrame({"minute": minute, "state": state})
    counts = df.groupby("minute")["state"].agg(
        pain=lambda s: int((s == 1).sum()), no_pain=lambda s: int((s == 0).sum()), skipped=lambda s: int((s == -1).sum()))
    counts = counts.reset_index()
    faces = counts["pain"] + counts["no_pain"]
    counts["pain_probability"] = np.where(faces > 0, counts["pain"] / faces.where(faces > 0, 1), np.nan)
    lo, hi = wilson_interval(counts["pain"].to_numpy(), faces.to_numpy())
    counts["ci_low"], counts["ci_high"] = lo, hi
    return counts


def wilson_interval(successes, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval; NaN where n == 0."""
    k = np.asarray(successes, float)
    n = np.asarray(n, float)
    z = norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the exact endpoints at k = 0 and k = n are 0 and 1; do not let rounding move them
    lo = np.where(k == 0, 0.0, np.clip(centre - half, 0, 1))
    hi = np.where(k == n, 1.0, np.clip(centre + half, 0, 1))
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017) on held-out mice: the T that minimises NLL."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, float)
    labels = np.asarray(labels, int)

    def nll(log_t):
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(labels)), labels].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def apply_temperature(p_pain: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale p(pain) by a fitted temperature: sigmoid(logit(p) / T)."""
    if not temperature > 0:
        raise ScoringError(f"temperature must be positive, got {temperature}")
    p = np.clip(np.asarray(p_pain, float), 1e-7, 1 - 1e-7)
    return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE of p(pain) against binary labels, as in the reliability diagram: over equal-width
    bins of p, the share-weighted |observed pain fraction - mean p(pain)| (torchmetrics'
    binary definition)."""
    p = np.asarray(p, float)
    y = np.asarray(y, float)
    bins = np.searchsorted(np.linspace(0, 1, n_bins + 1), p, side="right") - 1
    ece = 0.0
    for b in np.unique(bins):
        m = bins == b
        ece += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(ece)
