"""The paper's face-cropping rules (step 3), as pure functions over keypoint arrays.

Rules, with likelihood threshold 0.9 by default:
  (i)   nose and both eyes found: centre on the midpoint of the eyes;
  (ii)  nose and right eye only: centre on the right eye;
  (iii) nose and left eye only: centre on the left eye;
  (iv)  otherwise: no crop, the mouse is not facing the camera.
"""

from __future__ import annotations

import cv2
import numpy as np

from painface import defaults

RULE_BOTH, RULE_RIGHT, RULE_LEFT, RULE_SKIP = "i", "ii", "iii", "iv"
#: Why a rule-(iv) frame was skipped.
SKIP_NO_NOSE, SKIP_NO_EYE = "no_nose", "no_eye"

REFERENCE_CROP = defaults.CROP_PX  # pixels at ...
REFERENCE_ROWS = defaults.REFERENCE_ROWS  # ... the paper's 3840x2160 frames


def crop_size_for(frame_rows: int, crop_px: int = REFERENCE_CROP, reference_rows: int = REFERENCE_ROWS) -> int:
    """800 px at 2160 rows, scaled to the video's resolution."""
    return max(int(round(crop_px * frame_rows / reference_rows)), 8)


def crop_rules(
    nose: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray, threshold: float = defaults.LIKELIHOOD_THRESHOLD
):
    """Apply the rules to (n, 3) arrays of x, y, likelihood.

    Returns ``(rule, centre, reason)``: rule codes ("i".."iv") per frame, crop centres
    (n, 2; NaN where skipped) and the skip reason ("" where cropped). A NaN likelihood
    counts as below the threshold.
    """
    found = [np.nan_to_num(p[:, 2], nan=-1.0) >= threshold for p in (nose, right_eye, left_eye)]
    has_nose, has_right, has_left = found
    n = len(nose)
    rule = np.full(n, RULE_SKIP, dtype=object)
    centre = np.full((n, 2), np.nan)
    both = has_nose & has_right & has_left
    right_only = has_nose & has_right & ~has_left
    left_only = has_nose & has_left & ~has_right
    rule[both], rule[right_only], rule[left_only] = RULE_BOTH, RULE_RIGHT, RULE_LEFT
    centre[both] = (right_eye[both, :2] + left_eye[both, :2]) / 2  # rule (i): midpoint of the eyes
    centre[right_only] = right_eye[right_only, :2]  # rule (ii): only the right eye is reliable
    centre[left_only] = left_eye[left_only, :2]  # rule (iii): only the left eye is reliable
    reason = np.full(n, "", dtype=object)
    reason[(rule == RULE_SKIP) & ~has_nose] = SKIP_NO_NOSE
    reason[(rule == RULE_SKIP) & has_nose] = SKIP_NO_EYE
    return rule, centre, reason


def crop_box(centre, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a size x size box centred on ``centre``; may cross the border."""
    x0 = int(round(centre[0] - size / 2))
    y0 = int(round(centre[1] - size / 2))
    return x0, y0, x0 + size, y0 + size


def cut(frame: np.ndarray, box: tuple[int, int, int, int], pad_value: int = 0) -> np.ndarray:
    """Cut a box out of a frame; parts outside the frame are padded, never dropped."""
    x0, y0, x1, y1 = box
    h, w = frame.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx0 >= sx1 or sy0 >= sy1:
        return np.full((y1 - y0, x1 - x0) + frame.shape[2:], pad_value, frame.dtype)
    patch = frame[sy0:sy1, sx0:sx1]
    if (sx0, sy0, sx1, sy1) == (x0, y0, x1, y1):
        return patch
    return cv2.copyMakeBorder(patch, sy0 - y0, y1 - sy1, sx0 - x0, x1 - sx1, cv2.BORDER_CONSTANT, value=[pad_value] * 3)


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: low for blurred crops. The paper excluded
    blurry images before MGS scoring; the store keeps this per crop so that a kit, training
    or scoring can leave them out (``--min-sharpness``, ``data.min_sharpness``)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())
