"""A study from predictions to results (paper Fig. 1): per-minute pain probability per
animal, group time courses (mean +- SEM), the post-window average with statistics,
figures and a self-contained HTML report.

The study file's ``analysis:`` section names the grouping column, the control group,
the group order, the time windows and the test::

    analysis:
      group_column: treatment
      control: vehicle
      order: [vehicle, ac_0.6, ac_1.0]
      windows: {pre: [-10, 0], post: [0, 30]}
      summary_window: post
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import yaml

from painface.errors import PainfaceError
from painface.files import atomic_write, study_path, write_json
from painface.predictions import read_predictions
from painface.scoring import fuse_cameras, pain_probability_per_minute
from painface.stats import compare_groups
from painface.store import read_index, read_summaries, store_meta


class StudyAnalysisError(PainfaceError):
    pass


@dataclass
class AnalysisSpec:
    group_column: str = "treatment"
    control: str = "vehicle"
    order: list = field(default_factory=list)
    windows: dict = field(default_factory=lambda: {"pre": [-10, 0], "post": [0, 30]})
    summary_window: str = "post"
    title: str = ""
    #: crossover design: every animal received every treatment, so conditions are compared
    #: within animals (paired t-test), as in the paper's CGRP experiment
    paired: bool = False
    #: the tally's bin width in seconds: per minute as the paper (60), or finer (10, 1)
    bin_s: float = 60.0


def load_analysis_spec(path: str | Path, time_scale: float = 1.0) -> tuple[str, AnalysisSpec, dict]:
    path = study_path(path)
    if not path.is_file():
        raise StudyAnalysisError(f"{path}: study file not found")
    doc = yaml.safe_load(path.read_text()) or {}
    raw = doc.get("analysis")
    if raw is None:
        raise StudyAnalysisError(f"{path}: no 'analysis:' section")
    known = {f.name for f in fields(AnalysisSpec)}
    for key in raw:
        if key not in known:
            raise StudyAnalysisError(f"{path}: analysis: unknown key '{key}' (known: {', '.join(sorted(known))})")
    spec = AnalysisSpec(**raw)
    for wname, w in spec.windows.items():
        if not (isinstance(w, (list, tuple)) and len(w) == 2 and all(isinstance(x, (int, float)) for x in w)):
            raise StudyAnalysisError(f"{path}: analysis.windows.{wname}: expected [start, end] in minutes, got {w!r}")
        if w[1] <= w[0]:
            raise StudyAnalysisError(
                f"{path}: analysis.windows.{wname}: [{w[0]:g}, {w[1]:g}] is empty (start must be < end)"
            )
    spec.windows = {k: [v[0] * time_scale, v[1] * time_scale] for k, v in spec.windows.items()}
    if spec.summary_window not in spec.windows:
        raise StudyAnalysisError(f"{path}: analysis.summary_window '{spec.summary_window}' is not one of the windows")
    return doc.get("name", path.stem), spec, doc


def per_minute_table(pred: pd.DataFrame, store: str | Path, bin_s: float = 60.0) -> pd.DataFrame:
    """Per session and minute: pain, no-pain, skipped frames and the pain probability."""
    summaries = read_summaries(store)
    if summaries.empty:
        raise StudyAnalysisError(f"{store}: the store has no extracted videos")
    meta_cols = ["session_id", "mouse_id", "sex", "strain", "treatment", "phase"]
    index = read_index(store, verify=False)
    session_meta = index.drop_duplicates("session_id").set_index("session_id")[meta_cols[1:]]
    sess = summaries.groupby("session_id").agg(
        frames=("frames", "max"), fps=("fps", "first"), treatment_time_s=("treatment_time_s", "first")
    )
    fused = fuse_cameras(pred)
    rows = []
    for session_id, info in sess.iterrows():
        f = fused[fused.session_id == session_id]
        t = pain_probability_per_minute(f, int(info.frames), float(info.fps), float(info.treatment_time_s), bin_s)
        t.insert(0, "session_id", session_id)
        rows.append(t)
    table = pd.concat(rows, ignore_index=True)
    return table.merge(session_meta, left_on="session_id", right_index=True, how="left")


def window_average(per_minute: pd.DataFrame, window, group_column: str) -> pd.DataFrame:
    """Each animal's mean per-minute pain probability over a window (paper: 30-min average)."""
    lo, hi = window
    w = per_minute[(per_minute.minute >= lo) & (per_minute.minute < hi)]
    return w.groupby(["mouse_id", group_column])["pain_probability"].mean().rename("pain_probability").reset_index()


def window_statistics(per_animal: pd.DataFrame, col: str, order: list, spec: AnalysisSpec) -> pd.DataFrame:
    groups = {g: per_animal.loc[per_animal[col] == g, "pain_probability"].to_numpy() for g in order}
    subjects = {g: per_animal.loc[per_animal[col] == g, "mouse_id"].tolist() for g in order} if spec.paired else None
    return compare_groups(groups, spec.control, subjects)


