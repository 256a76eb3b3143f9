"""From video to store in one decode: DeepLabCut's own PyTorch inference runner and the
crop rules on the same frames (paper steps 2-3 without an intermediate video).

Three threads per video, joined by queues: a reader decodes each batch and downscales it
to the analysis size (1280x720 in the paper); the main thread runs DeepLabCut on it, scales
the keypoints back to full resolution and applies the crop rules; a cropper cuts, resizes
and encodes the crops from the full-resolution frames into the store part, then hands the
frames back to a pool that the reader decodes into again (``FramePool``: no fresh 4K
array per frame, and a bound on memory). OpenCV releases the GIL while it decodes, resizes
and encodes, so these overlap with inference; on a GPU the slower of decoding and
inference sets the pace, on a CPU they share the cores. DeepLabCut's ``.h5``
(its own layout and scorer name) is written beside, so the keypoints can be inspected
with DeepLabCut's tools.

DeepLabCut resets the root logger and the global seeds when imported, so all of this runs
in a DeepLabCut subprocess (``painface.dlc``), one per call.
"""

from __future__ import annotations

import queue
import threading
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from painface import store as st
from painface.crops import RULE_SKIP
from painface.extract import ExtractConfig, PartCropper
from painface.files import atomic_write, write_json
from painface.keypoints import FACE_POINTS
from painface.video import VideoError, open_video


def analysis_size(width: int, height: int, analysis_height: int | None) -> tuple[int, int] | None:
    """The paper analysed 4K at 1280x720: taller videos are downscaled, keeping the aspect."""
    if not analysis_height or height <= analysis_height:
        return None
    return int(round(width * analysis_height / height)), analysis_height


def analysis_frames(frames: list[np.ndarray], size: tuple[int, int] | None) -> list[np.ndarray]:
    """BGR frames as DeepLabCut reads them: RGB, at the analysis size."""
    small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if size else f for f in frames]
    return [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in small]  # 30x faster than a reversed numpy copy


class FramePool:
    """Full-resolution frame buffers, decoded into again once cropped. A fresh 4K array per
    frame costs page faults that halved decoding here (98 -> 43 frames/s with 56 frames in
    flight, 90 with reused buffers). The pool also bounds memory: at most ``size`` frames are
    decoded and not yet cropped (4 batches: one read, one in the queue, one in DeepLabCut,
    one being cropped)."""

    def __init__(self, size: int):
        self.size, self.made, self.free = size, 0, queue.Queue()

    def take(self, stop: threading.Event) -> np.ndarray | None:
        """A buffer to decode into; None while the pool is still growing (OpenCV allocates)."""
        if self.made < self.size:
            self.made += 1
            return None
        while not stop.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                pass
        raise _Stopped

    def give_back(self, frames: list[np.ndarray]) -> None:
        for frame in frames:
            self.free.put(frame)


class _Stopped(Exception):
    """The consumer stopped the reader (it failed, or needs no more frames)."""


def _reader(video: str, batch: int, size, pool: FramePool, out: queue.Queue, stop: threading.Event) -> None:
    """Decode ``video`` into batches of (full-resolution BGR frames, analysis frames); None
    at the end, an exception on failure."""
    cap = cv2.VideoCapture(video)
    try:
        frames = []
        while not stop.is_set():
            buffer = pool.take(stop)
            ok, frame = cap.read(buffer) if buffer is not None else cap.read()
            if ok:
                frames.append(frame)
            if frames and (len(frames) == batch or not ok):
                out.put((frames, analysis_frames(frames, size)))
                frames = []
            if not ok:
                break
        out.put(None)
    except _Stopped:
        pass
    except BaseException as exc:  # handed to the consumer, which re-raises it
        out.put(exc)
    finally:
        cap.release()


def _cropper(part: PartCropper, pool: FramePool, work: queue.Queue, failed: list) -> None:
    """Cut the crops of each batch into the part, then hand its frames back to the pool;
    after a failure, only drain the queue."""
    while (item := work.get()) is not None:
        frames, first, rule, centre, kp = item
        try:
            for i, image in enumerate(frames):
                n = first + i
                if not failed and n >= part.offset and rule[i] != RULE_SKIP:
                    part.add(n, image, rule[i], centre[i], {p: kp[p][i] for p in FACE_POINTS})
        except BaseException as exc:  # re-raised by the main thread
            failed.append(exc)
        pool.give_back(frames)


def face_arrays(pred: np.ndarray, bodyparts: list[str], bodypart_map: dict) -> dict[str, np.ndarray]:
    """(frames, bodyparts, 3) -> nose, right_eye, left_eye as (frames, 3) arrays."""
    out = {}
    for point in FACE_POINTS:
        name = bodypart_map.get(point, point)
        if name not in bodyparts:
            raise VideoError(f"DeepLabCut model has no body part '{name}' (for {point}); it has {bodyparts}")
        out[point] = pred[:, bodyparts.index(name), :]
    return out


