"""The one-pass path's threads (reader -> inference -> cropper) without DeepLabCut: a
stand-in runner answers with the synthetic recording's true keypoints, seen at the
analysis size, so the store must equal `extract` from the keypoint file, crop for crop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from painface import store as st
from painface.extract import ExtractConfig, PartCropper, extract, prepare_store
from painface.keypoints import FACE_POINTS, face_points, read_dlc
from painface.manifest import read_manifest
from painface.onepass import video_to_part


class TruthRunner:
    """DeepLabCut's runner interface: ``inference(images)`` -> one dict per image, in order."""

    def __init__(self, points: dict[str, np.ndarray], scale: float, shape: tuple[int, int]):
        self.points, self.scale, self.shape, self.next = points, scale, shape, 0

    def inference(self, images):
        out = []
        for image in images:
            assert image.shape[:2] == self.shape  # the reader downscaled it to the analysis size
            bp = np.stack([self.points[p][self.next] for p in FACE_POINTS]).copy()
            bp[:, :2] /= self.scale  # keypoints as DeepLabCut finds them on the small frame
            out.append({"bodyparts": bp[None]})
            self.next += 1
        return out


def _row(manifest, camera="cam1"):
    m = read_manifest(manifest)
    return m[(m.session_id == "ac_m01_post") & (m.camera == camera)].iloc[0].to_dict()


def test_one_pass_threads_give_the_store_that_extract_gives(manifest, tmp_path, monkeypatch):
    """Also: frames are decoded into reused buffers, never one still waiting to be cropped."""
    import time

    from painface.onepass import POOL_BATCHES, FramePool

    row = _row(manifest)
    cfg = ExtractConfig(crop_size=64)
    pts = face_points(read_dlc(row["keypoints"]))
    buffers, given_back = set(), []
    add, give_back = PartCropper.add, FramePool.give_back

    def slow_add(self, *args):
        time.sleep(0.01)  # a slow cropper: the reader would overwrite frames if it ran ahead of it
        return add(self, *args)

    def recorded(self, frames):
        buffers.update(f.__array_interface__["data"][0] for f in frames)
        given_back.extend(frames)
        return give_back(self, frames)

    monkeypatch.setattr(PartCropper, "add", slow_add)
    monkeypatch.setattr(FramePool, "give_back", recorded)
    # 320x180 analysed at 90 rows: half size, so keypoints are scaled back by 2 (paper step 2)
    runner = TruthRunner(pts, 2.0, (90, 160))
    one = prepare_store(tmp_path / "one", cfg)
    summary = video_to_part(
        {**row, "keypoints": None}, one, cfg, runner, "DLC_truth", list(FACE_POINTS), tmp_path / "kp", 5, 90
    )
    assert runner.next == summary["frames"]  # every frame went through inference once
    assert len(given_back) == summary["frames"] > 2 * POOL_BATCHES * 5  # the pool wrapped round...
    assert len(buffers) <= POOL_BATCHES * 5  # ...so the frames were decoded into reused buffers
    pd.DataFrame([row]).to_csv(tmp_path / "m.csv", index=False)
    _, errors = extract(tmp_path / "m.csv", tmp_path / "two", cfg, show_progress=False)
    assert not errors
    a, b = st.read_index(one), st.read_index(tmp_path / "two")
    pd.testing.assert_frame_equal(a.drop(columns=["image", "offset"]), b.drop(columns=["image", "offset"]))
    ra, rb = st.CropReader(one), st.CropReader(tmp_path / "two")
    for (_, x), (_, y) in zip(a.iterrows(), b.iterrows()):
        # (x["nbytes"], not x.nbytes: a Series has its own nbytes)
        crop_a = ra.read(x["image"], x["offset"], x["nbytes"])
        assert np.array_equal(crop_a, rb.read(y["image"], y["offset"], y["nbytes"]))
    # DeepLabCut's own layout beside it, at full resolution
    h5 = read_dlc(tmp_path / "kp" / f"{row['video'].rsplit('/', 1)[-1][:-4]}DLC_truth.h5")
    back = face_points(h5)
    for p in FACE_POINTS:
        np.testing.assert_allclose(back[p][: len(pts[p])], pts[p][: len(back[p])], equal_nan=True)