def analyze_study(
    study_file: str | Path,
    predictions: str | Path,
    store: str | Path,
    out: str | Path,
    time_scale: float = 1.0,
    template: str | Path | None = None,
) -> Path:
    """Write per-minute and per-animal tables, statistics, figures and report.html."""
    name, spec, doc = load_analysis_spec(study_file, time_scale)
    pred, pmeta = read_predictions(predictions, store)
    per_minute = per_minute_table(pred, store, spec.bin_s)
    col = spec.group_column
    if col not in per_minute.columns:
        raise StudyAnalysisError(f"{study_file}: analysis.group_column '{col}' is not a manifest/index column")
    present = list(dict.fromkeys(per_minute[col].dropna()))
    order = spec.order or sorted(present)
    for g in order + [spec.control]:
        if g not in present:
            raise StudyAnalysisError(f"{study_file}: group '{g}' not found in column '{col}' (have {sorted(present)})")
    # every window is tested (Fig. 1A: the pre window shows no difference; Fig. 1C: post)
    by_window = {}
    for wname, window in spec.windows.items():
        avg = window_average(per_minute, window, col)
        if avg.empty:
            raise StudyAnalysisError(
                f"{study_file}: analysis.windows.{wname}: no minutes of the recordings fall in {window}"
            )
        by_window[wname] = (avg, window_statistics(avg, col, order, spec))
    per_animal, stats_table = by_window[spec.summary_window]
    all_stats = pd.concat(
        [t.assign(window=w, window_min=str(spec.windows[w])) for w, (_, t) in by_window.items()], ignore_index=True
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(per_minute, out / "per_minute.csv")
    _write_csv(
        pd.concat([a.assign(window=w) for w, (a, _) in by_window.items()], ignore_index=True),
        out / "per_animal_windows.csv",
    )
    _write_csv(per_animal, out / "per_animal.csv")
    _write_csv(stats_table, out / "statistics.csv")
    _write_csv(all_stats, out / "statistics_windows.csv")
    from painface import report

    figs = {
        "time_course": report.time_course_figure(
            per_minute, col, order, out / "time_course.png", title=spec.title or name, windows=spec.windows
        ),
        "window_average": report.window_average_figure(
            per_animal, col, order, stats_table, out / "window_average.png", window=spec.windows[spec.summary_window]
        ),
    }
    smeta = store_meta(store)
    provenance = {
        "study file": str(Path(study_file).resolve()),
        "predictions": str(Path(predictions).resolve()),
        "checkpoint": pmeta.get("checkpoint", "?"),
        "checkpoint sha256 (head)": pmeta.get("checkpoint_sha", "?"),
        "store": str(Path(store).resolve()),
        "store id": smeta.get("store_id", "?"),
        "store schema version": smeta.get("schema_version"),
        "time scale": time_scale,
    }
    hparams = json.loads(pmeta.get("hparams", "{}"))
    methods = report.methods_paragraph(
        spec, hparams, doc.get("generate"), stats_table, per_animal["mouse_id"].nunique(), smeta
    )
    # what `painface review` needs to find the study's inputs again
    write_json(
        out / "provenance.json",
        {
            **provenance,
            "name": name,
            "group_column": col,
            "order": order,
            "control": spec.control,
            "bin_s": spec.bin_s,
        },
        default=str,
    )
    write_workbook(out / "results.xlsx", per_minute, by_window, all_stats, col, order, spec, name, methods)
    report.write_report(
        out / "report.html",
        name,
        doc.get("description", ""),
        figs,
        all_stats,
        per_animal,
        provenance,
        methods,
        per_minute,
        template=template,
    )
    return out / "report.html"


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as tmp:
        df.to_csv(tmp, index=False)


__all__ = ["analyze_study", "per_minute_table", "window_average", "load_analysis_spec", "StudyAnalysisError"]


def write_workbook(
    path: Path,
    per_minute: pd.DataFrame,
    by_window: dict,
    all_stats: pd.DataFrame,
    col: str,
    order: list,
    spec: AnalysisSpec,
    name: str,
    methods: str | None = None,
) -> Path:
    """``results.xlsx``: one wide sheet per measure, laid out as GraphPad Prism's grouped
    tables expect (rows = time or window, one column block per group, one column per animal),
    then the statistics."""
    animal = per_minute.groupby([col, "mouse_id", "minute"])["pain_probability"].mean()
    sheets = {}
    time_wide = animal.unstack([col, "mouse_id"])
    sheets["per_bin" if spec.bin_s != 60 else "per_minute"] = time_wide[
        [c for g in order for c in time_wide.columns if c[0] == g]
    ]
    windows = pd.concat(
        {w: a.set_index([col, "mouse_id"])["pain_probability"] for w, (a, _) in by_window.items()}, axis=1
    ).T
    sheets["windows"] = windows[[c for g in order for c in windows.columns if c[0] == g]]
    with atomic_write(path) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xl:
            for sheet, table in sheets.items():
                table.index.name = "minute" if sheet != "windows" else "window"
                table.to_excel(xl, sheet_name=sheet)
            all_stats.to_excel(xl, sheet_name="statistics", index=False)
            about = pd.DataFrame(
                {
                    "": [
                        name,
                        f"pain probability per {spec.bin_s:g} s bin, time from treatment in "
                        f"minutes; columns: {col} / animal",
                        *(filter(None, [methods])),
                    ]
                }
            )
            about.to_excel(xl, sheet_name="about", index=False, header=False)
            xl.book.properties.creator = "painface"
    return path
