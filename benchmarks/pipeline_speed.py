"""The whole path from video to store, against its limits (frames/s of the recording):

(a) pure decode (OpenCV);
(b) DeepLabCut inference alone, on frames already in memory at the analysis size;
(c) the two-pass path: analyze_videos on a downscaled copy, then extract from the .h5;
(d) the one-pass path: decode once, DeepLabCut in memory, crops from the same frames.

Reports (d) / min(a, b) (target >= 0.9) and (d) / (c). Also (d) against a + b done one
after the other, 1 / (1/a + 1/b): on a CPU, decoding and inference share the same cores,
so that serial rate, not min(a, b), is what overlap can be measured against there. (c) and (d) start a DeepLabCut
subprocess (import and model load: a fixed cost per call, whatever the video's length), so
both are given in total and in steady state, with that fixed cost (measured once, on an
8-frame video) taken out: a 10-minute recording is 18,000 frames, where it no longer
counts. The model is a DeepLabCut project
trained for one epoch offline (the real open-field project in ../shared/data; speed does
not depend on how well it is trained); the recording is that project's real video, resized
to each size and looped to the requested length.

    python benchmarks/pipeline_speed.py --sizes 640x360 1920x1080 3840x2160 --frames 600
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "dlc-openfield"
MAP = {"nose": "snout", "right_eye": "rightear", "left_eye": "leftear"}


def make_video(path: Path, size: tuple[int, int], n: int, project: Path = SHARED) -> None:
    cap = cv2.VideoCapture(str(project / "videos" / "m3v1mp4.mp4"))
    frames = []
    while len(frames) < min(n, 300):
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(f, size, interpolation=cv2.INTER_CUBIC))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for i in range(n):
        out.write(frames[i % len(frames)])
    out.release()


def trained_copy(project: Path, dest: Path, net: str, device: str) -> Path:
    """A writable copy of a DeepLabCut project, trained for one epoch offline (speed does not
    depend on how well it is trained); returns its config.yaml."""
    from painface.dlc import relocate_project, train_face_model

    shutil.copytree(project, dest)
    for q in dest.rglob("*"):
        q.chmod(0o755 if q.is_dir() else 0o644)
    config = relocate_project(dest / "config.yaml")
    train_face_model(config, net_type=net, epochs=1, batch_size=8, augment=False, image_size=256, device=device)
    return config


def decode_fps(video: Path) -> float:
    cap = cv2.VideoCapture(str(video))
    t0, n = time.perf_counter(), 0
    while cap.read()[0]:
        n += 1
    return n / (time.perf_counter() - t0)


INFER = """
import json, sys, time, cv2, numpy as np
from painface.onepass import analysis_size, build_runner
job = json.loads(sys.argv[1])
runner, _, _ = build_runner(job["config"], device=job["device"], batch_size=job["batch"])
cap = cv2.VideoCapture(job["video"]); frames = []
while True:
    ok, f = cap.read()
    if not ok: break
    size = analysis_size(f.shape[1], f.shape[0], 720)
    frames.append(np.ascontiguousarray((cv2.resize(f, size, interpolation=cv2.INTER_AREA) if size else f)[..., ::-1]))
runner.inference(images=frames[: job["batch"]])  # warm-up
t0 = time.perf_counter()
for i in range(0, len(frames), job["batch"]):
    runner.inference(images=frames[i : i + job["batch"]])
