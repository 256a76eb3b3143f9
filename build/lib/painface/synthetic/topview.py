"""Synthetic top-view locomotion studies (the paper's supporting experiment, step 9).

A white mouse (an ellipse with a thin tail) walks in a black square arena filmed from
above. Each second it is either resting or walking at a speed drawn for its group, and
turns smoothly; walls reflect it. The true body centre is written per frame, so
``painface locomotion`` can be checked against the distance actually travelled.

The study file's ``topview:`` section::

    topview:
      seed: 21
      fps: 30
      width: 1920
      height: 1080
      arena_cm: 50          # a 50 x 50 cm arena ...
      field_cm: 60          # ... in a field of view 60 cm tall (camera 110 cm above)
      minutes: 30
      groups:
        vehicle: {n: 6, females: 0, move_fraction: 0.55, speed_cm_s: 9.0}
        ac_1.0:  {n: 6, females: 0, move_fraction: 0.25, speed_cm_s: 6.0}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from painface.errors import PainfaceError
from painface.files import atomic_write, study_path
from painface.synthetic.study import _build


class TopviewError(PainfaceError):
    pass


@dataclass
class TopviewGroup:
    n: int = 6
    females: int = 0
    move_fraction: float = 0.5  # share of seconds spent walking
    speed_cm_s: float = 8.0  # mean walking speed


@dataclass
class TopviewSpec:
    seed: int = 0
    fps: float = 30.0
    width: int = 1920
    height: int = 1080
    arena_cm: float = 50.0
    field_cm: float = 60.0
    minutes: float = 30.0
    groups: dict = field(default_factory=dict)

    @property
    def px_per_cm(self) -> float:
        return self.height / self.field_cm


def load_topview_spec(path: str | Path, **overrides) -> tuple[str, TopviewSpec]:
    path = study_path(path)
    if not path.is_file():
        raise TopviewError(f"{path}: study file not found")
    doc = yaml.safe_load(path.read_text()) or {}
    raw = doc.get("topview")
    if raw is None:
        raise TopviewError(f"{path}: no 'topview:' section")
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    spec = _build(TopviewSpec, raw, f"{path}: topview")  # unknown keys fail naming them, as in face studies
    groups = {}
    for name, g in (spec.groups or {}).items():
        groups[name] = _build(TopviewGroup, g or {}, f"{path}: topview.groups.{name}")
        if not 0 <= groups[name].move_fraction <= 1 or groups[name].speed_cm_s < 0:
            raise TopviewError(f"{path}: topview.groups.{name}: move_fraction must be in [0, 1] and speed_cm_s >= 0")
    if not groups:
        raise TopviewError(f"{path}: topview.groups is empty")
    if spec.fps <= 0 or spec.minutes <= 0 or spec.arena_cm >= spec.field_cm:
        raise TopviewError(f"{path}: topview: fps and minutes must be > 0 and the arena smaller than the field of view")
    spec.groups = groups
    return doc.get("name", path.stem), spec


def walk(spec: TopviewSpec, group: TopviewGroup, rng: np.random.Generator) -> np.ndarray:
    """(n_frames, 3): body centre x, y in cm from the arena's corner, and heading in radians."""
    n = int(round(spec.minutes * 60 * spec.fps))
    fps = spec.fps
    margin = 4.0  # cm: the body stays off the walls
    pos = rng.uniform(margin, spec.arena_cm - margin, 2)
    heading = rng.uniform(0, 2 * np.pi)
    out = np.zeros((n, 3))
    speed = 0.0
    for i in range(n):
        if i % int(round(fps)) == 0:  # a new second: walk or rest
            speed = rng.gamma(4.0, group.speed_cm_s / 4.0) if rng.random() < group.move_fraction else 0.0
        if speed > 0:
            heading += rng.normal(0, 0.25)
            step = speed / fps * np.array([np.cos(heading), np.sin(heading)])
            nxt = pos + step
            for k in range(2):  # reflect at the walls
                if not margin <= nxt[k] <= spec.arena_cm - margin:
                    step[k] = -step[k]
                    heading = np.arctan2(step[1], step[0])
            pos = np.clip(pos + step, margin, spec.arena_cm - margin)
        out[i] = (*pos, heading)
    return out


