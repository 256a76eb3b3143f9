"""Video -> crop store speed and memory (issue: video to crop store, performance).

On synthetic recordings with keypoints read from their DeepLabCut files:
  - extraction frames/s / pure decode frames/s of the same video   (target >= 0.8)
  - extraction frames/s / the paper's way: write every frame as an image file,
    read it back and crop                                            (target >= 5x)
  - peak memory (max RSS of a fresh process) extracting a 1-minute and a 10-minute
    video                                                            (target ratio <= 1.1)
DeepLabCut itself is timed separately: benchmarks/dlc_speed.py.

    python benchmarks/extract_speed.py [--width 640 --height 360 --fps 15] [--minutes 1 10]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from painface.crops import RULE_SKIP, crop_box, crop_rules, crop_size_for, cut
from painface.extract import ExtractConfig, extract_video
from painface.keypoints import face_points, read_dlc
from painface.manifest import read_manifest, write_manifest
from painface.synthetic.recording import SessionSpec, make_mouse, render_session

p = argparse.ArgumentParser()
p.add_argument("--width", type=int, default=640)
p.add_argument("--height", type=int, default=360)
p.add_argument("--fps", type=float, default=15)
p.add_argument("--minutes", type=float, nargs=2, default=[1, 10])
p.add_argument("--workdir", default=None, help="keep the rendered videos here (default: a temporary folder)")
args = p.parse_args()
cv2.setNumThreads(1)

MEMORY_CHILD = """
import resource, sys
from painface.extract import ExtractConfig, extract_video
from painface.manifest import read_manifest
row = read_manifest(sys.argv[1]).to_dict("records")[0]
extract_video(row, sys.argv[2], ExtractConfig())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_video(folder: Path, minutes: float) -> Path:
    spec = SessionSpec(
        f"m{minutes:g}min",
        make_mouse("m1", "male", "BALB/c", np.random.default_rng(0)),
        "post",
        "AC",
        minutes * 60,
        args.fps,
        args.width,
        args.height,
        cameras=1,
        timeline=[(0, 1.0)],
        seed=1,
    )
    rows = render_session(spec, folder)
    manifest = folder / f"{spec.session_id}.csv"
    write_manifest(pd.DataFrame(rows), manifest)
    return manifest


def pure_decode(video: str) -> float:
    cap, t0, n = cv2.VideoCapture(video), time.perf_counter(), 0
    while cap.read()[0]:
        n += 1
    return n / (time.perf_counter() - t0)


def paper_way(row: dict, folder: Path, fmt: str) -> float:
    """Split the movie into frame images, then read each back and crop it (the paper's pipeline)."""
    frames = folder / f"frames_{fmt}"
    frames.mkdir()
    t0 = time.perf_counter()
    cap, n = cv2.VideoCapture(row["video"]), 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        cv2.imwrite(str(frames / f"{n:07d}.{fmt}"), frame)
        n += 1
    kp = face_points(read_dlc(row["keypoints"]))
    rule, centre, _ = crop_rules(kp["nose"], kp["right_eye"], kp["left_eye"], 0.9)
    size = crop_size_for(args.height)
    out = folder / f"crops_{fmt}"
    out.mkdir()
    for i in range(n):
        if rule[i] != RULE_SKIP:
            img = cv2.imread(str(frames / f"{i:07d}.{fmt}"))
            crop = cv2.resize(cut(img, crop_box(centre[i], size)), (128, 128), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(out / f"{i:07d}.jpg"), crop)
    seconds = time.perf_counter() - t0
    disk = sum(f.stat().st_size for f in frames.iterdir())
    return n / seconds, disk


with tempfile.TemporaryDirectory() as tmp:
    work = Path(args.workdir or tmp)
    work.mkdir(parents=True, exist_ok=True)
    print("rendering test videos ...", file=sys.stderr)
    short, long = (make_video(work, m) for m in args.minutes)
    # speed on the long video (a short one is timed in a fraction of a second); the paper's
    # way on the short one, to spare the disk (its cost is per frame)
    row = read_manifest(long).to_dict("records")[0]
    n_frames = int(cv2.VideoCapture(row["video"]).get(cv2.CAP_PROP_FRAME_COUNT))
    decode_fps = pure_decode(row["video"])
    t0 = time.perf_counter()
    summary = extract_video(row, work / "store", ExtractConfig())
    extract_fps = n_frames / (time.perf_counter() - t0)
    paper = {fmt: paper_way(read_manifest(short).to_dict("records")[0], work, fmt) for fmt in ("png", "jpg")}

    rss = {}
    for label, manifest in (("short", short), ("long", long)):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(manifest), str(work / f"store_{label}")],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        rss[label] = int(out.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux

result = {
    "video": f"{args.width}x{args.height} @ {args.fps:g} fps, {n_frames} frames, {summary['faces']} faces cropped",
    "decode_fps": round(decode_fps, 1),
    "extract_fps": round(extract_fps, 1),
    "extract_over_decode": round(extract_fps / decode_fps, 3),
    "target_over_decode": 0.8,
    **{f"paper_way_{fmt}_fps": round(v[0], 1) for fmt, v in paper.items()},
    **{f"speedup_vs_paper_{fmt}": round(extract_fps / v[0], 1) for fmt, v in paper.items()},
    **{f"paper_way_{fmt}_frames_on_disk_MB": round(v[1] / 2**20, 1) for fmt, v in paper.items()},
    "target_speedup": 5,
    f"peak_rss_MB_{args.minutes[0]:g}min": round(rss["short"], 1),
    f"peak_rss_MB_{args.minutes[1]:g}min": round(rss["long"], 1),
    "peak_rss_ratio": round(rss["long"] / rss["short"], 3),
    "target_rss_ratio": 1.1,
    "machine": f"{platform.machine()} {os.cpu_count()} cores, one thread",
}
print(json.dumps(result, indent=2))
