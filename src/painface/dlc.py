"""DeepLabCut 3 (PyTorch engine) through its public API, always in a subprocess.

DeepLabCut resets the root logger and the global seeds, so painface never imports it
in its own process: ``train_face_model`` and ``analyze_video`` start
``python -m painface.dlc <json>``.

Offline training: DLC 3.0.2's ``train_network`` ignores ``pretrained: false`` and
fetches ImageNet weights unless it is given a snapshot. We build the pose model with
``pretrained_backbone=False``, save its random-init weights as a snapshot and pass it
as ``snapshot_path`` (or pass the user's local weights file instead).

Analysis follows the paper (step 2): DeepLabCut runs on a copy downscaled to
1280x720 (for 4K input) and the coordinates are scaled back to full resolution; the
scale factors are recorded next to the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import pandas as pd
import yaml

from painface.errors import PainfaceError
from painface.files import atomic_write
from painface.keypoints import KeypointError, read_dlc
from painface.manifest import read_manifest, write_manifest
from painface.procs import subprocess_kwargs


class DLCError(PainfaceError):
    """A DeepLabCut project or run that cannot be used; the message names the file."""


def read_project(config: str | Path, check_path: bool = True) -> dict:
    config = Path(config)
    try:
        cfg = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DLCError(f"{config}: unreadable DeepLabCut project config ({type(exc).__name__})") from None
    if not isinstance(cfg, dict) or "bodyparts" not in cfg or "Task" not in cfg:
        raise DLCError(f"{config}: not a DeepLabCut project config (no Task/bodyparts)")
    if check_path and not Path(str(cfg.get("project_path", ""))).is_dir():
        raise DLCError(
            f"{config}: project_path '{cfg.get('project_path')}' is not a folder; "
            f"run 'painface dlc relocate {config}' after moving a project"
        )
    return cfg


def relocate_project(config: str | Path) -> Path:
    """Point a moved project at its folder, and its video_sets at its labelled-data folders
    (what DeepLabCut's own demo does for its example projects).

    Edited round-trip with ruamel.yaml, DeepLabCut's own YAML library, so the file keeps
    its comments and key order (DeepLabCut's ``edit_config`` rewrites it from a template and
    drops a user's comments); each video keeps its own crop, a new one gets its frames' size.
    """
    try:
        from ruamel.yaml import YAML
    except ImportError:
        raise DLCError("painface dlc relocate needs ruamel.yaml: pip install 'painface[dlc]'") from None

    config = Path(config).resolve()
    cfg = read_project(config, check_path=False)
    root = config.parent
    old = {Path(k).stem: (v or {}).get("crop") for k, v in (cfg.get("video_sets") or {}).items()}
    video_sets = {}
    for d in sorted(p for p in (root / "labeled-data").iterdir() if p.is_dir()):
        crop = old.get(d.name) or _full_frame_crop(d)
        if crop is None:
            raise DLCError(f"{d}: no labelled image to read the frame size from, and config.yaml gives no crop")
        video_sets[str(root / "videos" / f"{d.name}.mp4")] = {"crop": crop}
    edits = {"project_path": str(root), "video_sets": video_sets}
    if cfg.get("multianimalproject") is None:
        edits["multianimalproject"] = False
    rt = YAML()  # round-trip
    doc = rt.load(config)
    for key, value in edits.items():
        doc[key] = value
    with atomic_write(config) as tmp, open(tmp, "w") as f:
        rt.dump(doc, f)
    return config


def _full_frame_crop(folder: Path) -> str | None:
    """DeepLabCut's crop string for a whole frame: "x1, x2, y1, y2"."""
    image = next(iter(sorted(folder.glob("*.png"))), None)
    frame = cv2.imread(str(image)) if image else None
    return None if frame is None else f"0, {frame.shape[1]}, 0, {frame.shape[0]}"


def _run(job: dict, timeout: float | None = None, env: dict | None = None) -> dict:
    """Run one DeepLabCut job in a fresh interpreter (with ``env`` added); return its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        job = {**job, "result": str(result)}
        proc = subprocess.run(
            [sys.executable, "-m", "painface.dlc", json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
            **subprocess_kwargs(),
        )
        if proc.returncode != 0 or not result.exists():
            tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()][-1:] or ["no output"]
            raise DLCError(f"{job.get('config')}: DeepLabCut {job['op']} failed: {tail[0]}")
        return json.loads(result.read_text())


def train_face_model(
    config: str | Path,
    shuffle: int = 1,
    net_type: str = "resnet_50",
    epochs: int = 200,
    batch_size: int = 8,
    weights: str | Path | None = None,
    augment: bool = True,
    image_size: int | None = None,
    device: str = "auto",
    timeout: float | None = None,
) -> dict:
    """``create_training_dataset`` + ``train_network`` with ``pretrained: false``.

    ``weights``: a local snapshot to start from instead of random initialisation.
    ``image_size``: resize training images (e.g. 256) to keep CPU training fast.
    Returns the shuffle's folder and snapshot paths.
    """
    read_project(config)
    return _run(
        {
            "op": "train",
            "config": str(Path(config).resolve()),
            "shuffle": shuffle,
            "net_type": net_type,
            "epochs": epochs,
            "batch_size": batch_size,
            "weights": str(weights) if weights else None,
            "augment": augment,
            "image_size": image_size,
            "device": device,
        },
        timeout,
    )


def analyze_video(
    config: str | Path,
    video: str | Path,
    dest: str | Path,
    shuffle: int = 1,
    snapshot_index: int = -1,
    analysis_size: tuple[int, int] | None = (1280, 720),
    device: str = "auto",
    timeout: float | None = None,
) -> Path:
    """Run ``analyze_videos`` on a downscaled copy; write full-resolution keypoints to ``dest``.

    Returns the h5 path; a ``*_scale.json`` beside it records the scale factors.
    """
    read_project(config)
    video = Path(video).resolve()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise DLCError(f"{video}: cannot open video")
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    with tempfile.TemporaryDirectory() as tmp:
        src = video
        sx = sy = 1.0
        if analysis_size and h > analysis_size[1]:
            aw, ah = analysis_size
            src = Path(tmp) / f"{video.stem}.mp4"
            writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), fps, (aw, ah))
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                writer.write(cv2.resize(frame, (aw, ah), interpolation=cv2.INTER_AREA))
            writer.release()
            sx, sy = w / aw, h / ah
        cap.release()
        out = Path(tmp) / "out"
        _run(
            {
                "op": "analyze",
                "config": str(Path(config).resolve()),
                "video": str(src),
                "dest": str(out),
                "shuffle": shuffle,
                "snapshot_index": snapshot_index,
                "device": device,
            },
            timeout,
        )
        produced = sorted(out.glob(f"{src.stem}DLC*.h5"))
        if not produced:
            raise DLCError(f"{video}: DeepLabCut wrote no keypoint file")

        wide = pd.read_hdf(produced[0])
        coords = wide.columns.get_level_values(-1)
        wide.loc[:, coords == "x"] = wide.loc[:, coords == "x"] * sx  # back to full resolution (paper step 2)
        wide.loc[:, coords == "y"] = wide.loc[:, coords == "y"] * sy
        target = dest / produced[0].name
        with atomic_write(target) as tmp_h5:
            wide.to_hdf(tmp_h5, key="df_with_missing", format="table", mode="w")
        (dest / f"{target.stem}_scale.json").write_text(
            json.dumps(
                {
                    "video": str(video),
                    "full_size": [w, h],
                    "analysis_size": [int(w / sx), int(h / sy)],
                    "scale_x": sx,
                    "scale_y": sy,
                },
                indent=2,
            )
        )
    read_dlc(target)  # fail here, naming the file, if the output is unusable
    return target


def extract_onepass(
    manifest: str | Path,
    store_root: str | Path,
    cfg,
    config: str | Path,
    dest: str | Path,
    shuffle: int = 1,
    snapshot_index: int = -1,
    analysis_height: int | None = 720,
    device: str = "auto",
    batch_size: int | None = None,  # None: 8 on the CPU, 64 on a GPU (halved while out of memory)
    timeout: float | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Keypoints and crops in one decode per video (``painface.onepass``): DeepLabCut's runner on
    frames downscaled in memory, the crop rules on the full-resolution frames, DeepLabCut's
    ``.h5`` in ``dest``. Finished videos are skipped; returns (summaries, error lines) as
    ``extract`` does, and ``dest/manifest.csv`` naming the keypoint files."""
    from painface import store as st
    from painface.extract import prepare_store

    read_project(config)
    _check_batch(batch_size)
    df = read_manifest(manifest)
    todo = df[df["keypoints"].isna()]  # videos with a keypoint file go the usual way (extract)
    rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in todo.to_dict("records")]
    with st.writer_lock(store_root):
        root = prepare_store(store_root, cfg)
        st.clean_temporaries(root)
        result = _run(
            {
                "op": "onepass",
                "config": str(Path(config).resolve()),
                "rows": rows,
                "store": str(root),
                "dest": str(Path(dest).resolve()),
                "extract": {
                    k: getattr(cfg, k)
                    for k in (
                        "crop_size",
                        "threshold",
                        "crop_px",
                        "reference_rows",
                        "image_format",
                        "jpeg_quality",
                        "bodypart_map",
                    )
                },
                "shuffle": shuffle,
                "snapshot_index": snapshot_index,
                "analysis_height": analysis_height,
                "device": device,
                "batch_size": batch_size,
            },
            timeout,
            reader_env([r["video"] for r in rows], analysis_height),
        )
        st.clean_temporaries(root)
    kp = {s["video"]: s["keypoints"] for s in result["summaries"]}
    found = [kp.get(str(v), k) for v, k in zip(df["video"], df["keypoints"])]
    df["keypoints"] = [pd.NA if k is None or (isinstance(k, float) and k != k) else k for k in found]
    write_manifest(df, Path(dest) / "manifest.csv")
    return st.read_summaries(root), result["errors"]


# ----------------------------------------------------------------------------- subprocess side
def add_keypoints(
    manifest: str | Path,
    config: str | Path,
    out: str | Path,
    shuffle: int = 1,
    analysis_height: int = 720,
    device: str = "auto",
    cluster=None,
    show_progress: bool = True,
    batch_size: int | None = None,  # None: 8 on the CPU, 64 on a GPU (halved while out of memory)
) -> Path:
    """Analyze every video lacking keypoints; write ``out/manifest.csv`` pointing at the results.

    Videos taller than ``analysis_height`` are downscaled in memory, keeping the aspect (the
    paper analysed 4K video at 1280x720), and the keypoints scaled back; no intermediate
    video is written, and all videos share one DeepLabCut process. ``cluster``
    (a ``ClusterConfig`` with executor slurm): one SLURM array task per video (or chunk).
    """
    _check_batch(batch_size)  # before any job is sent
    df = read_manifest(manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = []
    for i in range(len(df)):
        if pd.isna(df.at[i, "keypoints"]):
            todo.append((i, (str(config), df.at[i, "video"], str(out), shuffle, analysis_height, device, batch_size)))
    if cluster is not None and cluster.remote:
        from painface.cluster import map_on_slurm

        results = map_on_slurm(
            _analyze_chunk,
            [job for _, job in todo],
            cluster,
            Path(cluster.folder or out / ".submitit"),
            "keypoints",
            show_progress,
        )
        done = dict(pair for r in results if not isinstance(r, Exception) for pair in r)  # video -> keypoints
        failed = [str(r) for r in results if isinstance(r, Exception)]
        for i, job in todo:
            if job[1] in done:
                df.at[i, "keypoints"] = done[job[1]]
        write_manifest(df, out / "manifest.csv")  # what finished is kept: a re-run does the rest
        if failed:
            raise DLCError("DeepLabCut on SLURM: " + "; ".join(failed) + "; re-run to finish the rest")
    elif todo:
        if show_progress:
            print(f"DeepLabCut: {len(todo)} videos in one process", file=sys.stderr, flush=True)
        done, errors = keypoints_in_memory(
            config,
            [job[1] for _, job in todo],
            out,
            shuffle=shuffle,
            analysis_height=analysis_height,
            device=device,
            batch_size=batch_size,
        )
        for i, job in todo:
            if job[1] in done:
                df.at[i, "keypoints"] = done[job[1]]
        if errors:
            write_manifest(df, out / "manifest.csv")  # what finished is kept: a re-run does the rest
            raise DLCError("; ".join(errors) + "; re-run to finish the rest")
    target = out / "manifest.csv"
    write_manifest(df, target)
    return target


def keypoints_in_memory(
    config: str | Path,
    videos: list[str],
    dest: str | Path,
    shuffle: int = 1,
    snapshot_index: int = -1,
    analysis_height: int | None = 720,
    device: str = "auto",
    batch_size: int | None = None,  # None: 8 on the CPU, 64 on a GPU (halved while out of memory)
    timeout: float | None = None,
) -> tuple[dict[str, str], list[str]]:
    """DeepLabCut's ``.h5`` for each video, from frames downscaled in memory and the keypoints
    scaled back (``onepass.video_to_keypoints``): one subprocess and one model load for all
    of them. Returns ({video: keypoint file}, error lines)."""
    read_project(config)
    _check_batch(batch_size)
    result = _run(
        {
            "op": "keypoints",
            "config": str(Path(config).resolve()),
            "videos": [str(v) for v in videos],
            "dest": str(Path(dest).resolve()),
            "shuffle": shuffle,
            "snapshot_index": snapshot_index,
            "analysis_height": analysis_height,
            "device": device,
            "batch_size": batch_size,
        },
        timeout,
        reader_env(videos, analysis_height),
    )
    for path in result["keypoints"].values():
        read_dlc(path)  # fail here, naming the file, if the output is unusable
    return result["keypoints"], result["errors"]


def reader_env(videos: list, analysis_height: int | None) -> dict:
    """The OpenMP wait policy for a one-pass job. GNU OpenMP's threads (torch's) spin after
    each parallel region, which takes the cores from the reader thread that decodes and
    downscales beside inference. Where frames are downscaled, passive waiting was faster
    (one pass on 2 cores: 4K 20 -> 26 frames/s, 1080p 35 -> 40); where they are not,
    spinning was (640x360: 58 -> 52). A policy set by the user is kept."""
    if "OMP_WAIT_POLICY" in os.environ or not analysis_height:
        return {}
    for video in videos:
        cap = cv2.VideoCapture(str(video))
        height = cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        cap.release()
        if height > analysis_height:
            return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {}


def _check_batch(batch_size: int | None) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise DLCError(f"DeepLabCut batch size: must be a positive number of frames, got {batch_size!r}")


def _analyze_chunk(chunk: list) -> list[tuple[str, str]]:
    """(video, keypoint file) for each job of one task: one DeepLabCut process for the chunk."""
    config, _, out, shuffle, height, device, batch_size = chunk[0]
    done, errors = keypoints_in_memory(
        config,
        [job[1] for job in chunk],
        out,
        shuffle=shuffle,
        analysis_height=height,
        device=device,
        batch_size=batch_size,
    )
    if errors:
        raise DLCError("; ".join(errors))
    return [(video, done[video]) for video in (job[1] for job in chunk)]


def _device(device: str) -> str:
    """``auto``: the GPU when there is one (DeepLabCut is the slow stage), else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _shuffle_train_dir(project: Path, shuffle: int) -> Path:
    found = sorted(project.glob(f"dlc-models-pytorch/iteration-*/*shuffle{shuffle}/train"))
    if not found:
        raise DLCError(f"{project}: no training folder for shuffle {shuffle}")
    return found[-1]


def _job_train(job: dict) -> dict:
    import deeplabcut
    import torch
    from deeplabcut.core.engine import Engine
    from deeplabcut.pose_estimation_pytorch.config import read_config_as_dict
    from deeplabcut.pose_estimation_pytorch.models import PoseModel

    project = Path(job["config"]).parent
    deeplabcut.create_training_dataset(
        job["config"],
        num_shuffles=1,
        Shuffles=[job["shuffle"]],
        net_type=job["net_type"],
        engine=Engine.PYTORCH,
        userfeedback=False,
    )
    train_dir = _shuffle_train_dir(project, job["shuffle"])
    updates = {}
    if not job["augment"]:
        updates["data.train"] = {
            "normalize_images": True,
            "scale_to_unit_range": False,
            "hist_eq": False,
            "motion_blur": False,
            "collate": None,
        }
    if job.get("image_size"):
        s = int(job["image_size"])
        for part in ("train", "inference"):
            key = f"data.{part}.resize"
            updates[key] = {"height": s, "width": s, "keep_ratio": True}
    snapshot = job.get("weights")
    if not snapshot:
        cfg = read_config_as_dict(train_dir / "pytorch_config.yaml")
        model = PoseModel.build(cfg["model"], pretrained_backbone=False)  # pretrained: false, offline
        snapshot = str(train_dir / "painface-random-init.pt")
        torch.save({"model": model.state_dict()}, snapshot)
    deeplabcut.train_network(
        job["config"],
        shuffle=job["shuffle"],
        epochs=job["epochs"],
        save_epochs=job["epochs"],
        batch_size=job["batch_size"],
        device=_device(job["device"]),
        snapshot_path=snapshot,
        pytorch_cfg_updates=updates or None,
    )
    snaps = sorted(str(p) for p in train_dir.glob("snapshot-*.pt"))
    return {"train_dir": str(train_dir), "snapshots": snaps, "init": snapshot}


def _job_analyze(job: dict) -> dict:
    import deeplabcut

    deeplabcut.analyze_videos(
        job["config"],
        [job["video"]],
        shuffle=job["shuffle"],
        destfolder=job["dest"],
        save_as_csv=True,
        device=_device(job["device"]),
        auto_track=False,
    )
    return {"dest": job["dest"]}


def _job_keypoints(job: dict) -> dict:
    from painface.onepass import run_keypoints_job

    return run_keypoints_job(job)


def _job_onepass(job: dict) -> dict:
    from painface.onepass import run_job

    return run_job(job)


def _main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    ops = {"train": _job_train, "analyze": _job_analyze, "onepass": _job_onepass, "keypoints": _job_keypoints}
    result = ops[job["op"]](job)
    Path(job["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


__all__ = ["DLCError", "KeypointError", "analyze_video", "read_project", "relocate_project", "train_face_model"]
