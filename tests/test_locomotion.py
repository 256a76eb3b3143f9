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
