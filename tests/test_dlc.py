"""DeepLabCut ways (b) and (c) on the real open-field project in ../shared/data."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pandas as pd
import pytest
import yaml

from painface.dlc import DLCError, analyze_video, read_project, relocate_project, train_face_model
from painface.extract import ExtractConfig, extract
from painface.manifest import write_manifest
from painface.store import read_index
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    src = shared_data("dlc-openfield")
    dst = tmp_path_factory.mktemp("dlc") / "openfield"
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return relocate_project(dst / "config.yaml")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A short clip cut from the real video, to keep CPU analysis fast."""
    cap = cv2.VideoCapture(str(shared_data("dlc-openfield", "videos", "m3v1mp4.mp4")))
    path = tmp_path_factory.mktemp("clip") / "m3v1_clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for _ in range(45):
        ok, frame = cap.read()
        writer.write(frame)
    writer.release()
    return path


def test_unreadable_project_names_the_file(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("Task: [unclosed")
    with pytest.raises(DLCError, match="config.yaml: unreadable"):
        read_project(bad)
    placeholder = shared_data("dlc-openfield", "config.yaml")
    with pytest.raises(DLCError, match="project_path"):
        read_project(placeholder)


@pytest.mark.slow
def test_train_offline_analyze_downscaled_and_crop(project, clip, tmp_path):
    result = train_face_model(project, net_type="cspnext_s", epochs=2, batch_size=8, augment=False, image_size=256)
    assert result["snapshots"], "train_network wrote no snapshot"
    h5 = analyze_video(project, clip, tmp_path / "kp", analysis_size=(320, 240))
    scale = json.loads(next((tmp_path / "kp").glob("*_scale.json")).read_text())
    assert scale["scale_x"] == pytest.approx(2.0) and scale["scale_y"] == pytest.approx(2.0)
    wide = pd.read_hdf(h5, "df_with_missing")
    assert len(wide) == 45
    assert {"snout", "leftear", "rightear", "tailbase"} <= set(wide.columns.get_level_values("bodyparts"))
    # crop from DeepLabCut's output, mapping the open-field body parts onto the face points;
    # a two-epoch model is unsure, so the likelihood threshold is lowered for this check
    manifest = tmp_path / "manifest.csv"
    write_manifest(
        pd.DataFrame(
            [
                {
                    "session_id": "m3v1",
                    "mouse_id": "m3",
                    "sex": "male",
                    "strain": "C57BL/6",
                    "treatment": "none",
                    "phase": "pre",
                    "camera": "top",
                    "video": str(clip),
                    "keypoints": str(h5),
                    "fps": 30,
                    "treatment_time_s": 0,
                }
            ]
        ),
        manifest,
    )
    cfg = ExtractConfig(
        crop_size=64, threshold=0.0, bodypart_map={"nose": "snout", "right_eye": "rightear", "left_eye": "leftear"}
    )
    summary, errors = extract(manifest, tmp_path / "store", cfg, show_progress=False)
    assert not errors and summary.loc[0, "frames"] == 45
    assert len(read_index(tmp_path / "store")) == 45


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkilled_dlc_command_leaves_no_deeplabcut_subprocess(tmp_path):
    from tests.test_procs import PAINFACE, _alive, _children, _wait_gone

    src = shared_data("dlc-openfield")
    dst = tmp_path / "openfield"
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    relocate_project(dst / "config.yaml")
    proc = subprocess.Popen(
        [
            *PAINFACE,
            "dlc",
            "train",
            str(dst / "config.yaml"),
            "--net-type",
            "cspnext_s",
            "--epochs",
            "50",
            "--image-size",
            "256",
            "--no-augment",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end, kids = time.monotonic() + 60, set()
    while not kids and time.monotonic() < end:  # the DeepLabCut runner is a child process
        kids = (
            {k for k in _children(proc.pid) if b"painface.dlc" in Path(f"/proc/{k}/cmdline").read_bytes()}
            if proc.poll() is None
            else set()
        )
        time.sleep(0.1)
    assert kids, "no DeepLabCut subprocess appeared"
    time.sleep(2.0)
    kids = _children(proc.pid)  # with whatever it started in turn
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _wait_gone(kids, 15), f"DeepLabCut processes outlived painface: {_alive(kids)}"


def test_relocate_edits_the_project_with_deeplabcuts_own_writer(project):
    text = project.read_text()
    cfg = yaml.safe_load(text)
    assert cfg["project_path"] == str(project.parent)
    # the one labelled video, with its frames' real size (the shipped file had a placeholder key)
    assert cfg["video_sets"] == {str(project.parent / "videos" / "m4s1.mp4"): {"crop": "0, 640, 0, 480"}}
    assert "# Project path (change when moving around)" in text  # the file keeps its comments