def test_a_failure_while_cropping_stops_the_video_and_publishes_nothing(manifest, tmp_path, monkeypatch):
    row = _row(manifest)
    cfg = ExtractConfig(crop_size=64)
    pts = face_points(read_dlc(row["keypoints"]))
    root = prepare_store(tmp_path / "s", cfg)
    calls = []

    def broken(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    original = PartCropper.add
    monkeypatch.setattr(PartCropper, "add", broken)
    with pytest.raises(OSError, match="disk full"):
        video_to_part(
            {**row, "keypoints": None},
            root,
            cfg,
            TruthRunner(pts, 1.0, (180, 320)),
            "D",
            list(FACE_POINTS),
            tmp_path / "kp",
            4,
            None,
        )
    assert st.finished_units(root) == set()
    assert not list((tmp_path / "kp").glob("*.h5"))


class SmallGPU(TruthRunner):
    """Runs out of memory on more than ``fits`` frames at once, as a GPU would."""

    def __init__(self, *args, fits: int):
        super().__init__(*args)
        self.fits, self.sizes = fits, []

    def inference(self, images):
        if len(images) > self.fits:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.sizes.append(len(images))
        return super().inference(images)


def test_a_batch_too_large_for_the_gpu_is_halved_not_fatal(manifest, tmp_path, capsys):
    from painface.onepass import default_batch, infer, video_to_keypoints

    assert (default_batch("cpu", None), default_batch("cuda:0", None), default_batch("cuda", 5)) == (8, 64, 5)
    row = _row(manifest)
    pts = face_points(read_dlc(row["keypoints"]))
    args = ("D", list(FACE_POINTS))
    ref = video_to_keypoints(row["video"], TruthRunner(pts, 1.0, (180, 320)), *args, tmp_path / "a", 8, None)
    small = SmallGPU(pts, 1.0, (180, 320), fits=3)
    got = video_to_keypoints(row["video"], small, *args, tmp_path / "b", 8, None)
    pd.testing.assert_frame_equal(pd.read_hdf(got), pd.read_hdf(ref))
    assert max(small.sizes) == 2 and small.next == len(pts["nose"])  # 8 -> 4 -> 2, and every frame once
    assert "batch now 2 frames" in capsys.readouterr().out
    # other errors, and running out of memory on a single frame, still fail
    with pytest.raises(RuntimeError, match="out of memory"):
        infer(SmallGPU(pts, 1.0, (180, 320), fits=0), [np.zeros((180, 320, 3), np.uint8)], [1])

    class Broken(TruthRunner):
        def inference(self, images):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        infer(Broken(pts, 1.0, (180, 320)), [np.zeros((180, 320, 3), np.uint8)] * 4, [4])


def test_deeplabcut_batch_size_is_checked_and_reaches_the_runner(manifest, tmp_path, monkeypatch, capsys):
    """painface.yaml's keypoints.batch_size and ``painface keypoints --batch-size``: a bad
    value fails naming the key, before anything runs; a good one reaches DeepLabCut's job."""
    import yaml

    from painface import dlc
    from painface.cli import main
    from painface.manifest import write_manifest
    from painface.project import ProjectError, init_project, load_project

    path = init_project(tmp_path / "p", pattern="{mouse_id}_{phase}_{camera}.mp4")
    doc = yaml.safe_load(path.read_text())
    for key, bad in [("batch_size", 0), ("batch_size", "8"), ("batch_size", True), ("analysis_height", 0)]:
        path.write_text(yaml.safe_dump({**doc, "keypoints": {**doc["keypoints"], key: bad}}))
        with pytest.raises(ProjectError, match=f"keypoints.{key}: must be a positive integer"):
            load_project(path)
    path.write_text(yaml.safe_dump({**doc, "keypoints": {**doc["keypoints"], "batch_size": 16}}))
    assert load_project(path)[1].keypoints.batch_size == 16

    seen = []

    def recorded(config, videos, dest, **kwargs):
        seen.append(kwargs["batch_size"])
        return {v: str(tmp_path / "kp.h5") for v in videos}, []

    monkeypatch.setattr(dlc, "keypoints_in_memory", recorded)
    m = read_manifest(manifest).head(2)
    m["keypoints"] = pd.NA
    write_manifest(m, tmp_path / "m.csv")
    with pytest.raises(dlc.DLCError, match="batch size: must be a positive number of frames, got 0"):
        dlc.add_keypoints(tmp_path / "m.csv", "dlc.yaml", tmp_path / "out0", batch_size=0)
    assert not (tmp_path / "out0").exists()  # failed before anything was written
    args = ["keypoints", str(tmp_path / "m.csv"), "--config", "dlc.yaml", "--out", str(tmp_path / "out")]
    assert main([*args, "--batch-size", "5"]) == 0 and seen == [5]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--batch-size", "0"])
    assert exit_.value.code == 2 and "--batch-size: '0' is not a positive number of frames" in capsys.readouterr().err
    assert seen == [5]
    # a SLURM array task (one chunk of videos) carries it too
    video = str(m["video"].iloc[0])
    assert dlc._analyze_chunk([("dlc.yaml", video, "out", 1, 720, "cpu", 7)]) == [(video, str(tmp_path / "kp.h5"))]
    assert seen == [5, 7]


def test_openmp_waits_passively_where_the_reader_downscales(manifest, monkeypatch):
    """Spinning OpenMP threads take the cores from the reader: a one-pass job that
    downscales (320x180 analysed at 90 rows) runs with OMP_WAIT_POLICY=PASSIVE, one that
    does not keeps OpenMP's default, and a policy the user set is never overridden."""
    from painface import dlc

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    video = _row(manifest)["video"]
    assert dlc.reader_env([video], 90) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert dlc.reader_env([video], 180) == dlc.reader_env([video], None) == {}
    seen = []
    monkeypatch.setattr(dlc, "read_project", lambda config: {})
    monkeypatch.setattr(dlc, "_run", lambda job, timeout, env: seen.append(env) or {"keypoints": {}, "errors": []})
    dlc.keypoints_in_memory("dlc.yaml", [video], "out", analysis_height=90)
    dlc.keypoints_in_memory("dlc.yaml", [video], "out", analysis_height=720)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    dlc.keypoints_in_memory("dlc.yaml", [video], "out", analysis_height=90)
    assert seen == [{"OMP_WAIT_POLICY": "PASSIVE"}, {}, {}]
