"""Project folders, batch discovery and ``painface run``: a synthetic study laid out as a lab
would have it (videos named by a pattern, an animals.xlsx, DeepLabCut's own file names, no
ground truth), and the real two-camera DeepLabCut recordings."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from painface.manifest import read_manifest
from tests.conftest import lab_folder as _lab_folder
from tests.conftest import shared_data

PAINFACE = [sys.executable, "-m", "painface"]
ANALYSIS = {
    "group_column": "treatment",
    "control": "ac",
    "order": ["ac", "b6"],
    "windows": {"pre": [-1, 0], "post": [0, 1]},
    "summary_window": "post",
    "bin_s": 60,
}


def _cli(*args, cwd=None, check=True, timeout=900):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([*PAINFACE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def checkpoint(quick_checkpoint):
    """A small trained model (any model will do: the tests compare two routes to one answer)."""
    return quick_checkpoint


def _configure(project: Path, checkpoint: Path, **extract) -> None:
    doc = yaml.safe_load((project / "painface.yaml").read_text())
    doc["animals"] = "animals.xlsx"
    doc["model"]["checkpoint"] = str(checkpoint)
    doc["extract"].update({"crop_size": 64, "workers": 2, **extract})
    doc["analysis"] = dict(ANALYSIS)
    (project / "painface.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def lab(manifest, checkpoint, tmp_path_factory):
    project = _lab_folder(manifest, tmp_path_factory.mktemp("lab") / "study")
    _cli("init", project, "--pattern", "{mouse_id}_{phase}_{camera}.mp4")
    _configure(project, checkpoint)
    return project


def test_init_writes_a_project_and_refuses_to_overwrite(tmp_path):
    r = _cli("init", tmp_path / "p")
    assert "painface manifest build" in r.stdout
    assert {p.name for p in (tmp_path / "p").iterdir()} >= {"painface.yaml", "animals.csv", "videos", "store"}
    again = _cli("init", tmp_path / "p", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    doc = yaml.safe_load((tmp_path / "p" / "painface.yaml").read_text())
    doc["extract"]["treshold"] = 0.8
    (tmp_path / "p" / "painface.yaml").write_text(yaml.safe_dump(doc))
    bad = _cli("manifest", "build", tmp_path / "p", check=False)
    assert bad.returncode == 1 and "extract: unknown key 'treshold'" in bad.stderr.strip().splitlines()[-1]


def test_manifest_build_finds_videos_animals_and_deeplabcut_files(lab, manifest):
    r = _cli("manifest", "build", lab)
    built = read_manifest(lab / "manifest.csv")
    original = read_manifest(manifest)
    key = ["session_id", "camera"]
    a = built.sort_values(key).reset_index(drop=True)
    b = original.sort_values(key).reset_index(drop=True)
    for col in ("session_id", "mouse_id", "sex", "strain", "treatment", "phase", "camera", "fps", "treatment_time_s"):
        assert a[col].tolist() == b[col].tolist(), col
    assert all(Path(k).name.startswith(Path(v).stem + "DLC_") for k, v in zip(a["keypoints"], a["video"]))
    assert "notes_about_day1.mp4: name does not match" in r.stderr
    assert "mouse 'never_filmed' has no video" in r.stderr


def test_cameras_of_a_session_must_agree(lab, tmp_path):
    import cv2

    project = tmp_path / "p"
    shutil.copytree(lab, project, ignore=shutil.ignore_patterns("store", "results", "predictions", ".painface"))
    video = sorted((project / "videos").glob("*_cam2.mp4"))[0]
    session = video.name.rsplit("_", 1)[0]
    # cam2 of one session loses its last 3 frames (a camera stopped early)
    cap = cv2.VideoCapture(str(video))
    frames = [f for ok, f in iter(lambda: cap.read(), (False, None))]
    fps = cap.get(cv2.CAP_PROP_FPS)
    tmp = video.with_name("short.mp4")
    out = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for f in frames[:-3]:
        out.write(f)
    out.release()
    os.replace(tmp, video)
    r = _cli("manifest", "build", project, check=False)
    assert r.returncode == 1 and f"session '{session}'" in r.stderr and "frame counts" in r.stderr
    # declared: cam1 started 3 frames early
    doc = yaml.safe_load((project / "painface.yaml").read_text())
    doc["videos"]["frame_offsets"] = {session: {"cam1": 3}}
    (project / "painface.yaml").write_text(yaml.safe_dump(doc))
    _cli("manifest", "build", project)
    m = read_manifest(project / "manifest.csv").set_index(["session_id", "camera"])
    assert m.loc[(session, "cam1"), "frame_offset"] == 3 and m.loc[(session, "cam2"), "frame_offset"] == 0


def _outputs(project: Path) -> dict:
    res = project / "results"
    return {
        "per_minute": pd.read_csv(res / "per_minute.csv"),
        "per_animal": pd.read_csv(res / "per_animal.csv"),
        "statistics": pd.read_csv(res / "statistics_windows.csv"),
        "xlsx": pd.read_excel(res / "results.xlsx", sheet_name=None),
        "predictions": pd.read_parquet(project / "predictions" / "predictions.parquet")
        .sort_values("crop_id")
        .reset_index(drop=True)[["crop_id", "p_pain"]],
    }


def _assert_same(a: dict, b: dict) -> None:
    for key in ("per_minute", "per_animal", "statistics", "predictions"):
        pd.testing.assert_frame_equal(a[key], b[key], obj=key)
    assert a["xlsx"].keys() == b["xlsx"].keys()
    for sheet in a["xlsx"]:
        pd.testing.assert_frame_equal(a["xlsx"][sheet], b["xlsx"][sheet], obj=sheet)


@pytest.mark.slow
def test_run_matches_the_separate_commands_and_reruns_only_what_changed(lab, checkpoint, tmp_path):
    from painface.pipeline import run_project

    r = _cli("run", lab, "--quiet")
    assert "report" in r.stderr.strip().splitlines()[-1]
    report = lab / "results" / "report.html"
    assert report.exists() and "likelihood &gt;= 0.9" in report.read_text()  # HTML-escaped
    # the same study through today's separate commands
    sep = tmp_path / "separate"
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "study", "analysis": ANALYSIS}, sort_keys=False))
    _cli("extract", lab / "manifest.csv", "--store", sep / "store", "--crop-size", 64, "--workers", 2)
    _cli("score", "--ckpt-path", checkpoint, "--store", sep / "store", "--out", sep / "pred.parquet")
    _cli("analyze", study, "--predictions", sep / "pred.parquet", "--store", sep / "store", "--out", sep / "results")
    for name in ("per_animal.csv", "statistics_windows.csv", "per_minute.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(lab / "results" / name), pd.read_csv(sep / "results" / name))
    sheets = pd.read_excel(lab / "results" / "results.xlsx", sheet_name=None)
    assert list(sheets) == ["per_minute", "windows", "statistics", "about"]
    # Prism's grouped layout: one column block per group, one column per animal
    wide = pd.read_excel(lab / "results" / "results.xlsx", sheet_name="per_minute", header=[0, 1], index_col=0)
    assert list(dict.fromkeys(wide.columns.get_level_values(0))) == ["ac", "b6"]

    # `painface review` finds the project's results, store, predictions and model, from
    # the project folder or from its results folder
    from painface.review import locate

    for where in (lab, lab / "results"):
        src = locate(where)
        assert Path(src.results).resolve() == (lab / "results").resolve()
        assert Path(src.store).resolve() == (lab / "store").resolve()
        assert Path(src.predictions).resolve() == (lab / "predictions" / "predictions.parquet").resolve()
        assert Path(src.checkpoint).resolve() == Path(checkpoint).resolve()

    # nothing changed: nothing runs
    assert set(run_project(lab, show_progress=False).values()) <= {"up to date", "not needed"}
    # an analysis setting: only analyze
    doc = yaml.safe_load((lab / "painface.yaml").read_text())
    doc["analysis"]["windows"]["post"] = [0, 0.5]
    (lab / "painface.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    done = run_project(lab, show_progress=False)
    assert [s for s, v in done.items() if v == "ran"] == ["analyze"]
    # a crop rule: extract and everything after it
    doc["extract"]["threshold"] = 0.95
    (lab / "painface.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    done = run_project(lab, show_progress=False)
    assert [s for s, v in done.items() if v == "ran"] == ["extract", "score", "analyze"]
    from painface.store import store_meta

    assert store_meta(lab / "store")["extraction"]["threshold"] == 0.95
    # and back, so later tests see the module's project as configured
    doc["extract"]["threshold"] = 0.9
    doc["analysis"] = dict(ANALYSIS)
    (lab / "painface.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    run_project(lab, show_progress=False)


@pytest.mark.slow
def test_run_killed_at_three_moments_finishes_with_identical_outputs(lab, checkpoint, manifest, tmp_path):
    from painface.pipeline import run_project

    if not (lab / "results" / "report.html").exists():
        run_project(lab, show_progress=False)
    reference = _outputs(lab)
    project = _lab_folder(manifest, tmp_path / "killed" / "study")  # same name: the report is titled by it
    _cli("init", project, "--pattern", "{mouse_id}_{phase}_{camera}.mp4")
    _configure(project, checkpoint)
    t0 = time.time()
    _cli("run", project, "--quiet")
    length = time.time() - t0
    shutil.rmtree(project / "store")
    shutil.rmtree(project / "results")
    (project / ".painface" / "state.json").unlink()
    # kills early, midway and late in a full run (fractions of its measured length)
    for fraction in (0.2, 0.5, 0.8):
        proc = subprocess.Popen(
            [*PAINFACE, "run", str(project), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        time.sleep(fraction * length)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _cli("run", project, "--quiet")
    _assert_same(_outputs(project), reference)
    assert not list(project.glob(".results-*")) and not list(project.glob(".old-*"))


def test_real_two_camera_recordings_through_manifest_build_and_extract(tmp_path):
    src = shared_data("dlc-two-camera")
    project = tmp_path / "two_camera"
    r = _cli("init", project, "--pattern", "{mouse_id}_camera-{camera}.avi", check=False)
    assert r.returncode == 1 and "give --phase" in r.stderr and not project.exists()
    _cli("init", project, "--pattern", "{mouse_id}_camera-{camera}.avi", "--phase", "post")
    for p in src.iterdir():
        if p.suffix in (".avi", ".h5"):
            os.symlink(p, project / "videos" / p.name)  # DeepLabCut's files beside the videos, as it writes them
    (project / "animals.csv").write_text("mouse_id,sex,strain,treatment\nvid1,female,BALB/c,ac\n")
    doc = yaml.safe_load((project / "painface.yaml").read_text())
    doc["keypoints"]["bodypart_map"] = {"nose": "bodypart1", "right_eye": "bodypart2", "left_eye": "bodypart3"}
    doc["extract"].update({"crop_size": 64, "threshold": 0.0, "workers": 1})
    (project / "painface.yaml").write_text(yaml.safe_dump(doc))
    _cli("manifest", "build", project)
    m = read_manifest(project / "manifest.csv")
    assert sorted(m["camera"]) == ["1", "2"] and set(m["session_id"]) == {"vid1_post"}
    assert m["fps"].tolist() == [30.0, 30.0]
    _cli("run", project, "--until", "extract", "--quiet")
    from painface.store import read_index

    idx = read_index(project / "store")
    # threshold 0: every frame of both views gives a crop, frame indices shared by the cameras
    assert idx.groupby("camera")["frame"].apply(sorted).tolist() == [list(range(12)), list(range(12))]
    assert not (project / "predictions" / "predictions.parquet").exists()


def test_bad_project_inputs_name_the_key(tmp_path):
    _cli("init", tmp_path / "p")
    doc = yaml.safe_load((tmp_path / "p" / "painface.yaml").read_text())
    doc["videos"]["pattern"] = "{mouse}_{phase}.mp4"
    (tmp_path / "p" / "painface.yaml").write_text(yaml.safe_dump(doc))
    r = _cli("run", tmp_path / "p", check=False)
    assert r.returncode == 1 and "videos.pattern: unknown field '{mouse}'" in r.stderr
    r = _cli("run", tmp_path / "p", "--until", "extrct", check=False)
    assert r.returncode == 1
    r = _cli("run", tmp_path / "nowhere", check=False)
    assert r.returncode == 1 and "painface init" in r.stderr
