"""Synthetic recordings: one mouse, one or two cameras 90 degrees apart (paper step 1).

A session renders a video per camera, the per-frame ground truth (pain intensity,
pose, face visibility, exact keypoints) and DeepLabCut-format keypoint files with
realistic likelihoods and jitter. Everything derives from one seed, so a session is
reproducible frame for frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.signal import lfilter

from painface.keypoints import FACE_POINTS, write_dlc
from painface.synthetic.render import ACTION_UNITS, Expression, Mouse, Pose, render_face

COATS = {"BALB/c": (238.0, 240.0, 242.0), "C57BL/6": (34.0, 32.0, 36.0)}
DLC_SCORER = "DLC_synthetic_painface_shuffle1_0"


@dataclass
class SessionSpec:
    session_id: str
    mouse: Mouse
    phase: str  # "pre" or "post"
    treatment: str
    seconds: float
    fps: float = 15.0
    width: int = 640
    height: int = 360
    cameras: int = 2
    #: (minute since treatment, intensity) knots, linearly interpolated; pre sessions use 0.
    timeline: list[tuple[float, float]] = field(default_factory=list)
    zero_fraction: float = 0.05  # share of post frames whose planted intensity is 0
    signal: float = 1.0
    au_weights: dict[str, float] = field(default_factory=lambda: {au: 1.0 for au in ACTION_UNITS})
    sensitivity: float = 1.0  # this animal's pain response factor
    seed: int = 0

    @property
    def n_frames(self) -> int:
        return int(round(self.seconds * self.fps))

    @property
    def treatment_time_s(self) -> float:
        # pre sessions end at the injection, so their times run from -seconds to 0
        return self.seconds if self.phase == "pre" else 0.0


def make_mouse(mouse_id: str, sex: str, strain: str, rng: np.random.Generator, coat_bgr=None) -> Mouse:
    """An individual: face geometry, coat shade, ear size, eye openness and sex differ."""
    base = np.asarray(coat_bgr if coat_bgr is not None else COATS.get(strain, COATS["BALB/c"]), float)
    shade = base + rng.normal(0, 6 if base.mean() > 100 else 3) + rng.normal(0, 1.0, 3)  # mostly achromatic
    size = rng.uniform(0.92, 1.08) * (1.05 if sex == "male" else 0.95)
    return Mouse(
        mouse_id=mouse_id,
        sex=sex,
        strain=strain,
        coat_bgr=tuple(float(c) for c in np.clip(shade, 0, 255)),
        head_size=float(size),
        eye_spacing=float(rng.uniform(0.9, 1.1)),
        snout_length=float(rng.uniform(0.88, 1.12)),
        ear_size=float(rng.uniform(0.82, 1.18)),
        eye_openness=float(rng.uniform(0.7, 1.15)),
        eye_size=float(rng.uniform(0.85, 1.15)),
        whisker_length=float(rng.uniform(0.8, 1.2)),
        texture_seed=int(rng.integers(2**31)),
    )


def _smooth(rng, n, fps, sd, tau_s) -> np.ndarray:
    """Ornstein-Uhlenbeck-like smooth noise with standard deviation ``sd``."""
    a = np.exp(-1.0 / max(tau_s * fps, 1e-6))
    x = lfilter([np.sqrt(1 - a * a)], [1, -a], rng.normal(0, sd, n + int(5 * tau_s * fps)))
    return x[-n:]


def head_motion(spec: SessionSpec, rng: np.random.Generator) -> pd.DataFrame:
    """Per-frame world heading, pitch, roll, stage position and grooming occlusion."""
    n, fps = spec.n_frames, spec.fps
    # heading: the mouse turns around freely, so both cameras see every angle over time
    yaw_rate = _smooth(rng, n, fps, 70.0, 1.5) + rng.normal(0, 8.0)
    heading = rng.uniform(-180, 180) + np.cumsum(yaw_rate) / fps
    pitch = _smooth(rng, n, fps, 12.0, 1.0) + 5
    roll = _smooth(rng, n, fps, 7.0, 1.0)
    px = _smooth(rng, n, fps, 0.18, 4.0)  # stage position, in units of frame width
    pz = _smooth(rng, n, fps, 0.18, 4.0)
    occluded = np.zeros(n, bool)
    t = rng.exponential(40.0)  # grooming bouts, about one per 40 s
    while t * fps < n:
        dur = rng.uniform(1.0, 3.0)
        occluded[int(t * fps) : int((t + dur) * fps)] = True
        t += dur + rng.exponential(40.0)
    ear_back = np.clip(_smooth(rng, n, fps, 14.0, 2.0), -25, 35)  # ear movements unrelated to pain
    eye_open = np.clip(1.0 + _smooth(rng, n, fps, 0.1, 1.0), 0.7, 1.15)
    return pd.DataFrame(
        {
            "heading": heading,
            "pitch": pitch,
            "roll": roll,
            "px": px,
            "pz": pz,
            "occluded": occluded,
            "ear_back": ear_back,
            "eye_open": eye_open,
        }
    )


def pain_intensity(spec: SessionSpec, rng: np.random.Generator) -> np.ndarray:
    """Planted intensity per frame from the timeline (paper Fig. 1 time courses)."""
    n = spec.n_frames
    if spec.phase == "pre" or not spec.timeline:
        return np.zeros(n)
    minutes = (np.arange(n) / spec.fps - spec.treatment_time_s) / 60.0
    knots = np.asarray(spec.timeline, float)
    base = np.interp(minutes, knots[:, 0], knots[:, 1], left=0.0, right=knots[-1, 1])
    level = np.clip(base * spec.sensitivity + _smooth(rng, n, spec.fps, 0.06, 3.0) * (base > 0), 0, 1)
    # weak labels are imperfect: some post frames carry no expression at all (blocks of ~2 s)
    zero = np.zeros(n, bool)
    block = max(int(2 * spec.fps), 1)
    n_blocks = int(round(spec.zero_fraction * n / block))
    for start in rng.choice(max(n - block, 1), size=n_blocks, replace=False) if n_blocks else []:
        zero[start : start + block] = True
    level[zero] = 0.0
    return level


class _Camera:
    """Fixed per-camera, per-session imaging: background, lighting, texture, noise bank."""

    def __init__(self, width, height, rng: np.random.Generator, texture_seed: int):
        self.w, self.h = width, height
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        wall = 70 + 25 * (1 - yy / height) + rng.uniform(-10, 10)
        bg = np.repeat(wall[..., None], 3, axis=2)
        # the small black stage of the paper, seen slightly from above
        cv2.ellipse(
            bg,
            (width // 2, int(height * 0.64)),
            (int(width * 0.42), int(height * 0.2)),
            0,
            0,
            360,
            (14, 14, 16),
            -1,
            cv2.LINE_AA,
        )
        light = 1 + 0.12 * (xx / width - 0.5) * rng.choice([-1, 1])
        self.background = np.clip(bg * light[..., None], 0, 255).astype(np.uint8)
        trng = np.random.default_rng(texture_seed)
        tex = cv2.GaussianBlur(trng.normal(0, 1, (height * 2, width * 2)).astype(np.float32), (0, 0), 1.2)
        tex += cv2.GaussianBlur(trng.normal(0, 1, (height * 2, width * 2)).astype(np.float32), (0, 0), 6) * 3
        self.texture = np.clip(128 + 6 * tex, 100, 156).astype(np.uint8)  # ~ +-20 % fur modulation
        sd = rng.uniform(2.0, 5.0)
        self.noise = [np.clip(rng.normal(0, sd, (height, width, 3)), -40, 40).astype(np.int16) for _ in range(6)]
        self.noise_pos = [np.clip(nz, 0, None).astype(np.uint8) for nz in self.noise]
        self.noise_neg = [np.clip(-nz, 0, None).astype(np.uint8) for nz in self.noise]
        self.gain = rng.uniform(0.88, 1.08)

    def frame(self, mouse, pose, expr, rng, blur=0):
        img = self.background.copy()
        kps = render_face(img, mouse, pose, expr)
        # fur texture moves with the animal: sample the texture at an offset that follows the head
        r = int(pose.scale * 4.5)
        x0, x1 = max(int(pose.cx) - r, 0), min(int(pose.cx) + r, self.w)
        y0, y1 = max(int(pose.cy) - r, 0), min(int(pose.cy) + int(r * 1.2), self.h)
        if x1 > x0 and y1 > y0:
            ox, oy = (self.w // 2 - int(pose.cx)) % self.w, (self.h // 2 - int(pose.cy)) % self.h
            tex = self.texture[oy + y0 : oy + y1, ox + x0 : ox + x1]
            roi = img[y0:y1, x0:x1]
            img[y0:y1, x0:x1] = cv2.multiply(roi, cv2.merge([tex, tex, tex]), scale=1 / 128)
            if blur > 1:
                img[y0:y1, x0:x1] = cv2.blur(img[y0:y1, x0:x1], (blur, 1))
        k = int(rng.integers(len(self.noise)))
        img = cv2.convertScaleAbs(img, alpha=self.gain)
        cv2.add(img, self.noise_pos[k], dst=img)
        cv2.subtract(img, self.noise_neg[k], dst=img)
        return img, kps


def camera_pose(motion: pd.DataFrame, cam: int, width: int, height: int, head_size: float) -> list[Pose]:
    """Camera 2 stands 90 degrees from camera 1 (paper step 1)."""
    rel_yaw = motion["heading"].to_numpy() - 90.0 * cam
    # position: camera 1 sees the stage's x axis, camera 2 its z axis; the far side is smaller
    lateral = motion["px"].to_numpy() if cam == 0 else -motion["pz"].to_numpy()
    depth = motion["pz"].to_numpy() if cam == 0 else motion["px"].to_numpy()
    scale = 0.085 * height * head_size / (1 + 0.5 * depth)
    cx = width * (0.5 + 0.55 * lateral)
    cy = height * (0.52 - 0.1 * depth)
    return [
        Pose(yaw=((y + 180) % 360) - 180, pitch=p, roll=r, cx=x, cy=yc, scale=s, occluded=o, ear_back=eb, eye_open=eo)
        for y, p, r, x, yc, s, o, eb, eo in zip(
            rel_yaw,
            motion["pitch"],
            motion["roll"],
            cx,
            cy,
            scale,
            motion["occluded"],
            motion["ear_back"],
            motion["eye_open"],
        )
    ]


def likelihood_and_jitter(kps_true: np.ndarray, visibility: np.ndarray, scale: np.ndarray, rng) -> np.ndarray:
    """DeepLabCut-like output: high likelihood and small jitter where visible, garbage where hidden."""
    n = len(kps_true)
    conf = 1 / (1 + np.exp(-(visibility - 0.12) * 30))
    like = np.clip(conf * (1 - rng.beta(1.2, 25, n)) + (1 - conf) * rng.beta(1.2, 6, n), 0, 1)
    jitter = np.where(like[:, None] > 0.5, 0.05, 0.6) * scale[:, None] * rng.normal(0, 1, (n, 2))
    return np.column_stack([kps_true + jitter, like])


def render_session(spec: SessionSpec, out_dir: str | Path, progress=None) -> list[dict]:
    """Render every camera of one session; returns one manifest row per camera."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    motion = head_motion(spec, rng)
    intensity = pain_intensity(spec, rng)
    rows, truth = [], []
    for cam in range(spec.cameras):
        crng = np.random.default_rng([spec.seed, cam])
        camera = _Camera(spec.width, spec.height, crng, spec.mouse.texture_seed + cam)
        poses = camera_pose(motion, cam, spec.width, spec.height, spec.mouse.head_size)
        video = out_dir / f"{spec.session_id}_cam{cam + 1}.mp4"
        tmp = video.with_name(video.stem + ".tmp.mp4")
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, (spec.width, spec.height))
        if not writer.isOpened():
            raise RuntimeError(f"{video}: OpenCV cannot open an mp4 writer")
        kp = np.zeros((spec.n_frames, 3, 3))
        prev_yaw = poses[0].yaw if poses else 0.0
        for i, pose in enumerate(poses):
            expr = Expression(intensity=float(intensity[i]), weights=spec.au_weights, signal=spec.signal)
            speed = abs(((pose.yaw - prev_yaw + 180) % 360) - 180) * spec.fps  # deg/s
            prev_yaw = pose.yaw
            blur = int(min(speed / 120, 6)) if speed > 150 else 0  # motion blur on fast turns
            img, kps = camera.frame(spec.mouse, pose, expr, crng, blur)
            writer.write(img)
            for j, name in enumerate(FACE_POINTS):
                kp[i, j] = kps[name]
            if progress is not None:
                progress()
        writer.release()
        tmp.replace(video)
        scales = np.array([p.scale for p in poses])
        dlc = {
            name: likelihood_and_jitter(kp[:, j, :2], kp[:, j, 2], scales, crng) for j, name in enumerate(FACE_POINTS)
        }
        h5, _ = write_dlc(dlc, out_dir / video.stem, DLC_SCORER)
        visible = (kp[:, 0, 2] > 0.0) & (np.maximum(kp[:, 1, 2], kp[:, 2, 2]) > 0.12)
        truth.append(
            pd.DataFrame(
                {
                    "session_id": spec.session_id,
                    "camera": f"cam{cam + 1}",
                    "frame": np.arange(spec.n_frames),
                    "time_s": np.arange(spec.n_frames) / spec.fps - spec.treatment_time_s,
                    "intensity": intensity,
                    "yaw": [p.yaw for p in poses],
                    "pitch": [p.pitch for p in poses],
                    "roll": [p.roll for p in poses],
                    "scale": scales,
                    "occluded": motion["occluded"].to_numpy(),
                    "face_visible": visible,
                    **{
                        f"{n}_{c}": kp[:, j, k]
                        for j, n in enumerate(FACE_POINTS)
                        for k, c in enumerate(("x", "y", "vis"))
                    },
                }
            )
        )
        rows.append(
            {
                "session_id": spec.session_id,
                "mouse_id": spec.mouse.mouse_id,
                "sex": spec.mouse.sex,
                "strain": spec.mouse.strain,
                "treatment": spec.treatment,
                "phase": spec.phase,
                "camera": f"cam{cam + 1}",
                "video": str(video),
                "keypoints": str(h5),
                "fps": spec.fps,
                "treatment_time_s": spec.treatment_time_s,
            }
        )
    truth_path = out_dir / f"{spec.session_id}_truth.parquet"
    tmp = truth_path.with_name(truth_path.name + ".tmp")
    pd.concat(truth, ignore_index=True).to_parquet(tmp, index=False)
    tmp.replace(truth_path)
    return rows
