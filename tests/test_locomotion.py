import cv2
import numpy as np
import pytest

from painface.locomotion import background, centroid, distance_per_second, track
from tests.conftest import shared_data

# Body centroids (tail excluded) labelled by hand on zoomed frames of the real video, +-10 px.
HAND_LABELS = {0: (120, 137), 500: (217, 385), 1000: (354, 410), 1500: (80, 367), 2000: (397, 107), 2300: (333, 420)}


def test_track_follows_the_mouse_in_the_real_open_field_video():
    video = shared_data("dlc-openfield", "videos", "m3v1mp4.mp4")
    bg = background(video)
    cap = cv2.VideoCapture(str(video))
    errors = []
    for frame, (hx, hy) in HAND_LABELS.items():
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, img = cap.read()
        x, y, area = centroid(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), bg)
        errors.append(np.hypot(x - hx, y - hy))
    # the mouse is ~100 px long here; the hand labels are good to ~10 px
    assert max(errors) < 20, errors
    assert np.mean(errors) < 12, errors


def test_distance_per_second_by_hand():
    import pandas as pd

    # 2 fps: moves 3-4-5 triangle steps: (0,0)->(3,4)->(3,4)->(6,8)
    tr = pd.DataFrame({"time_s": [0, 0.5, 1.0, 1.5], "x": [0, 3, 3, 6], "y": [0, 4, 4, 8]})
    d = distance_per_second(tr, cm_per_pixel=0.1)
    assert list(d["distance_px"]) == [5.0, 5.0]
    assert list(d["distance_cm"]) == pytest.approx([0.5, 0.5])


def test_synthetic_moving_blob_is_tracked(tmp_path):
    path = tmp_path / "blob.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(30):
        img = np.full((120, 160, 3), 200, np.uint8)
        cv2.circle(img, (20 + 4 * i, 60), 8, (20, 20, 20), -1)
        w.write(img)
    w.release()
    tr = track(path, show_progress=False)
    np.testing.assert_allclose(tr["x"].to_numpy()[5:25], 20 + 4 * np.arange(5, 25), atol=1.5)


def _blob_video(path, step_px, fps=10, n=40):
    """A dark disc crossing a grey arena at step_px pixels per frame, bouncing at the walls."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (240, 120))
    x, d = 20.0, 1
    for _ in range(n):
        img = np.full((120, 240, 3), 200, np.uint8)
        cv2.circle(img, (int(round(x)), 60), 8, (20, 20, 20), -1)
        w.write(img)
        if not 20 <= x + d * step_px <= 220:
            d = -d
        x += d * step_px
    w.release()


def test_groups_compared_with_the_papers_tests(tmp_path):
    import pandas as pd
    from scipy import stats

    from painface.cli import main
    from painface.locomotion import LocomotionError, compare_locomotion

    speeds = {"vehicle": [4, 5, 6], "drug": [1, 1.5, 2]}  # px per frame
    rows = []
    for group, steps in speeds.items():
        for k, step in enumerate(steps):
            _blob_video(tmp_path / f"{group}{k}.mp4", step)
            rows.append({"video": f"{group}{k}.mp4", "animal": f"{group}{k}", "group": group})
    pd.DataFrame(rows).to_csv(tmp_path / "animals.csv", index=False)
    result = compare_locomotion(tmp_path / "animals.csv", tmp_path / "out", control="vehicle")
    per_animal = pd.read_csv(tmp_path / "out" / "per_animal.csv")
    # 10 fps: step px/frame -> 10 * step px/s (rounding the disc to whole pixels costs < 1 px/frame)
    expected = [10 * s for steps in speeds.values() for s in steps]
    np.testing.assert_allclose(per_animal["distance_px_per_s"], expected, rtol=0.15)
    ref = stats.ttest_ind(per_animal.distance_px_per_s[3:], per_animal.distance_px_per_s[:3])
    assert result.loc[0, "test"] == "unpaired t-test" and result.loc[0, "p"] == pytest.approx(ref.pvalue)
    assert result.loc[0, "p"] < 0.01 and (tmp_path / "out" / "locomotion_groups.png").exists()
    pd.DataFrame(rows).drop(columns="animal").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(LocomotionError, match="bad.csv: missing column 'animal'"):
        compare_locomotion(tmp_path / "bad.csv", tmp_path / "o2", control="vehicle")
    assert main(["locomotion", str(tmp_path / "animals.csv"), "--out", str(tmp_path / "o3")]) == 1  # no --control


def test_synthetic_locomotion_study_through_the_command_line(tmp_path):
    """experiments/locomotion.yaml, shrunk: painface synth -> painface locomotion, checked
    against the distance each synthetic mouse really walked."""
    import subprocess
    import sys

    import pandas as pd

    from tests.conftest import ROOT

    cli = [sys.executable, "-c", "import sys; from painface.cli import main; sys.exit(main())"]
    r = subprocess.run(
        [
            *cli,
            "synth",
            str(ROOT / "experiments" / "locomotion.yaml"),
            "--out",
            str(tmp_path / "loco"),
            "--fps",
            "10",
            "--width",
            "480",
            "--height",
            "270",
            "--minutes",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-1500:]
    cm_per_px = float((tmp_path / "loco" / "scale.txt").read_text().split()[1])
    assert cm_per_px == pytest.approx(60 / 270)
    r = subprocess.run(
        [
            *cli,
            "locomotion",
            str(tmp_path / "loco" / "animals.csv"),
            "--control",
            "vehicle",
            "--cm-per-pixel",
            str(cm_per_px),
            "--out",
            str(tmp_path / "res"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-1500:]
    measured = pd.read_csv(tmp_path / "res" / "per_animal.csv").set_index("animal")["distance_cm_per_s"]
    truth = pd.read_csv(tmp_path / "loco" / "truth_per_second.csv").groupby("animal")["distance_cm"].mean()
    assert len(measured) == 12
    # per animal within 15 % of the true mean distance per second (the tracker sees pixels)
    np.testing.assert_allclose(measured.loc[truth.index], truth, rtol=0.15)
    stats = pd.read_csv(tmp_path / "res" / "statistics.csv")
    assert stats.loc[0, "test"] == "unpaired t-test" and stats.loc[0, "group"] == "ac_1.0"
    assert stats.loc[0, "mean"] < stats.loc[0, "control_mean"]  # AC mice walk less
