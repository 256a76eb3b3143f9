"""DeepLabCut in and out: read `analyze_videos` output, write it, and call DeepLabCut.

Every reader returns one tidy table: frame, bodypart, x, y, likelihood. The scorer
level is dropped and never hard-coded. DeepLabCut itself is imported lazily and run
in a subprocess (see ``painface.dlc_runner``) because it resets the root logger and
the global seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from painface.errors import PainfaceError

FACE_POINTS = ("nose", "right_eye", "left_eye")
DLC_H5_KEY = "df_with_missing"


class KeypointError(PainfaceError):
    """A DeepLabCut file that cannot be used; the message names the file."""


def read_dlc(path: str | Path, individual: str | None = None) -> pd.DataFrame:
    """Read DeepLabCut output (h5 or three/four-header-row CSV) into a tidy table.

    Single-animal files have columns scorer/bodyparts/coords; multi-animal files add an
    ``individuals`` level. For multi-animal files the first individual is used unless
    ``individual`` names one.
    """
    path = Path(path)
    if not path.is_file():
        raise KeypointError(f"{path}: DeepLabCut file not found")
    try:
        if path.suffix in (".h5", ".hdf5"):
            wide = pd.read_hdf(path)  # DLC writes a single key, "df_with_missing"
        elif path.suffix == ".csv":
            wide = _read_dlc_csv(path)
        else:
            raise KeypointError(f"{path}: not a DeepLabCut file (expected .h5 or .csv)")
    except KeypointError:
        raise
    except Exception as exc:
        raise KeypointError(f"{path}: cannot read DeepLabCut file ({type(exc).__name__}: {exc})") from exc
    return tidy_dlc(wide, source=str(path), individual=individual)


def _read_dlc_csv(path: Path) -> pd.DataFrame:
    with open(path) as fh:
        first = [fh.readline().split(",")[0].strip() for _ in range(4)]
    # DLC writes scorer/bodyparts/coords (and individuals for multi-animal) as header rows
    n_header = 4 if first[1] == "individuals" else 3
    return pd.read_csv(path, header=list(range(n_header)), index_col=0)


def tidy_dlc(wide: pd.DataFrame, source: str = "DeepLabCut table", individual: str | None = None) -> pd.DataFrame:
    cols = wide.columns
    if not isinstance(cols, pd.MultiIndex) or cols.nlevels not in (3, 4):
        raise KeypointError(f"{source}: columns are not DeepLabCut's scorer/bodyparts/coords header")
    names = [n if n else f"level{i}" for i, n in enumerate(cols.names)]
    if cols.nlevels == 4:
        ind_level = names.index("individuals") if "individuals" in names else 1
        inds = list(dict.fromkeys(cols.get_level_values(ind_level)))
        pick = individual or inds[0]
        if pick not in inds:
            raise KeypointError(f"{source}: individual '{pick}' not in file (has {inds})")
        wide = wide.xs(pick, axis=1, level=ind_level)
    wide = wide.droplevel(0, axis=1)  # the scorer: never hard-coded
    coords = set(wide.columns.get_level_values(1))
    for c in ("x", "y"):
        if c not in coords:
            raise KeypointError(f"{source}: missing coordinate '{c}' (has {sorted(coords)})")
    frames = _frame_numbers(wide.index)
    parts = list(dict.fromkeys(wide.columns.get_level_values(0)))
    out = []
    for bp in parts:
        x = pd.to_numeric(wide[(bp, "x")], errors="coerce").to_numpy(float)
        y = pd.to_numeric(wide[(bp, "y")], errors="coerce").to_numpy(float)
        if (bp, "likelihood") in wide.columns:
            like = pd.to_numeric(wide[(bp, "likelihood")], errors="coerce").to_numpy(float)
        else:  # hand-label files (CollectedData_*) have no likelihood: a label is certain
            like = np.where(np.isfinite(x) & np.isfinite(y), 1.0, 0.0)
        out.append(pd.DataFrame({"frame": frames, "bodypart": bp, "x": x, "y": y, "likelihood": like}))
    return pd.concat(out, ignore_index=True)


def _frame_numbers(index: pd.Index) -> np.ndarray:
    """DLC indexes video output by frame number; label files use image paths instead."""
    if pd.api.types.is_integer_dtype(index):
        return index.to_numpy(int)
    return np.arange(len(index))


def face_points(
    tidy: pd.DataFrame, bodypart_map: dict[str, str] | None = None, source: str = ""
) -> dict[str, np.ndarray]:
    """Pick the nose and both eyes as arrays of (n_frames, 3): x, y, likelihood.

    ``bodypart_map`` maps painface's face points onto the file's body parts,
    e.g. ``{"nose": "snout"}``; unmapped points use their own names.
    """
    bodypart_map = dict(bodypart_map or {})
    have = set(tidy["bodypart"].unique())
    n = int(tidy["frame"].max()) + 1 if len(tidy) else 0
    out = {}
    for point in FACE_POINTS:
        bp = bodypart_map.get(point, point)
        if bp not in have:
            raise KeypointError(f"{source}: body part '{bp}' (for {point}) missing; the file has {sorted(have)}")
        sub = tidy[tidy["bodypart"] == bp]
        arr = np.full((n, 3), np.nan)
        arr[sub["frame"].to_numpy(int)] = sub[["x", "y", "likelihood"]].to_numpy(float)
        like = arr[:, 2]
        bad = np.flatnonzero(np.isfinite(like) & ((like < 0) | (like > 1)))
        if len(bad):
            raise KeypointError(
                f"{source}: body part '{bp}', frame {bad[0]}: likelihood {like[bad[0]]:g} is outside [0, 1]"
            )
        bad = np.flatnonzero((np.nan_to_num(like) > 0) & ~np.isfinite(arr[:, :2]).all(axis=1))
        if len(bad):
            raise KeypointError(
                f"{source}: body part '{bp}', frame {bad[0]}: coordinates are not finite "
                f"(x={arr[bad[0], 0]}, y={arr[bad[0], 1]}) at likelihood {like[bad[0]]:g}"
            )
        out[point] = arr
    return out


def write_dlc(points: dict[str, np.ndarray], path_stem: str | Path, scorer: str) -> tuple[Path, Path]:
    """Write keypoints exactly as ``deeplabcut.analyze_videos`` does: h5 + three-row CSV.

    ``points`` maps body part -> (n_frames, 3) array of x, y, likelihood.
    """
    path_stem = Path(path_stem)
    parts = list(points)
    n = len(next(iter(points.values())))
    columns = pd.MultiIndex.from_product(
        [[scorer], parts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
    )
    data = np.concatenate([points[p] for p in parts], axis=1)
    df = pd.DataFrame(data, columns=columns, index=np.arange(n))
    h5 = path_stem.with_name(path_stem.name + scorer + ".h5")
    csv = path_stem.with_name(path_stem.name + scorer + ".csv")
    for target, write in (
        (h5, lambda p: df.to_hdf(p, key=DLC_H5_KEY, format="table", mode="w")),
        (csv, lambda p: df.to_csv(p)),
    ):
        tmp = target.with_name(target.name + ".tmp")
        write(tmp)
        tmp.replace(target)
    return h5, csv
