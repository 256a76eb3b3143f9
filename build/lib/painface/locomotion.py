"""Locomotor activity (paper step 9): moving distance per second from a top-view video.

The animal's centroid is tracked by background subtraction: the background is the
per-pixel median of frames sampled across the video (the animal moves, the arena
does not); the animal is the largest blob that differs from it, after a morphological
opening that removes the thin tail.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from painface.errors import PainfaceError
from painface.files import atomic_write
from painface.video import open_video


def background(video: str | Path, n_samples: int = 40) -> np.ndarray:
    cap, n, _, _ = open_video(video)
    frames = []
    for i in np.linspace(0, max(n - 1, 0), n_samples).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
        ok, f = cap.read()
        if ok:
            frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    cap.release()
    if not frames:
        raise LocomotionError(f"{video}: no decodable frames for the background")
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def centroid(
    gray: np.ndarray, bg: np.ndarray, threshold: int = 40, open_px: int | None = None
) -> tuple[float, float, int]:
    """(x, y, area) of the largest foreground blob; NaNs when there is none."""
    diff = cv2.absdiff(gray, bg)
    _, mask = cv2.threshold(diff, threshold, 255, cv2.THRESH_BINARY)
    k = open_px or max(3, int(round(gray.shape[0] / 60)) | 1)  # ~ tail width x 2 at this resolution
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask)
    if n <= 1:
        return np.nan, np.nan, 0
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return float(cents[best][0]), float(cents[best][1]), int(stats[best, cv2.CC_STAT_AREA])


def track(video: str | Path, threshold: int = 40, show_progress: bool = True) -> pd.DataFrame:
    """Per-frame centroid track of the animal."""
    bg = background(video)
    cap, n, fps, _ = open_video(video)
    rows = []
    for i in tqdm(range(n), desc=f"track {Path(video).name}", unit="frame", disable=not show_progress):
        ok, f = cap.read()
        if not ok:
            break
        x, y, area = centroid(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), bg, threshold)
        rows.append((i, i / fps, x, y, area))
    cap.release()
    return pd.DataFrame(rows, columns=["frame", "time_s", "x", "y", "area"]).assign(fps=fps)


def distance_per_second(tr: pd.DataFrame, cm_per_pixel: float | None = None, min_step_px: float = 0.0) -> pd.DataFrame:
    """Distance moved in each second; gaps are interpolated, tiny steps (< min_step_px) are
    treated as tracking jitter and not counted."""
    xy = tr[["x", "y"]].interpolate(limit_direction="both").to_numpy()
    step = np.r_[0.0, np.hypot(*np.diff(xy, axis=0).T)]
    step[step < min_step_px] = 0.0
    second = (tr["time_s"].to_numpy() // 1).astype(int)
    out = pd.DataFrame({"second": second, "distance_px": step}).groupby("second")["distance_px"].sum().reset_index()
    if cm_per_pixel:
        out["distance_cm"] = out["distance_px"] * cm_per_pixel
    return out


def locomotion_report(
    video: str | Path, out: str | Path, cm_per_pixel: float | None = None, threshold: int = 40
) -> Path:
    """Track, write the per-frame track and per-second distance CSVs and a figure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tr = track(video, threshold)
    dist = distance_per_second(tr, cm_per_pixel, min_step_px=0.5)
    stem = Path(video).stem
    _write_csv(tr, out / f"{stem}_track.csv")
    _write_csv(dist, out / f"{stem}_distance_per_second.csv")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.imshow(background(video), cmap="gray")
    a.plot(tr["x"], tr["y"], lw=0.7, color="#d55e00")
    a.set_title("centroid track")
    a.axis("off")
    col = "distance_cm" if cm_per_pixel else "distance_px"
    b.bar(dist["second"], dist[col], width=1.0, color="#0072b2")
    b.set_xlabel("time (s)")
    b.set_ylabel(f"distance per second ({'cm' if cm_per_pixel else 'px'})")
    fig.tight_layout()
    path = out / f"{stem}_locomotion.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class LocomotionError(PainfaceError):
    """A bad group table; the message names the file and the column or row."""


def compare_locomotion(
    table: str | Path,
    out: str | Path,
    control: str,
    group_column: str = "group",
    cm_per_pixel: float | None = None,
    threshold: int = 40,
    window_s=None,
) -> pd.DataFrame:
    """Per-animal mean moving distance per second, compared between groups (paper step 7 tests).

    ``table``: a CSV with one top-view video per animal: columns ``video``, ``animal`` and
    the group column. ``window_s``: (start, end) seconds of each video to average over.
    Writes per_animal.csv, statistics.csv and locomotion_groups.png; returns the statistics.
    """
    from painface.report import window_average_figure
    from painface.stats import compare_groups

    table = Path(table)
    rows = pd.read_csv(table)
    for col in ("video", "animal", group_column):
        if col not in rows.columns:
            raise LocomotionError(f"{table}: missing column '{col}'")
    unit = "cm" if cm_per_pixel else "px"
    values = []
    for r in tqdm(rows.to_dict("records"), desc="locomotion", unit="video"):
        video = Path(r["video"]) if Path(r["video"]).is_absolute() else table.parent / r["video"]
        dist = distance_per_second(track(video, threshold, show_progress=False), cm_per_pixel, min_step_px=0.5)
        if window_s is not None:
            dist = dist[(dist["second"] >= window_s[0]) & (dist["second"] < window_s[1])]
        values.append(dist[f"distance_{unit}"].mean())
    per_animal = pd.DataFrame(
        {"animal": rows["animal"], group_column: rows[group_column].astype(str), f"distance_{unit}_per_s": values}
    )
    order = [control] + sorted(set(per_animal[group_column]) - {control})
    stats_table = compare_groups(
        {g: per_animal.loc[per_animal[group_column] == g, f"distance_{unit}_per_s"].to_numpy() for g in order}, control
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(per_animal, out / "per_animal.csv")
    _write_csv(stats_table, out / "statistics.csv")
    window_average_figure(
        per_animal,
        group_column,
        order,
        stats_table,
        out / "locomotion_groups.png",
        value=f"distance_{unit}_per_s",
        ylabel=f"moving distance ({unit}/s)",
    )
    return stats_table


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    """Write under a temporary name, then rename: never a half-written CSV."""
    with atomic_write(path) as tmp:
        df.to_csv(tmp, index=False)