def render_topview(path: Path, spec: TopviewSpec, track: np.ndarray, rng: np.random.Generator) -> None:
    """Write the top-view video of one animal's walk (mp4v)."""
    s = spec.px_per_cm
    x0 = (spec.width - spec.arena_cm * s) / 2
    y0 = (spec.height - spec.arena_cm * s) / 2
    base = np.full((spec.height, spec.width, 3), 6, np.uint8)
    cv2.rectangle(
        base, (int(x0), int(y0)), (int(x0 + spec.arena_cm * s), int(y0 + spec.arena_cm * s)), (22, 22, 22), -1
    )
    coat = tuple(int(c) for c in rng.uniform(215, 240, 3))
    body = (int(round(4.5 * s)), int(round(2.0 * s)))  # half-axes: a 9 x 4 cm body
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, (spec.width, spec.height))
    if not writer.isOpened():
        raise TopviewError(f"{path}: cannot open a video writer")
    for x, y, h in track:
        frame = base.copy()
        c = np.array([x0 + x * s, y0 + y * s])
        d = np.array([np.cos(h), np.sin(h)])
        tail_start = c - d * 4.3 * s
        tail_end = tail_start - (d * 0.8 + np.array([-d[1], d[0]]) * 0.3) * 7.0 * s
        cv2.line(
            frame,
            tuple(int(v) for v in tail_start),
            tuple(int(v) for v in tail_end),
            (170, 160, 190),
            max(1, int(round(0.35 * s))),
            cv2.LINE_AA,
        )
        cv2.ellipse(
            frame, (int(round(c[0])), int(round(c[1]))), body, float(np.degrees(h)), 0, 360, coat, -1, cv2.LINE_AA
        )
        writer.write(frame)
    writer.release()
    os.replace(tmp, path)


def generate_topview_study(
    study_file: str | Path, out_dir: str | Path, show_progress: bool = True, **overrides
) -> Path:
    """Render every animal of a top-view study; writes ``animals.csv`` (video, animal, sex,
    group), the true track per animal and ``truth_per_second.csv``. Returns ``animals.csv``.
    Animals already rendered are skipped."""
    name, spec = load_topview_spec(study_file, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, truth = [], []
    animals = [(g_index, group, g, i) for g_index, (group, g) in enumerate(spec.groups.items()) for i in range(g.n)]
    for g_index, group, g, i in tqdm(animals, desc=f"topview {name}", unit="animal", disable=not show_progress):
        animal = f"{group}_m{i + 1:02d}"
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, g_index, i]))
        track = walk(spec, g, rng)
        video = out / f"{animal}_top.mp4"
        if not video.exists():
            render_topview(video, spec, track, rng)
        rows.append(
            {"video": video.name, "animal": animal, "sex": "female" if i >= g.n - g.females else "male", "group": group}
        )
        step = np.r_[0.0, np.linalg.norm(np.diff(track[:, :2], axis=0), axis=1)]
        second = np.arange(len(track)) // int(round(spec.fps))
        per_s = pd.DataFrame({"second": second, "distance_cm": step}).groupby("second")["distance_cm"].sum()
        truth.append(
            pd.DataFrame({"animal": animal, "group": group, "second": per_s.index, "distance_cm": per_s.to_numpy()})
        )
    pd.concat(truth).to_csv(out / "truth_per_second.csv", index=False)
    with atomic_write(out / "animals.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    (out / "scale.txt").write_text(f"cm_per_pixel {1 / spec.px_per_cm:.6f}\n")
    return out / "animals.csv"
