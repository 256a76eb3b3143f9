import cv2
import numpy as np
import pandas as pd
import pytest

from painface.synthetic.recording import SessionSpec, make_mouse, render_session
from painface.synthetic.render import ACTION_UNITS, Expression, Mouse, Pose, region_masks, render_face


def _spec(seed=3, seconds=2.0):
    mouse = make_mouse("m1", "male", "BALB/c", np.random.default_rng(seed))
    return SessionSpec(
        "m1_post", mouse, "post", "ac", seconds=seconds, fps=10, width=320, height=180, timeline=[(0, 0.8)], seed=seed
    )


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            return np.stack(out)
        out.append(f)


def test_same_seed_gives_identical_ground_truth_and_frames(tmp_path):
    a = render_session(_spec(), tmp_path / "a")
    b = render_session(_spec(), tmp_path / "b")
    for name in (
        "m1_post_truth.parquet",
        "m1_post_cam1DLC_synthetic_painface_shuffle1_0.csv",
        "m1_post_cam2DLC_synthetic_painface_shuffle1_0.csv",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_hdf(a[0]["keypoints"]), pd.read_hdf(b[0]["keypoints"]))
    np.testing.assert_array_equal(_frames(a[0]["video"]), _frames(b[0]["video"]))
    c = render_session(_spec(seed=4), tmp_path / "c")
    assert not pd.read_hdf(c[0]["keypoints"]).equals(pd.read_hdf(a[0]["keypoints"]))


def test_dlc_files_follow_deeplabcut_conventions(tmp_path):
    rows = render_session(_spec(), tmp_path)
    h5 = rows[0]["keypoints"]
    df = pd.read_hdf(h5, key="df_with_missing")  # the key DeepLabCut writes
    assert df.columns.names == ["scorer", "bodyparts", "coords"]
    assert list(dict.fromkeys(df.columns.get_level_values("bodyparts"))) == ["nose", "right_eye", "left_eye"]
    assert list(df.columns.get_level_values("coords")[:3]) == ["x", "y", "likelihood"]
    assert list(df.index) == list(range(20))
    csv = pd.read_csv(h5.replace(".h5", ".csv"), header=[0, 1, 2], index_col=0)
    np.testing.assert_allclose(csv.to_numpy(), df.to_numpy())
    assert (
        ((df.xs("likelihood", axis=1, level="coords") >= 0) & (df.xs("likelihood", axis=1, level="coords") <= 1))
        .all()
        .all()
    )


def test_keypoints_land_on_the_drawn_features():
    img = np.full((240, 240, 3), 90, np.uint8)
    kp = render_face(img, Mouse("m"), Pose(yaw=0, cx=120, cy=120, scale=40), Expression(0.0))
    for eye in ("right_eye", "left_eye"):
        x, y, vis = kp[eye]
        assert vis > 0.5
        b, g, r = img[int(round(y)), int(round(x))]
        assert max(b, g, r) < 60, f"{eye} keypoint is not on the dark eye"
    # anatomical sides: facing the camera, the mouse's right eye appears on image left
    assert kp["right_eye"][0] < kp["left_eye"][0]
    x, y, _ = kp["nose"]
    b, g, r = img[int(round(y)), int(round(x))].astype(int)
    assert r > g + 30, "nose keypoint is not on the pink nose"


def test_profile_shows_one_eye_and_facing_away_none():
    img = np.zeros((200, 200, 3), np.uint8)
    kp = render_face(img, Mouse("m"), Pose(yaw=90, cx=100, cy=100, scale=30), Expression())
    assert kp["right_eye"][2] > 0.3 and kp["left_eye"][2] < 0
    kp = render_face(img, Mouse("m"), Pose(yaw=180, cx=100, cy=100, scale=30), Expression())
    assert kp["right_eye"][2] < 0 and kp["left_eye"][2] < 0 and kp["nose"][2] < 0


def test_likelihood_drops_when_face_hidden(tmp_path):
    rows = render_session(_spec(seconds=20), tmp_path)
    truth = pd.read_parquet(tmp_path / "m1_post_truth.parquet")
    t1 = truth[truth.camera == "cam1"].reset_index(drop=True)
    like = pd.read_hdf(rows[0]["keypoints"]).xs("likelihood", axis=1, level="coords").droplevel(0, axis=1)
    hidden = t1["right_eye_vis"] < 0
    shown = t1["right_eye_vis"] > 0.3
    assert hidden.sum() > 10 and shown.sum() > 10
    assert like["right_eye"][hidden].median() < 0.3
    assert like["right_eye"][shown].median() > 0.9


@pytest.mark.parametrize("au", ACTION_UNITS)
def test_each_action_unit_changes_pixels_only_inside_its_region(au):
    weights = {a: (1.0 if a == au else 0.0) for a in ACTION_UNITS}
    inside_total, changed_total = 0, 0
    for yaw in (0, 35, -60):
        pose = Pose(yaw=yaw, pitch=5, cx=150, cy=150, scale=45)
        neutral = np.full((300, 300, 3), 80, np.uint8)
        pain = neutral.copy()
        render_face(neutral, Mouse("m"), pose, Expression(0.0, weights))
        render_face(pain, Mouse("m"), pose, Expression(1.0, weights, signal=2.0))
        changed = np.abs(neutral.astype(int) - pain.astype(int)).max(axis=2) > 8
        mask = region_masks(neutral.shape, Mouse("m"), pose, Expression(1.0, weights, signal=2.0))[au] > 0
        changed_total += changed.sum()
        inside_total += (changed & mask).sum()
    assert changed_total > 30, f"{au} at full intensity changed almost nothing"
    assert inside_total / changed_total > 0.9


def test_signal_is_subtle_for_pixels_but_learnable(tmp_path):
    """Small-scale difficulty check: a linear model on 32x32 grey pixels stays weak."""
    from sklearn.linear_model import LogisticRegression

    from painface.synthetic.crops import render_crops

    x, y, mouse = render_crops(n_mice=16, per_mouse=60, seed=1, size=64)
    grey = np.stack([cv2.resize(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY), (32, 32)) for i in x]).reshape(len(x), -1) / 255
    train, test = mouse < 12, mouse >= 12
    acc = LogisticRegression(max_iter=2000, C=1.0).fit(grey[train], y[train]).score(grey[test], y[test])
    assert acc <= 0.75
