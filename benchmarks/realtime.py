"""From two cameras' video to per-minute pain scores, against the recording's own length.

One session filmed by two cameras (the real open-field video of ../shared/data, resized to
--size and looped to each length in --frames) goes through a painface project folder the
way a lab runs it: ``painface init``, ``painface manifest build``, then ``painface run
--until score`` (keypoints and crops in one decode pass with DeepLabCut on --device, then
p(pain) for every crop with --ckpt-path), and the per-minute tally of paper step 6 (both
cameras fused, pain / no pain / skipped) on the predictions. The crops are the paper's
800x800 and the likelihood threshold is 0, so every frame of both cameras is cropped and
scored: the most work a recording can give.

Two lengths separate the fixed cost (processes starting, models loading) from the cost per
recorded second: the marginal real-time factor is the extra wall time over the extra
recorded time (below 1: faster than the camera records). The wall time of a 30-minute
session follows from the two measured runs by that straight line; it is labelled as such.

    python benchmarks/realtime.py --ckpt-path best.ckpt [--size 3840x2160] [--frames 300 900]
           [--device cuda] [--net resnet_50] [--batch 64] [--project ../shared/data/dlc-openfield]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_speed import MAP, SHARED, make_video, trained_copy  # noqa: E402  (the same recording and model)

PAINFACE = [sys.executable, "-m", "painface"]
FPS = 30


def cli(*args) -> str:
    r = subprocess.run([*PAINFACE, *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"painface {' '.join(map(str, args[:2]))} failed:\n{r.stderr[-3000:]}")
    return r.stderr


def build_project(root: Path, video: Path, config: Path, args) -> None:
    cli("init", root, "--pattern", "{mouse_id}_{camera}.mp4", "--phase", "post")
    for camera in ("cam1", "cam2"):  # two views of one session, as the paper's 90-degree cameras
        shutil.copyfile(video, root / "videos" / f"m1_{camera}.mp4")
    (root / "animals.csv").write_text("mouse_id,sex,strain,treatment\nm1,male,BALB/c,ac\n")
    doc = yaml.safe_load((root / "painface.yaml").read_text())
    doc["keypoints"].update(
        {"dlc_config": str(config), "bodypart_map": MAP, "device": args.device, "batch_size": args.batch}
    )
    doc["extract"].update({"crop_size": 800, "threshold": 0.0, "workers": args.workers})
    doc["model"]["checkpoint"] = str(Path(args.ckpt_path).resolve())
    (root / "painface.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    cli("manifest", "build", root)


def per_minute(root: Path, n_frames: int) -> tuple[float, int, int]:
    import pandas as pd

    from painface.scoring import fuse_cameras, pain_probability_per_minute

    t0 = time.perf_counter()
    pred = pd.read_parquet(root / "predictions" / "predictions.parquet")
    minutes = pain_probability_per_minute(fuse_cameras(pred), n_frames, FPS)
    return time.perf_counter() - t0, len(pred), len(minutes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt-path", required=True, help="a trained painface checkpoint (speed does not depend on it)")
    p.add_argument("--size", default="3840x2160")
    p.add_argument("--frames", type=int, nargs=2, default=[300, 900], help="two recording lengths per camera")
    p.add_argument("--device", default="cpu", help="where DeepLabCut runs (the CNN takes the GPU when there is one)")
    p.add_argument("--net", default="cspnext_s", help="DeepLabCut network (the paper's: resnet_50)")
    p.add_argument("--batch", type=int, default=8, help="DeepLabCut batch")
    p.add_argument("--workers", type=int, default=2, help="extract.workers in painface.yaml")
    p.add_argument("--project", default=str(SHARED), help="the DeepLabCut project to train and take the video from")
    args = p.parse_args()
    w, h = map(int, args.size.split("x"))
    out = {
        "machine": f"{platform.node()} ({platform.machine()}, {subprocess.getoutput('nproc')} CPUs)",
        "size": args.size,
        "net": args.net,
        "device": args.device,
        "batch": args.batch,
        "crop_size": 800,
        "threshold": 0.0,
        "runs": [],
    }
    try:
        import torch

        out["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"training DeepLabCut ({args.net}, one epoch) ...", file=sys.stderr, flush=True)
        config = trained_copy(Path(args.project), tmp / "dlc", args.net, args.device)
        for n in args.frames:
            video = tmp / f"rec_{n}.mp4"
            make_video(video, (w, h), n, Path(args.project))
            root = tmp / f"project_{n}"
            build_project(root, video, config, args)
            t0 = time.perf_counter()
            log = cli("run", root, "--until", "score")
            wall = time.perf_counter() - t0
            tally_s, n_crops, n_bins = per_minute(root, n)
            stages = {m[0]: float(m[1]) for m in re.findall(r"\] (\w+): done in ([\d.]+) s", log)}
            row = {
                "frames_per_camera": n,
                "recorded_s": n / FPS,
                "crops_scored": n_crops,
                "minutes_tallied": n_bins,
                "wall_s": round(wall + tally_s, 2),
                "stages_s": stages,
                "per_minute_tally_s": round(tally_s, 3),
            }
            out["runs"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            shutil.rmtree(root)
    (a, b) = out["runs"]
    marginal = (b["wall_s"] - a["wall_s"]) / (b["recorded_s"] - a["recorded_s"])
    fixed = a["wall_s"] - marginal * a["recorded_s"]
    out["marginal_realtime_factor"] = round(marginal, 3)
    out["fixed_cost_s"] = round(fixed, 1)
    out["two_camera_30_min_wall_s_by_the_line"] = round(fixed + marginal * 1800, 0)
    out["faster_than_real_time_for_30_min"] = fixed + marginal * 1800 < 1800
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