def dlc_frame(pred: np.ndarray, scorer: str, bodyparts: list[str]) -> pd.DataFrame:
    """DeepLabCut's own single-animal layout (what ``analyze_videos`` writes)."""
    columns = pd.MultiIndex.from_product(
        [[scorer], bodyparts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
    )
    return pd.DataFrame(pred.reshape(len(pred), -1), columns=columns, index=range(len(pred)))


#: full-resolution frames in flight per video, in batches (FramePool)
POOL_BATCHES = 4


def default_batch(device: str, batch: int | None) -> int:
    """Frames per DeepLabCut batch: as given, else 8 on the CPU (larger batches gain nothing
    there) and 64 on a GPU, halved on the fly while the GPU runs out of memory."""
    if batch is not None:
        return int(batch)
    return 64 if str(device).startswith("cuda") else 8


def infer(runner, images: list, limit: list[int]) -> list:
    """``runner.inference`` in chunks of at most ``limit[0]`` frames; when the GPU runs out of
    memory the chunk is halved (and stays halved for later batches) instead of failing."""
    out, i = [], 0
    while i < len(images):
        chunk = images[i : i + limit[0]]
        try:
            out.extend(runner.inference(images=chunk))
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if "out of memory" not in str(exc).lower() or limit[0] == 1:
                raise
            limit[0] = max(1, len(chunk) // 2)
            _free_gpu_memory()
            print(f"onepass: GPU out of memory, DeepLabCut batch now {limit[0]} frames", flush=True)
            continue
        i += len(chunk)
    return out


def _free_gpu_memory() -> None:
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # no torch or no CUDA: nothing held
        pass


def _keypoint_batches(video: str, runner, bodyparts, batch: int, size, scale, pool: FramePool):
    """(full-resolution frames, keypoints (n, body parts, x/y/likelihood) at full resolution)
    per batch: the reader thread decodes and downscales ahead, DeepLabCut runs here. The
    caller hands each batch's frames back to ``pool`` when done with them."""
    frames_q: queue.Queue = queue.Queue()  # bounded by the pool: decoding runs ahead only while buffers are free
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(video, batch, size, pool, frames_q, stop), daemon=True)
    reader.start()
    limit = [batch]
    try:
        while (item := frames_q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            frames, small = item
            out = infer(runner, small, limit)
            pred = np.stack([p["bodyparts"][0, :, :3] for p in out]).astype(float)  # the first (only) animal
            pred[..., 0] *= scale[0]  # back to full resolution (paper step 2)
            pred[..., 1] *= scale[1]
            yield frames, pred
    finally:
        stop.set()
        _drain(frames_q)  # let go of the batches decoded ahead
        reader.join(timeout=5)  # it sees the stop within 0.1 s, even waiting for a buffer


def _check_length(video: str, n_header: int, decoded: int) -> None:
    if decoded == 0:
        raise VideoError(f"{video}: no decodable frames")
    if n_header and abs(n_header - decoded) > 1:
        raise VideoError(f"{video}: the header says {n_header} frames, {decoded} decoded (truncated?)")


def _write_h5(pred: np.ndarray, scorer: str, bodyparts: list[str], target: Path) -> Path:
    with atomic_write(target) as tmp:
        dlc_frame(pred, scorer, bodyparts).to_hdf(tmp, key="df_with_missing", format="table", mode="w")
    return target


def video_to_keypoints(
    video: str, runner, scorer: str, bodyparts: list[str], dest: Path, batch: int, analysis_height: int | None
) -> Path:
    """``painface keypoints`` in memory: DeepLabCut's ``.h5`` for one video at full
    resolution, from frames downscaled in memory (no intermediate video)."""
    cap, n_header, _, (w, h) = open_video(video)
    cap.release()
    size = analysis_size(w, h, analysis_height)
    scale = (w / size[0], h / size[1]) if size else (1.0, 1.0)
    pool = FramePool(POOL_BATCHES * batch)
    preds = []
    with closing(_keypoint_batches(video, runner, bodyparts, batch, size, scale, pool)) as batches:
        for frames, pred in batches:
            preds.append(pred)
            pool.give_back(frames)
    _check_length(video, n_header, sum(len(p) for p in preds))
    target = _write_h5(np.concatenate(preds), scorer, bodyparts, Path(dest) / f"{Path(video).stem}{scorer}.h5")
    write_json(
        target.with_name(f"{target.stem}_scale.json"),
        {
            "video": str(video),
            "full_size": [w, h],
            "analysis_size": list(size or (w, h)),
            "scale_x": scale[0],
            "scale_y": scale[1],
        },
    )
    return target


def video_to_part(
    row: dict,
    store_root: Path,
    cfg: ExtractConfig,
    runner,
    scorer: str,
    bodyparts: list[str],
    dest: Path,
    batch: int,
    analysis_height: int | None,
) -> dict:
    """One video: decode once, keypoints by DeepLabCut, crops by the paper's rules."""
    video = str(row["video"])
    cap, n_header, _, (w, h) = open_video(video)
    cap.release()
    size = analysis_size(w, h, analysis_height)
    scale = (w / size[0], h / size[1]) if size else (1.0, 1.0)
    part = PartCropper(row, store_root, cfg, w, h)
    pool = FramePool(POOL_BATCHES * batch)
    work: queue.Queue = queue.Queue()  # bounded by the pool: cropping runs behind only while buffers last
    failed: list = []
    cropper = threading.Thread(target=_cropper, args=(part, pool, work, failed), daemon=True)
    cropper.start()
    preds, rules, reasons = [], [], []
    frame_no = 0
    try:
        batches = _keypoint_batches(video, runner, bodyparts, batch, size, scale, pool)
        with closing(batches):  # stops the reader
            for frames, pred in batches:
                if failed:
                    raise failed[0]
                preds.append(pred)
                kp = face_arrays(pred, bodyparts, cfg.bodypart_map)
                rule, centre, reason = part.rules_for(kp)
                rules.append(rule)
                reasons.append(reason)
                work.put((frames, frame_no, rule, centre, kp))
                frame_no += len(frames)
        work.put(None)
        cropper.join()
        if failed:
            raise failed[0]
        _check_length(video, n_header, frame_no)
        target = _write_h5(np.concatenate(preds), scorer, bodyparts, dest / f"{Path(video).stem}{scorer}.h5")
        summary = part.publish(np.concatenate(rules), np.concatenate(reasons), frame_no)
        summary["keypoints"] = str(target)
        return summary
    except BaseException:
        work.put(None)
        cropper.join(timeout=30)
        part.abort()
        raise


def _drain(q: queue.Queue) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


def build_runner(
    config: str, shuffle: int = 1, snapshot_index: int | str = -1, device: str = "cpu", batch_size: int = 8
):
    """DeepLabCut 3's pose runner for a project's snapshot, as ``analyze_videos`` builds it."""
    from deeplabcut.pose_estimation_pytorch.apis import utils
    from deeplabcut.pose_estimation_pytorch.data import DLCLoader

    loader = DLCLoader(config, trainset_index=0, shuffle=shuffle)
    index, _ = utils.parse_snapshot_index_for_analysis(loader.project_cfg, loader.model_cfg, snapshot_index, None)
    snapshot = utils.get_model_snapshots(index, loader.model_folder, loader.pose_task)[0]
    loader.model_cfg["device"] = device
    individuals = loader.model_cfg["metadata"]["individuals"]
    runner = utils.get_pose_inference_runner(
        model_config=loader.model_cfg,
        snapshot_path=snapshot.path,
        max_individuals=len(individuals),
        batch_size=batch_size,
    )
    return runner, loader.scorer(snapshot, None), list(loader.model_cfg["metadata"]["bodyparts"])


def _job_runner(job: dict):
    """(runner, scorer, body parts, batch) for a job, on its device, with ``dest`` made."""
    from painface.dlc import _device

    Path(job["dest"]).mkdir(parents=True, exist_ok=True)
    device = _device(job["device"])
    batch = default_batch(device, job["batch_size"])
    return (*build_runner(job["config"], job["shuffle"], job["snapshot_index"], device, batch), batch)


def run_job(job: dict) -> dict:
    """The DeepLabCut subprocess side: every video of ``job["rows"]`` not yet in the store."""
    cfg = ExtractConfig(**job["extract"])
    root, dest = Path(job["store"]), Path(job["dest"])
    runner, scorer, bodyparts, batch = _job_runner(job)
    done = st.finished_units(root)
    summaries, errors = [], []
    for row in job["rows"]:
        if st.unit_name(row["session_id"], row["camera"]) in done:
            continue
        try:
            summaries.append(
                video_to_part(row, root, cfg, runner, scorer, bodyparts, dest, batch, job["analysis_height"])
            )
        except Exception as exc:  # one bad video fails alone, named
            errors.append(f"{row['video']}: {exc}")
        print(f"onepass: {len(summaries) + len(errors)}/{len(job['rows'])} videos", flush=True)
    return {"summaries": summaries, "errors": errors, "scorer": scorer}


def run_keypoints_job(job: dict) -> dict:
    """The DeepLabCut subprocess side of ``painface keypoints``: one runner, every video."""
    dest = Path(job["dest"])
    runner, scorer, bodyparts, batch = _job_runner(job)
    done, errors = {}, []
    for video in job["videos"]:
        try:
            done[video] = str(video_to_keypoints(video, runner, scorer, bodyparts, dest, batch, job["analysis_height"]))
        except Exception as exc:  # one bad video fails alone, named
            errors.append(f"{video}: {exc}")
        print(f"keypoints: {len(done) + len(errors)}/{len(job['videos'])} videos", flush=True)
    return {"keypoints": done, "errors": errors, "scorer": scorer}
