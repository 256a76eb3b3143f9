"""From video to crop store: decode once, streaming; crop faces; append to the store.

The paper split every movie into frame images on disk before cropping; we never
write full frames. One worker process per video; each video is published to the
store atomically (see ``painface.store``), so a re-run skips finished videos and a
killed run leaves no half-written part behind.
"""

from __future__ import annotations

import time
import traceback
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from painface import defaults
from painface import store as st
from painface.cluster import ClusterConfig, map_on_slurm
from painface.crops import RULE_SKIP, crop_box, crop_rules, crop_size_for, cut, sharpness
from painface.errors import PainfaceError
from painface.keypoints import FACE_POINTS, KeypointError, face_points, read_dlc
from painface.manifest import read_manifest
from painface.procs import worker_pool
from painface.video import VideoError, open_video


class ExtractError(PainfaceError):
    """A bad extraction setting; the message names the option."""


@dataclass
class ExtractConfig:
    crop_size: int = defaults.CROP_SIZE  # stored crop resolution (pixels)
    threshold: float = defaults.LIKELIHOOD_THRESHOLD  # paper step 3
    crop_px: int = defaults.CROP_PX  # crop size at the reference resolution ...
    reference_rows: int = defaults.REFERENCE_ROWS  # ... 800 px at 2160 rows
    image_format: str = "jpg"
    jpeg_quality: int = 92
    workers: int = 1
    bodypart_map: dict = field(default_factory=dict)  # e.g. {"nose": "snout"}

    def __post_init__(self):
        # checked before anything is written: a bad value must never reach store.json
        for name, low in (("crop_size", 8), ("crop_px", 8), ("reference_rows", 1), ("workers", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ExtractError(f"--{name.replace('_', '-')}: must be an integer >= {low}, got {value!r}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ExtractError(f"--threshold: a likelihood threshold must be in [0, 1], got {self.threshold!r}")
        if self.image_format not in ("jpg", "png"):
            raise ExtractError(f"image format '{self.image_format}' unknown (jpg or png)")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ExtractError(f"--jpeg-quality: must be in 1..100, got {self.jpeg_quality!r}")

    def recorded(self) -> dict:
        """The settings that decide which crops exist, recorded in store.json."""
        return {
            "threshold": float(self.threshold),
            "crop_px": self.crop_px,
            "reference_rows": self.reference_rows,
            "bodypart_map": dict(self.bodypart_map),
        }


COORDS = ("x", "y", "likelihood")


class PartCropper:
    """One video's store part: crops faces from full-resolution frames as their keypoints
    arrive (from a keypoint file, or batch by batch from DeepLabCut in the one-pass path)
    and publishes the part whole with its summary."""

    def __init__(self, row: dict, store_root: str | Path, cfg: ExtractConfig, width: int, height: int):
        self.row, self.cfg, self.width, self.height = row, cfg, width, height
        self.unit = st.unit_name(row["session_id"], row["camera"])
        self.size = crop_size_for(height, cfg.crop_px, cfg.reference_rows)
        # area averaging avoids aliasing on real downscales (800 -> 128 px at 4K); below 2x it
        # costs more than decoding the frame and bilinear does not alias
        self.interpolation = cv2.INTER_AREA if self.size >= 2 * cfg.crop_size else cv2.INTER_LINEAR
        self.fps = float(row["fps"])
        self.offset = int(row.get("frame_offset") or 0)  # frames before this camera lines up with the others
        self.meta = {
            k: row[k] for k in ("session_id", "mouse_id", "sex", "strain", "treatment", "phase", "camera", "label")
        }
        self.writer = st.PartWriter(store_root, self.unit, cfg.image_format, cfg.jpeg_quality)
        self.rules: list[np.ndarray] = []
        self.reasons: list[np.ndarray] = []

    def rules_for(self, kp: dict[str, np.ndarray]):
        """The paper's crop rules (step 3) for a run of frames."""
        return crop_rules(kp["nose"], kp["right_eye"], kp["left_eye"], self.cfg.threshold)

    def add(self, frame_no: int, image: np.ndarray, rule: str, centre, kp_row: dict[str, np.ndarray]) -> None:
        """Crop video frame ``frame_no`` (whose rule is not iv, and not before the offset)."""
        frame = frame_no - self.offset  # the session's frame index, shared by its cameras
        box = crop_box(centre, self.size)
        crop = cv2.resize(cut(image, box), (self.cfg.crop_size, self.cfg.crop_size), interpolation=self.interpolation)
        self.writer.add(
            crop,
            {
                **self.meta,
                "crop_id": f"{self.row['session_id']}/{self.row['camera']}/{frame:07d}",
                "frame": frame,
                "time_s": frame / self.fps - float(self.row["treatment_time_s"]),
                "fps": self.fps,
                "rule": rule,
                **{
                    f"{p}_{c}": float(kp_row[p][j]) for p in FACE_POINTS for j, c in enumerate(("x", "y", "likelihood"))
                },
                "box_x0": box[0],
                "box_y0": box[1],
                "box_size": self.size,
                "sharpness": sharpness(crop),
            },
        )

    def publish(self, rule: np.ndarray, reason: np.ndarray, frames: int) -> dict:
        rule, reason = rule[self.offset :], reason[self.offset :]
        counts = pd.Series(rule).value_counts()
        summary = {
            "unit": self.unit,
            "session_id": self.row["session_id"],
            "camera": self.row["camera"],
            "video": str(self.row["video"]),
            "frames": frames - self.offset,
            "frame_offset": self.offset,
            "fps": self.fps,
            "treatment_time_s": float(self.row["treatment_time_s"]),
            "width": self.width,
            "height": self.height,
            "crop_px_in_video": self.size,
            "faces": int((rule != RULE_SKIP).sum()),
            **{f"rule_{r}": int(counts.get(r, 0)) for r in ("i", "ii", "iii", "iv")},
            "skip_no_nose": int((reason == "no_nose").sum()),
            "skip_no_eye": int((reason == "no_eye").sum()),
        }
        self.writer.publish(summary)
        return summary

    def abort(self) -> None:
        self.writer.abort()


def extract_video(row: dict, store_root: str | Path, cfg: ExtractConfig) -> dict:
    """Crop one video into a store part from its keypoint file; returns its summary. Raises on bad input."""
    video = row["video"]
    if pd.isna(row.get("keypoints")):
        raise KeypointError(f"{video}: no keypoint file in the manifest; run 'painface keypoints' (DeepLabCut) first")
    kp = face_points(read_dlc(row["keypoints"]), cfg.bodypart_map, source=str(row["keypoints"]))
    n_kp = len(kp["nose"])
    cap, n_header, _, (w, h) = open_video(video)
    if n_header and abs(n_header - n_kp) > 1:
        cap.release()
        raise KeypointError(f"{row['keypoints']}: {n_kp} frames of keypoints but the video {video} has {n_header}")
    offset = int(row.get("frame_offset") or 0)
    if offset >= n_kp:
        cap.release()
        raise VideoError(f"{video}: frame_offset {offset} drops every one of its {n_kp} frames")
    part = PartCropper(row, store_root, cfg, w, h)
    rule, centre, reason = part.rules_for(kp)
    try:
        frame_no = 0
        while True:
            wanted = offset <= frame_no < n_kp and rule[frame_no] != RULE_SKIP
            # grab() decodes without colour conversion: enough for frames we skip
            ok = cap.grab()
            if not ok:
                break
            if wanted:
                ok, image = cap.retrieve()
                if not ok:
                    raise VideoError(f"{video}: cannot decode frame {frame_no}")
                part.add(frame_no, image, rule[frame_no], centre[frame_no], {p: kp[p][frame_no] for p in FACE_POINTS})
            frame_no += 1
        cap.release()
        if frame_no != n_kp:
            what = "truncated" if frame_no < n_kp else "longer than its keypoint file"
            raise VideoError(
                f"{video}: video {what}: decoded {frame_no} frames, keypoint file {row['keypoints']} has {n_kp}"
            )
        return part.publish(rule, reason, frame_no)
    except BaseException:
        part.abort()
        raise


def _work(args):
    row, root, cfg = args
    t0 = time.perf_counter()
    try:
        s = extract_video(row, root, cfg)
        s["seconds"] = time.perf_counter() - t0
        return s, None
    except PainfaceError as exc:  # its message names the file already
        return {"unit": st.unit_name(row["session_id"], row["camera"]), "video": row["video"]}, str(exc)
    except OSError as exc:  # a full disk, a file-size limit, a vanished folder: name the video and the cause
        return {
            "unit": st.unit_name(row["session_id"], row["camera"]),
            "video": row["video"],
        }, f"{row['video']}: cannot write its part to the store ({exc.strerror or exc}); nothing of it was kept"
    except Exception as exc:  # an unexpected failure still must not stop the other videos
        return {
            "unit": st.unit_name(row["session_id"], row["camera"]),
            "video": row["video"],
        }, f"{row['video']}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"


def _work_chunk(chunk: list) -> list:
    """One SLURM array task: its videos, one after the other."""
    return [_work(j) for j in chunk]


def extract(
    manifest: str | Path,
    store_root: str | Path,
    cfg: ExtractConfig | None = None,
    show_progress: bool = True,
    cluster: ClusterConfig | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Extract every video of a manifest; returns (summary table, error lines).

    Finished videos are skipped. A bad video fails alone; its error is returned and
    the others still finish. ``cluster``: run the videos as a SLURM job array instead.
    """
    cfg = cfg or ExtractConfig()
    rows = read_manifest(manifest).to_dict("records")
    with st.writer_lock(store_root):
        return _extract_locked(rows, store_root, cfg, show_progress, cluster)


def prepare_store(store_root: str | Path, cfg: ExtractConfig) -> Path:
    """Create the store, or check that an existing one was made with these crop rules."""
    root = st.create_store(store_root, cfg.crop_size, cfg.image_format, cfg.jpeg_quality, cfg.recorded())
    meta = st.store_meta(root)
    if meta.get("crop_size") != cfg.crop_size:
        raise st.StoreError(
            f"{root}: store holds {meta.get('crop_size')} px crops, extraction asked for {cfg.crop_size}"
        )
    # one store, one set of crop rules: the methods text reads them from store.json
    for key, value in cfg.recorded().items():
        have = (meta.get("extraction") or {}).get(key, value)
        if have != value:
            raise st.StoreError(
                f"{root}: store was extracted with {key} = {have!r}, this extraction asks for "
                f"{value!r}; use another --store"
            )
    return root


def _extract_locked(rows, store_root, cfg: ExtractConfig, show_progress: bool, cluster: ClusterConfig | None = None):
    root = prepare_store(store_root, cfg)
    st.clean_temporaries(root)
    done = st.finished_units(root)
    todo = [r for r in rows if st.unit_name(r["session_id"], r["camera"]) not in done]
    errors: list[str] = []
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc="extract", unit="video", disable=not show_progress)
    jobs = [(r, str(root), cfg) for r in todo]
    try:
        if cluster is not None and cluster.remote:
            bar.close()
            results = map_on_slurm(
                _work_chunk,
                jobs,
                cluster,
                Path(cluster.folder or root / ".submitit"),
                "extract",
                show_progress=show_progress,
            )
            for chunk, result in zip(
                [jobs[i : i + cluster.videos_per_task] for i in range(0, len(jobs), cluster.videos_per_task)], results
            ):
                if isinstance(result, Exception):
                    names = ", ".join(str(j[0]["video"]) for j in chunk)
                    errors.append(f"{names}: {result}; re-run to extract it")
                else:
                    errors += [err for _, err in result if err]
        elif cfg.workers > 1 and len(jobs) > 1:
            with worker_pool(cfg.workers) as pool:
                for fut in as_completed([pool.submit(_work, j) for j in jobs]):
                    _, err = fut.result()
                    if err:
                        errors.append(err)
                    bar.update()
        else:
            for j in jobs:
                _, err = _work(j)
                if err:
                    errors.append(err)
                bar.update()
    except BaseException:
        st.clean_temporaries(root)  # the killed workers' half-written parts
        raise
    finally:
        bar.close()
    return st.read_summaries(root), errors


def format_summary(summary: pd.DataFrame) -> str:
    if summary.empty:
        return "no videos extracted"
    cols = [c for c in ("unit", "frames", "faces", "rule_i", "rule_ii", "rule_iii", "rule_iv") if c in summary]
    return summary[cols].to_string(index=False)
