"""DeepLabCut ways (b) and (c) on the real open-field project in ../shared/data."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
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


@pytest.fixture(scope="module")
def trained(project):
    """A DeepLabCut model trained offline for 2 epochs (cspnext_s, 256 px, no augmentation)."""
    result = train_face_model(project, net_type="cspnext_s", epochs=2, batch_size=8, augment=False, image_size=256)
    assert result["snapshots"], "train_network wrote no snapshot"
    return project


@pytest.mark.slow
def test_train_offline_analyze_downscaled_and_crop(trained, clip, tmp_path):
    project = trained
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


OPENFIELD_MAP = {"nose": "snout", "right_eye": "rightear", "left_eye": "leftear"}


def _manifest_for(video, tmp_path, keypoints=None):
    path = tmp_path / f"manifest_{Path(video).stem}.csv"
    row = {
        "session_id": "m3v1",
        "mouse_id": "m3",
        "sex": "male",
        "strain": "C57BL/6",
        "treatment": "none",
        "phase": "pre",
        "camera": "top",
        "video": str(video),
        "keypoints": keypoints,
        "fps": 30,
        "treatment_time_s": 0,
    }
    write_manifest(pd.DataFrame([row]), path)
    return path


def _widest_gap(values, low, high):
    """Midpoint and width of the widest gap between the sorted values within [low, high]."""
    v = np.unique(np.clip(np.ravel(values), low, high))
    i = int(np.argmax(np.diff(v)))
    return float((v[i] + v[i + 1]) / 2), float(v[i + 1] - v[i])


def test_widest_gap_by_hand():
    assert _widest_gap([0.1, 0.5, 0.52, 0.9, 0.95], 0.2, 0.93) == (pytest.approx(0.71), pytest.approx(0.38))


def _one_pass_against_analyze_videos(trained, video, tmp_path):
    """Decode once, DeepLabCut in memory, crop: the keypoints equal analyze_videos' on a
    lossless copy of the same downscaled (half-size) frames, and the store holds the same
    crops as the two-pass path. Returns the one pass's DeepLabCut frame."""
    from painface.dlc import extract_onepass

    cap = cv2.VideoCapture(str(video))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    lossless = tmp_path / f"{Path(video).stem}_small.avi"
    writer = cv2.VideoWriter(str(lossless), cv2.VideoWriter_fourcc(*"FFV1"), 30, (w // 2, h // 2))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA))  # as the one-pass path does
        n += 1
    writer.release()
    ref = pd.read_hdf(analyze_video(trained, lossless, tmp_path / "ref", analysis_size=None), "df_with_missing")
    # a 2-epoch model is unsure: a threshold inside the middle half of what the rules test
    # (nose and the better eye) splits the frames into cropped and skipped. It sits in the
    # widest gap between the likelihoods there, never on one: the one-pass likelihoods differ
    # by float noise, and a frame on the threshold could then fall either way.
    like = ref.xs("likelihood", axis=1, level="coords").droplevel(0, axis=1)
    face = np.minimum(like["snout"], np.maximum(like["rightear"], like["leftear"]))
    threshold, _ = _widest_gap(like[["snout", "rightear", "leftear"]].to_numpy(), *np.quantile(face, [0.25, 0.75]))
    cfg = ExtractConfig(crop_size=64, threshold=threshold, bodypart_map=OPENFIELD_MAP)
    summary, errors = extract_onepass(
        _manifest_for(video, tmp_path),
        tmp_path / "store",
        cfg,
        trained,
        tmp_path / "kp",
        analysis_height=h // 2,
        device="cpu",
    )
    assert not errors and summary.loc[0, "frames"] == n
    h5 = next((tmp_path / "kp").glob(f"{Path(video).stem}DLC_*.h5"))
    mine = pd.read_hdf(h5, "df_with_missing")
    assert list(mine.columns) == list(ref.columns)  # DeepLabCut's own layout and scorer
    coords = ref.columns.get_level_values("coords")
    xy = coords != "likelihood"
    # full resolution is 2x the analysis size in both directions
    diff = np.abs(mine.loc[:, xy].to_numpy() - 2 * ref.loc[:, xy].to_numpy())
    # the issue asks for 0.5 px where likelihood >= 0.9; this unsure model reaches 0.9 nowhere,
    # so every keypoint is held to it
    assert (diff <= 0.5).all()
    noise = np.abs(mine.loc[:, ~xy].to_numpy() - ref.loc[:, ~xy].to_numpy()).max()
    assert noise < 1e-3
    # the same crops as the two-pass path from the reference keypoints, scaled back
    full = ref.copy()
    full.loc[:, xy] = 2 * ref.loc[:, xy].to_numpy()
    ref_h5 = tmp_path / "ref_full.h5"
    full.to_hdf(ref_h5, key="df_with_missing", format="table", mode="w")
    extract(_manifest_for(video, tmp_path, str(ref_h5)), tmp_path / "two_pass", cfg, show_progress=False)
    one, two = read_index(tmp_path / "store"), read_index(tmp_path / "two_pass")
    assert 0 < len(one) < n
    # equal, but for a frame whose likelihood lies within the float noise of the threshold
    differ = {int(c.rsplit("/", 1)[1]) for c in set(one["crop_id"]) ^ set(two["crop_id"])}
    assert all(abs(face.iloc[f] - threshold) <= noise for f in differ), sorted(differ)
    return mine


@pytest.mark.slow
def test_one_pass_equals_analyze_videos_on_a_lossless_copy(trained, clip, tmp_path):
    """On the real open-field video; ``painface keypoints`` writes the same .h5."""
    mine = _one_pass_against_analyze_videos(trained, clip, tmp_path)
    assert (tmp_path / "kp" / "manifest.csv").exists()
    # `painface keypoints` runs the same runner on the same frames, without the crops
    from painface.cli import main

    args = ["--config", str(trained), "--out", str(tmp_path / "kp2"), "--analysis-height", "240", "--device", "cpu"]
    assert main(["keypoints", str(_manifest_for(clip, tmp_path)), *args]) == 0
    only = pd.read_hdf(next((tmp_path / "kp2").glob("m3v1_clipDLC_*.h5")), "df_with_missing")
    pd.testing.assert_frame_equal(only, mine)
    scale = json.loads(next((tmp_path / "kp2").glob("*_scale.json")).read_text())
    assert scale["analysis_size"] == [320, 240] and scale["scale_x"] == scale["scale_y"] == 2.0
    m = pd.read_csv(tmp_path / "kp2" / "manifest.csv")
    assert m.loc[0, "keypoints"].endswith(".h5") and not list((tmp_path / "kp2").glob("*.mp4"))  # no video copy


@pytest.mark.slow
def test_one_pass_equals_analyze_videos_on_a_synthetic_recording(trained, manifest, tmp_path):
    """The same on a synthetic recording (320x180, its own codec and length): the model
    finds no mouse face it was trained on, but both paths must find the same points."""
    from painface.manifest import read_manifest

    video = read_manifest(manifest)["video"].iloc[0]
    assert len(_one_pass_against_analyze_videos(trained, video, tmp_path)) > 100


@pytest.mark.slow
def test_painface_run_with_a_deeplabcut_project_goes_in_one_pass(trained, clip, tmp_path):
    import yaml

    from painface.pipeline import run_project
    from painface.project import init_project

    project = tmp_path / "p"
    init_project(project, pattern="{mouse_id}_clip.mp4", phase="post")
    shutil.copyfile(clip, project / "videos" / "m3v1_clip.mp4")
    (project / "animals.csv").write_text("mouse_id,sex,strain,treatment\nm3v1,male,C57BL/6,none\n")
    doc = yaml.safe_load((project / "painface.yaml").read_text())
    doc["keypoints"].update(
        dlc_config=str(trained), bodypart_map=OPENFIELD_MAP, analysis_height=240, device="cpu", batch_size=4
    )
    doc["extract"].update(crop_size=64, threshold=0.0, workers=1)
    (project / "painface.yaml").write_text(yaml.safe_dump(doc))
    done = run_project(project, until="extract", show_progress=False)
    assert done["keypoints"] == "not needed" and done["extract"] == "ran"  # keypoints came from the same pass
    assert len(list((project / "keypoints").glob("m3v1_clipDLC_*.h5"))) == 1
    assert len(read_index(project / "store")) == 45
    again = run_project(project, until="extract", show_progress=False)
    assert again["extract"] == "up to date"  # the new keypoint file is an output, not a changed input
