"""One command for a whole synthetic study: render -> extract -> score -> analyze -> report."""

from __future__ import annotations

from pathlib import Path

from painface.analysis import analyze_study
from painface.extract import ExtractConfig, extract
from painface.predict import score
from painface.synthetic.study import StudyError, generate_study


def run_study(
    study_file: str | Path,
    ckpt_path: str | Path,
    out: str | Path,
    workers: int = 2,
    mice_per_group: int | None = None,
    time_scale: float = 1.0,
    crop_size: int = 128,
    show_progress: bool = True,
    **overrides,
) -> Path:
    out = Path(out)
    manifest = generate_study(
        study_file,
        out / "videos",
        workers=workers,
        mice_per_group=mice_per_group,
        show_progress=show_progress,
        time_scale=time_scale,
        **overrides,
    )
    _, errors = extract(
        manifest, out / "store", ExtractConfig(crop_size=crop_size, workers=workers), show_progress=show_progress
    )
    if errors:
        raise StudyError("extraction failed: " + "; ".join(errors))
    score(ckpt_path, store=out / "store", out=out / "predictions.parquet")
    return analyze_study(study_file, out / "predictions.parquet", out / "store", out / "results", time_scale=time_scale)
