"""Synthetic renderer speed (issue: synthetic mice, target >= 200 frames/s at 640x360, one core).

Times two things on one thread:
  - render only: camera.frame() for every pose of a session (what the target is about);
  - a whole session: render + mp4 encoding + DeepLabCut files + ground truth.

    python benchmarks/render_speed.py [--seconds 60] [--fps 15] [--width 640 --height 360]
"""

import argparse
import json
import platform
import tempfile
import time

import cv2
import numpy as np
import torch

from painface.synthetic.recording import (
    SessionSpec,
    _Camera,
    camera_pose,
    head_motion,
    make_mouse,
    pain_intensity,
    render_session,
)
from painface.synthetic.render import Expression

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=float, default=60)
p.add_argument("--fps", type=float, default=15)
p.add_argument("--width", type=int, default=640)
p.add_argument("--height", type=int, default=360)
args = p.parse_args()
cv2.setNumThreads(1)  # one core, as the target says
torch.set_num_threads(1)

rng = np.random.default_rng(0)
mouse = make_mouse("m01", "male", "BALB/c", rng)
spec = SessionSpec(
    "bench",
    mouse,
    "post",
    "AC",
    args.seconds,
    args.fps,
    args.width,
    args.height,
    cameras=1,
    timeline=[(0, 0.2), (10, 1.0)],
)
motion = head_motion(spec, rng)
intensity = pain_intensity(spec, rng)
camera = _Camera(spec.width, spec.height, np.random.default_rng(1), mouse.texture_seed)
poses = camera_pose(motion, 0, spec.width, spec.height, mouse.head_size)
t0 = time.perf_counter()
for i, pose in enumerate(poses):
    camera.frame(mouse, pose, Expression(intensity=float(intensity[i])), rng, 0)
render_fps = len(poses) / (time.perf_counter() - t0)

with tempfile.TemporaryDirectory() as d:
    t0 = time.perf_counter()
    render_session(spec, d)
    session_fps = spec.n_frames / (time.perf_counter() - t0)

result = {
    "frames": spec.n_frames,
    "resolution": f"{args.width}x{args.height}",
    "threads": 1,
    "render_frames_per_s": round(render_fps, 1),
    "session_frames_per_s": round(session_fps, 1),
    "target_frames_per_s": 200,
    "machine": f"{platform.machine()} {platform.processor() or ''} {__import__('os').cpu_count()} cores".strip(),
}
print(json.dumps(result, indent=2))
