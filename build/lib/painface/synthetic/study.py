"""Whole synthetic studies from a YAML file in ``experiments/`` (paper Fig. 1 designs).

The ``generate:`` section of a study file is read here; its ``analysis:`` section is
read by ``painface.analysis``. Each mouse gets a "pre" session and a "post" session
(the injection happens between them), filmed by one or two cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from painface.errors import PainfaceError
from painface.files import study_path
from painface.manifest import write_manifest
from painface.procs import worker_pool
from painface.synthetic.recording import DLC_SCORER, SessionSpec, make_mouse, render_session
from painface.synthetic.render import ACTION_UNITS


class StudyError(PainfaceError):
    pass


@dataclass
class GroupSpec:
    n: int = 5
    females: int = 0
    strain: str | None = None
    #: (minutes since injection, intensity) knots
    timeline: list = field(default_factory=list)


@dataclass
class GenerateSpec:
    seed: int = 0
    strain: str = "BALB/c"
    fps: float = 15.0
    width: int = 640
    height: int = 360
    cameras: int = 2
    pre_min: float = 10.0
    post_min: float = 30.0
    zero_fraction: float = 0.05
    signal: float = 1.0
    au_weights: dict = field(default_factory=lambda: {au: 1.0 for au in ACTION_UNITS})
    groups: dict = field(default_factory=dict)
    #: crossover: the same animals receive every group's treatment, in random order, days
    #: apart (the paper's CGRP experiment); every group then needs the same n and females
    crossover: bool = False


def _build(cls, data: dict, where: str):
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise StudyError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
    return cls(**data)


def load_generate_spec(path: str | Path, **overrides) -> tuple[str, GenerateSpec]:
    """Read and validate a study's ``generate:`` section; overrides replace its keys."""
    path = study_path(path)
    if not path.is_file():
        raise StudyError(f"{path}: study file not found")
    doc = yaml.safe_load(path.read_text()) or {}
    if "generate" not in doc:
        raise StudyError(f"{path}: no 'generate:' section")
    gen = dict(doc["generate"])
    gen.update({k: v for k, v in overrides.items() if v is not None})
    spec = _build(GenerateSpec, gen, f"{path}: generate")
    spec.groups = {
        name: _build(GroupSpec, g or {}, f"{path}: generate.groups.{name}") for name, g in spec.groups.items()
    }
    for au in spec.au_weights:
        if au not in ACTION_UNITS:
            raise StudyError(
                f"{path}: generate.au_weights: unknown action unit '{au}' (known: {', '.join(ACTION_UNITS)})"
            )
    if not spec.groups:
        raise StudyError(f"{path}: generate.groups is empty")
    if spec.crossover and len({(g.n, g.females) for g in spec.groups.values()}) > 1:
        raise StudyError(f"{path}: generate.crossover: every group must have the same n and females (the same animals)")
    return doc.get("name", path.stem), spec


def session_specs(spec: GenerateSpec, mice_per_group: int | None = None, time_scale: float = 1.0) -> list[SessionSpec]:
    """Every session of the study, each with its own seed derived from the study seed.

    ``time_scale`` shrinks durations and the pain timeline together (demo and tests).
    """
    out = []
    weights = {au: float(spec.au_weights.get(au, 0.0)) for au in ACTION_UNITS}
    for g_index, (group, g) in enumerate(spec.groups.items()):
        n = min(g.n, mice_per_group) if mice_per_group else g.n
        females = min(g.females, n) if not mice_per_group else int(round(g.females * n / max(g.n, 1)))
        for i in range(n):
            mouse_id = f"m{i + 1:02d}" if spec.crossover else f"{group}_m{i + 1:02d}"
            # crossover: one individual (face, coat, sensitivity) across the groups, its own sessions per group
            rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0 if spec.crossover else g_index, i]))
            sex = "female" if i >= n - females else "male"
            mouse = make_mouse(mouse_id, sex, g.strain or spec.strain, rng)
            sensitivity = float(rng.uniform(0.85, 1.15))
            if spec.crossover:
                rng = np.random.default_rng(np.random.SeedSequence([spec.seed, g_index, i, 1]))
            prefix = f"{group}_{mouse_id}" if spec.crossover else mouse_id
            for phase, minutes in (("pre", spec.pre_min * time_scale), ("post", spec.post_min * time_scale)):
                if minutes <= 0:  # e.g. a pretreatment study filmed only after the injection
                    continue
                out.append(
                    SessionSpec(
                        session_id=f"{prefix}_{phase}",
                        mouse=mouse,
                        phase=phase,
                        treatment=group,
                        seconds=minutes * 60.0,
                        fps=spec.fps,
                        width=spec.width,
                        height=spec.height,
                        cameras=spec.cameras,
                        timeline=[(k[0] * time_scale, k[1]) for k in g.timeline],
                        zero_fraction=spec.zero_fraction,
                        signal=spec.signal,
                        au_weights=weights,
                        sensitivity=sensitivity,
                        seed=int(rng.integers(2**31)),
                    )
                )
    return out


def _render_one(args):
    spec, out_dir = args
    return render_session(spec, out_dir)


def generate_study(
    study_file: str | Path,
    out_dir: str | Path,
    workers: int = 1,
    mice_per_group: int | None = None,
    show_progress: bool = True,
    time_scale: float = 1.0,
    **overrides,
) -> Path:
    """Render a whole study and write ``manifest.csv``; returns the manifest path.

    Sessions whose video and ground truth already exist are skipped, so an interrupted
    run can simply be started again.
    """
    name, spec = load_generate_spec(study_file, **overrides)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sessions = session_specs(spec, mice_per_group, time_scale)
    todo = [s for s in sessions if not (out_dir / f"{s.session_id}_truth.parquet").exists()]
    bar = tqdm(
        total=len(sessions),
        desc=f"synth {name}",
        unit="session",
        disable=not show_progress,
        initial=len(sessions) - len(todo),
    )
    if workers > 1 and len(todo) > 1:
        with worker_pool(workers) as pool:
            for _ in pool.map(_render_one, [(s, out_dir) for s in todo]):
                bar.update()
    else:
        for s in todo:
            render_session(s, out_dir)
            bar.update()
    bar.close()
    rows = []
    for s in sessions:
        for cam in range(s.cameras):
            video = out_dir / f"{s.session_id}_cam{cam + 1}.mp4"
            rows.append(
                {
                    "session_id": s.session_id,
                    "mouse_id": s.mouse.mouse_id,
                    "sex": s.mouse.sex,
                    "strain": s.mouse.strain,
                    "treatment": s.treatment,
                    "phase": s.phase,
                    "camera": f"cam{cam + 1}",
                    "video": str(video),
                    "keypoints": str(out_dir / f"{video.stem}{DLC_SCORER}.h5"),
                    "fps": s.fps,
                    "treatment_time_s": s.treatment_time_s,
                }
            )
    manifest = out_dir / "manifest.csv"
    write_manifest(pd.DataFrame(rows), manifest)
    return manifest