print(json.dumps({"fps": len(frames) / (time.perf_counter() - t0)}))
"""


def manifest_for(video: Path, folder: Path, keypoints=None) -> Path:
    from painface.manifest import write_manifest

    path = folder / f"manifest_{video.stem}_{'kp' if keypoints else 'none'}.csv"
    write_manifest(
        pd.DataFrame(
            [
                {
                    "session_id": video.stem,
                    "mouse_id": "m",
                    "sex": "male",
                    "strain": "BALB/c",
                    "treatment": "none",
                    "phase": "post",
                    "camera": "cam1",
                    "video": str(video),
                    "keypoints": keypoints,
                    "fps": 30,
                    "treatment_time_s": 0,
                }
            ]
        ),
        path,
    )
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["640x360", "1920x1080"])
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--net", default="cspnext_s")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where DeepLabCut runs")
    p.add_argument("--crop-size", type=int, default=128, help="side of the stored crops (the paper's: 800)")
    p.add_argument("--project", default=str(SHARED), help="the DeepLabCut project to train and take the video from")
    args = p.parse_args()
    source = Path(args.project)
    from painface.dlc import analyze_video, extract_onepass
    from painface.extract import ExtractConfig, extract

    out = {
        "machine": f"{platform.node()} ({platform.machine()}, {subprocess.getoutput('nproc')} CPUs)",
        "net": args.net,
        "frames": args.frames,
        "batch": args.batch,
        "crop_size": args.crop_size,
        "device": args.device,
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = trained_copy(source, tmp / "openfield", args.net, args.device)
        tiny = tmp / "tiny.mp4"
        make_video(tiny, (640, 360), args.batch, source)
        t0 = time.perf_counter()
        extract_onepass(
            manifest_for(tiny, tmp),
            tmp / "store_tiny",
            ExtractConfig(crop_size=args.crop_size, threshold=0.0, bodypart_map=MAP),
            config,
            tmp / "kp_tiny",
            device=args.device,
            batch_size=args.batch,
        )
        setup = time.perf_counter() - t0
        out["dlc_subprocess_setup_s"] = round(setup, 2)
        print(f"fixed cost of a DeepLabCut subprocess: {setup:.1f} s", file=sys.stderr, flush=True)
        for spec in args.sizes:
            w, h = map(int, spec.split("x"))
            video = tmp / f"rec_{w}x{h}.mp4"
            make_video(video, (w, h), args.frames, source)
            cfg = ExtractConfig(crop_size=args.crop_size, threshold=0.0, bodypart_map=MAP)
            a = decode_fps(video)
            r = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    INFER,
                    json.dumps(
                        {"config": str(config), "video": str(video), "batch": args.batch, "device": args.device}
                    ),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            b = json.loads(r.stdout.strip().splitlines()[-1])["fps"]
            size = (int(round(w * 720 / h)), 720) if h > 720 else None
            t0 = time.perf_counter()
            h5 = analyze_video(config, video, tmp / f"kp2_{w}", analysis_size=size, device=args.device)
            extract(manifest_for(video, tmp, str(h5)), tmp / f"store2_{w}", cfg, show_progress=False)
            tc = time.perf_counter() - t0
            t0 = time.perf_counter()
            _, errors = extract_onepass(
                manifest_for(video, tmp),
                tmp / f"store1_{w}",
                cfg,
                config,
                tmp / f"kp1_{w}",
                analysis_height=720,
                device=args.device,
                batch_size=args.batch,
            )
            td = time.perf_counter() - t0
            assert not errors, errors
            c, d = args.frames / tc, args.frames / td
            c_steady, d_steady = args.frames / max(tc - setup, 1e-9), args.frames / max(td - setup, 1e-9)
            row = {
                "size": spec,
                "analysis_size": f"{size[0]}x{size[1]}" if size else spec,
                "a_decode_fps": round(a, 1),
                "b_dlc_inference_fps": round(b, 2),
                "c_two_pass_fps": round(c, 2),
                "d_one_pass_fps": round(d, 2),
                "c_two_pass_steady_fps": round(c_steady, 2),
                "d_one_pass_steady_fps": round(d_steady, 2),
                "d_over_min_ab": round(d / min(a, b), 3),
                "d_steady_over_min_ab": round(d_steady / min(a, b), 3),
                "serial_ab_fps": round(1 / (1 / a + 1 / b), 2),
                "d_steady_over_serial_ab": round(d_steady * (1 / a + 1 / b), 3),
                "d_over_c": round(d / c, 3),
                "d_steady_over_c_steady": round(d_steady / c_steady, 3),
            }
            out["results"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
