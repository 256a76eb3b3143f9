"""The recording manifest: one row per session and camera.

The synthetic generator writes it and extraction reads it, so the format is defined
here once. Paths in the manifest are resolved relative to the manifest's folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from painface.errors import PainfaceError
from painface.files import atomic_write

REQUIRED_COLUMNS = (
    "session_id",
    "mouse_id",
    "sex",
    "strain",
    "treatment",
    "phase",
    "camera",
    "video",
    "fps",
    "treatment_time_s",
)
OPTIONAL_COLUMNS = ("keypoints", "label", "frame_offset")
PHASES = ("pre", "post")
LABELS = ("pain", "no_pain", "empty")


class ManifestError(PainfaceError):
    """A manifest that cannot be used; the message names the file, row and column."""


def default_label(phase: str) -> str:
    # Weak labels (paper step 4): every pre-injection frame is "no pain", every post frame "pain".
    return "no_pain" if phase == "pre" else "pain"


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read and validate a manifest CSV; video and keypoint paths become absolute."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        df = pd.read_csv(path, dtype={"session_id": str, "mouse_id": str, "camera": str})
    except Exception as exc:  # pandas raises several types for unreadable CSVs
        raise ManifestError(f"{path}: cannot read manifest ({exc})") from exc
    return validate_manifest(df, source=str(path), root=path.parent)


def validate_manifest(df: pd.DataFrame, source: str = "manifest", root: Path | None = None) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing column '{missing[0]}' (required: {', '.join(REQUIRED_COLUMNS)})")
    df = df.copy()
    for col in OPTIONAL_COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    for i, row in df.iterrows():
        line = i + 2  # 1-based, after the header row
        for col in REQUIRED_COLUMNS:
            if pd.isna(row[col]) or str(row[col]).strip() == "":
                raise ManifestError(f"{source}: row {line}, column '{col}' is empty")
        if row["phase"] not in PHASES:
            raise ManifestError(
                f"{source}: row {line}, column 'phase': unknown phase '{row['phase']}' (use one of {PHASES})"
            )
        if not pd.isna(row["label"]) and row["label"] not in LABELS:
            raise ManifestError(
                f"{source}: row {line}, column 'label': unknown label '{row['label']}' (use one of {LABELS})"
            )
        for col in ("fps", "treatment_time_s"):
            try:
                value = float(row[col])
            except (TypeError, ValueError):
                raise ManifestError(f"{source}: row {line}, column '{col}': not a number ({row[col]!r})") from None
            if not math.isfinite(value):
                raise ManifestError(f"{source}: row {line}, column '{col}': must be a finite number, got {row[col]!r}")
            if col == "fps" and value <= 0:
                raise ManifestError(f"{source}: row {line}, column 'fps': must be > 0, got {row[col]!r}")
    if df.empty:
        raise ManifestError(f"{source}: the manifest has a header but no rows")
    # two sessions whose names differ only in characters a file name cannot hold would share a store part
    from painface.store import unit_name

    units: dict[str, int] = {}
    for i, (sid, cam) in enumerate(zip(df["session_id"], df["camera"])):
        u = unit_name(str(sid), str(cam))
        if u in units and (df.at[units[u], "session_id"], df.at[units[u], "camera"]) != (sid, cam):
            j = units[u]
            raise ManifestError(
                f"{source}: rows {j + 2} and {i + 2}: sessions '{df.at[j, 'session_id']}' and '{sid}' "
                f"(camera {cam}) map to the same store part '{u}'; rename one"
            )
        units.setdefault(u, i)
    dup = df.duplicated(["session_id", "camera"], keep="first")
    if dup.any():
        i = int(dup.idxmax())
        raise ManifestError(
            f"{source}: row {i + 2}, columns 'session_id'/'camera': duplicate session/camera "
            f"({df.at[i, 'session_id']}, {df.at[i, 'camera']})"
        )
    for i, value in enumerate(df["frame_offset"]):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0  # not a number: refused below, naming the row
        if not pd.isna(value) and (not number.is_integer() or number < 0):
            raise ManifestError(
                f"{source}: row {i + 2}, column 'frame_offset': frames to drop must be >= 0, got {value!r}"
            )
    # frames dropped at the start of this camera's video so a session's cameras line up
    df["frame_offset"] = [0 if pd.isna(v) else int(float(v)) for v in df["frame_offset"]]
    df["fps"] = df["fps"].astype(float)
    df["treatment_time_s"] = df["treatment_time_s"].astype(float)
    df["label"] = [default_label(p) if pd.isna(lab) else lab for p, lab in zip(df["phase"], df["label"])]
    if root is not None:
        df["video"] = [str((root / v).resolve()) for v in df["video"]]
        df["keypoints"] = [pd.NA if pd.isna(k) else str((root / k).resolve()) for k in df["keypoints"]]
    return df.reset_index(drop=True)


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Write atomically, with paths relative to the manifest's folder where possible."""
    path = Path(path)
    out = df.copy()
    for col in ("video", "keypoints"):
        out[col] = [_relative(v, path.parent) for v in out[col]]
    with atomic_write(path) as tmp:
        out.to_csv(tmp, index=False)


def _relative(value, root: Path):
    if pd.isna(value):
        return value
    try:
        return str(Path(value).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(value)
