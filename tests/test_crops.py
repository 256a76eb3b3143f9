import numpy as np

from painface.crops import crop_box, crop_rules, crop_size_for, cut


def _pts(*rows):
    return np.array(rows, dtype=float)


def test_paper_crop_rules_by_hand():
    nose = _pts([10, 10, 0.95], [10, 10, 0.95], [10, 10, 0.95], [10, 10, 0.5], [10, 10, 0.95], [10, 10, np.nan])
    right = _pts([0, 0, 0.95], [4, 6, 0.95], [0, 0, 0.2], [0, 0, 0.99], [0, 0, 0.1], [0, 0, 0.99])
    left = _pts([20, 40, 0.91], [0, 0, np.nan], [8, 2, 0.9], [0, 0, 0.99], [0, 0, 0.1], [0, 0, 0.99])
    rule, centre, reason = crop_rules(nose, right, left, threshold=0.9)
    assert list(rule) == ["i", "ii", "iii", "iv", "iv", "iv"]
    np.testing.assert_allclose(centre[0], [10, 20])  # (i) midpoint of the eyes
    np.testing.assert_allclose(centre[1], [4, 6])  # (ii) right eye; NaN left likelihood = not found
    np.testing.assert_allclose(centre[2], [8, 2])  # (iii) left eye at exactly the threshold counts
    assert np.isnan(centre[3:]).all()
    assert list(reason) == ["", "", "", "no_nose", "no_eye", "no_nose"]


def test_threshold_is_configurable():
    nose, eye = _pts([0, 0, 0.8]), _pts([1, 1, 0.8])
    assert crop_rules(nose, eye, eye, threshold=0.9)[0][0] == "iv"
    assert crop_rules(nose, eye, eye, threshold=0.7)[0][0] == "i"


def test_crop_size_scales_with_resolution():
    assert crop_size_for(2160) == 800
    assert crop_size_for(720) == 267  # 800 * 720 / 2160 = 266.7
    assert crop_size_for(360) == 133


def test_crops_crossing_the_border_are_padded():
    frame = np.arange(100, dtype=np.uint8).reshape(10, 10, 1).repeat(3, axis=2)
    patch = cut(frame, crop_box((1, 1), 6))
    assert patch.shape == (6, 6, 3)
    assert patch[0, 0, 0] == 0 and patch[:2].max() == 0  # padded rows above the frame
    assert patch[2, 2, 0] == frame[0, 0, 0] and patch[5, 5, 0] == frame[3, 3, 0]
    inside = cut(frame, crop_box((5, 5), 4))
    np.testing.assert_array_equal(inside, frame[3:7, 3:7])
