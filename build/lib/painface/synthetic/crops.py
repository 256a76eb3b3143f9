"""Face crops rendered directly (no video), for the difficulty measurements.

Poses are drawn where the paper's crop rules would accept the face (nose and at
least one eye visible); the crop is centred as the rules centre it.
"""

from __future__ import annotations

import cv2
import numpy as np

from painface.synthetic.recording import COATS, make_mouse
from painface.synthetic.render import ACTION_UNITS, Expression, Pose, render_face


def render_crops(
    n_mice: int,
    per_mouse: int,
    seed: int = 0,
    signal: float = 1.0,
    intensity: float = 0.75,
    size: int = 96,
    strain: str = "BALB/c",
    au_weights: dict | None = None,
    return_keypoints: bool = False,
):
    """Returns images (N, size, size, 3) uint8, weak labels (N,), mouse index (N,) and, with
    ``return_keypoints``, keypoints in crop pixels (N, 3, 3: nose/right_eye/left_eye x, y, visibility).

    Half of each mouse's crops are "no pain" (intensity 0), half "pain".
    """
    rng = np.random.default_rng(seed)
    weights = au_weights or {au: 1.0 for au in ACTION_UNITS}
    images, labels, mice, points = [], [], [], []
    canvas = 3 * size
    for m in range(n_mice):
        mouse = make_mouse(f"m{m}", "male" if m % 4 else "female", strain, rng, COATS.get(strain))
        for k in range(per_mouse):
            label = k % 2
            level = float(np.clip(intensity * rng.uniform(0.8, 1.2), 0, 1)) if label else 0.0
            yaw = rng.uniform(-95, 95)
            pose = Pose(
                yaw=yaw,
                pitch=rng.normal(5, 12),
                roll=rng.normal(0, 7),
                cx=canvas / 2,
                cy=canvas / 2,
                scale=size * 0.225 * rng.uniform(0.85, 1.15),
                ear_back=float(np.clip(rng.normal(0, 14), -25, 35)),
                eye_open=float(rng.uniform(0.75, 1.1)),
            )
            img = np.full((canvas, canvas, 3), int(rng.uniform(60, 100)), np.uint8)
            cv2.rectangle(img, (0, int(canvas * rng.uniform(0.6, 0.75))), (canvas, canvas), (15, 15, 17), -1)
            kp = render_face(img, mouse, pose, Expression(intensity=level, weights=weights, signal=signal))
            r, le = kp["right_eye"], kp["left_eye"]
            if r[2] > 0.12 and le[2] > 0.12:
                cx, cy = (r[0] + le[0]) / 2, (r[1] + le[1]) / 2
            else:
                cx, cy = r[:2] if r[2] > le[2] else le[:2]
            cx, cy = cx + rng.normal(0, 2), cy + rng.normal(0, 2)
            top, left = int(cy - size / 2), int(cx - size / 2)
            crop = img[top : top + size, left : left + size]
            noise = rng.normal(0, 4, crop.shape)
            images.append(np.clip(crop + noise, 0, 255).astype(np.uint8))
            points.append([[kp[n][0] - left, kp[n][1] - top, kp[n][2]] for n in ("nose", "right_eye", "left_eye")])
            labels.append(label)
            mice.append(m)
    if return_keypoints:
        return np.stack(images), np.array(labels), np.array(mice), np.array(points, float)
    return np.stack(images), np.array(labels), np.array(mice)
