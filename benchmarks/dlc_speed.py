"""DeepLabCut analyze_videos speed on CPU (and GPU where there is one).

Trains a model on the real open-field project in ../shared/data/dlc-openfield for one
epoch (random init, offline), then analyzes two clips of the real video of different
lengths. Frames/s = extra frames / extra seconds, so model loading and process start-up
are not counted; the start-up cost is reported separately.

    python benchmarks/dlc_speed.py [--net-type cspnext_s|resnet_50] [--frames 60 300] [--device cpu|cuda]
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from painface.dlc import analyze_video, relocate_project, train_face_model

p = argparse.ArgumentParser()
p.add_argument("--project", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/dlc-openfield"))
p.add_argument("--net-type", default="cspnext_s")
p.add_argument("--frames", type=int, nargs=2, default=[60, 300])
p.add_argument("--device", default="cpu")
args = p.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    shutil.copytree(args.project, tmp / "project")
    for f in (tmp / "project").rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    config = relocate_project(tmp / "project" / "config.yaml")
    t0 = time.perf_counter()
    train_face_model(
        config, net_type=args.net_type, epochs=1, batch_size=8, augment=False, image_size=256, device=args.device
    )
    train_s = time.perf_counter() - t0
    source = next((tmp / "project" / "videos").glob("*.mp4"))
    timings = {}
    for n in args.frames:
        cap = cv2.VideoCapture(str(source))
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        clip = tmp / f"clip{n}.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
        for _ in range(n):
            ok, frame = cap.read()
            if not ok:
                raise SystemExit(f"{source}: only {_} frames, asked for {n}")
            writer.write(frame)
        writer.release()
        t0 = time.perf_counter()
        analyze_video(config, clip, tmp / f"out{n}", analysis_size=None, device=args.device)
        timings[n] = time.perf_counter() - t0

(n1, t1), (n2, t2) = sorted(timings.items())
fps = (n2 - n1) / (t2 - t1)
print(
    json.dumps(
        {
            "net_type": args.net_type,
            "device": args.device,
            "video": f"{source.name} {w}x{h}",
            "train_1_epoch_s": round(train_s, 1),
            **{f"analyze_{n}_frames_s": round(t, 1) for n, t in timings.items()},
            "analyze_frames_per_s": round(fps, 2),
            "startup_s": round(t1 - n1 / fps, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cores",
        },
        indent=2,
    )
)
