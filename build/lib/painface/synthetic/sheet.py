"""A contact sheet of synthetic faces: both coats, pain and no pain, across poses."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from painface.synthetic.recording import COATS, make_mouse
from painface.synthetic.render import Expression, Pose, render_face

YAWS = (0, 30, -45, 75, -95, 165)


def contact_sheet(out: str | Path, tile: int = 220, seed: int = 3, signal: float = 2.0) -> Path:
    rows = []
    for strain in COATS:
        mouse = make_mouse(f"sheet_{strain}", "male", strain, np.random.default_rng(seed))
        for intensity in (0.0, 1.0):
            tiles = []
            for j, yaw in enumerate(YAWS):
                img = np.full((tile, tile, 3), 80, np.uint8)
                cv2.rectangle(img, (0, int(tile * 0.7)), (tile, tile), (16, 16, 18), -1)
                render_face(
                    img,
                    mouse,
                    Pose(yaw=yaw, pitch=8 - 4 * j, roll=0, cx=tile / 2, cy=tile * 0.5, scale=tile * 0.17),
                    Expression(intensity=intensity, signal=signal),
                )
                cv2.putText(
                    img, f"yaw {yaw}", (6, tile - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (220, 220, 220), 1, cv2.LINE_AA
                )
                tiles.append(img)
            label = np.full((tile, 150, 3), 255, np.uint8)
            for k, text in enumerate((strain, f"pain, signal {signal:g}" if intensity else "no pain")):
                cv2.putText(
                    label, text, (8, tile // 2 - 10 + 24 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA
                )
            rows.append(np.hstack([label] + tiles))
    sheet = np.vstack(rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    cv2.imwrite(str(tmp), sheet)
    tmp.replace(out)
    return out
