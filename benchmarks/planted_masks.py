"""Where does each planted action unit change the picture, by the automatic regions?

For each unit, a face is rendered without and with the expression (same mouse, same pose),
and the per-pixel difference is shared out over the keypoint-built regions of the crop. A
region the planted unit does not reach cannot be expected to lead a Grad-CAM ranking.

The second table asks the same of an ideal Grad-CAM: a map that is exactly the pixel
change, seen at the map's resolution (averaged into map_px x map_px cells, then resized
back bilinearly, as pytorch-grad-cam does). Where the planted region does not lead that
ranking, no Grad-CAM map of that size can be expected to put it first.

    python benchmarks/planted_masks.py > benchmarks/results/planted_masks.txt
"""

import cv2
import numpy as np
import pandas as pd

from painface.crops import RULE_SKIP, crop_box, crop_rules
from painface.regions import region_masks_from_keypoints
from painface.synthetic.planted import PLANTED_REGIONS
from painface.synthetic.recording import COATS, make_mouse
from painface.synthetic.render import ACTION_UNITS, Expression, Pose, render_face

size = 128
canvas = 3 * size
MAP_PX = (None, 32, 16, 4)  # None: the pixels themselves; 32, 16, 4: blocks 3, 4 and 6 at 128 px
ideal = []
for au in ACTION_UNITS:
    rng = np.random.default_rng(0)
    rows = []
    w = {a: float(a == au) for a in ACTION_UNITS}
    for m in range(6):
        mouse = make_mouse(f"m{m}", "male", "BALB/c", rng, COATS.get("BALB/c"))
        for k in range(20):
            pose = Pose(
                yaw=rng.uniform(-95, 95),
                pitch=rng.normal(5, 12),
                roll=rng.normal(0, 7),
                cx=canvas / 2,
                cy=canvas / 2,
                scale=size * 0.225,
                ear_back=float(np.clip(rng.normal(0, 14), -25, 35)),
                eye_open=float(rng.uniform(0.75, 1.1)),
            )
            imgs = []
            kps = []
            for lvl in (0.0, 0.9):
                img = np.full((canvas, canvas, 3), 80, np.uint8)
                cv2.rectangle(img, (0, int(canvas * 0.68)), (canvas, canvas), (15, 15, 17), -1)
                kps.append(render_face(img, mouse, pose, Expression(intensity=lvl, weights=w, signal=3.0)))
                imgs.append(img)
            kp = kps[0]
            # the paper's crop rules (crops.crop_rules), on the renderer's visibility with its own
            # "visible" cut (0.12, where the synthetic likelihood's sigmoid is centred)
            rule, centre, _ = crop_rules(*(np.array([kp[p]], float) for p in ("nose", "right_eye", "left_eye")), 0.12)
            if rule[0] == RULE_SKIP:
                continue
            x0, y0, _, _ = crop_box(centre[0], size)
            diff = np.abs(imgs[1].astype(float) - imgs[0].astype(float)).sum(2)[y0 : y0 + size, x0 : x0 + size]
            if diff.sum() == 0:
                continue
            pts = [
                (kp[p][0] - x0, kp[p][1] - y0, 1.0 if kp[p][2] > 0.12 else 0.0)
                for p in ("nose", "right_eye", "left_eye")
            ]
            ms = region_masks_from_keypoints(
                size, *pts, visible_threshold=0.5, image=imgs[0][y0 : y0 + size, x0 : x0 + size, ::-1] / 255.0
            )
            for n, mk in ms.items():
                if mk.any():
                    rows.append((n, diff[mk].sum() / diff.sum(), (diff[mk].sum() / diff.sum()) / mk.mean()))
            for px in MAP_PX:
                seen = diff
                if px is not None:
                    cells = cv2.resize(diff, (px, px), interpolation=cv2.INTER_AREA)
                    seen = cv2.resize(cells, (size, size), interpolation=cv2.INTER_LINEAR)
                for n, mk in ms.items():
                    if mk.any() and n != "others":  # "others" is not ranked
                        ideal.append((au, px or size, n, (seen[mk].sum() / seen.sum()) / mk.mean()))
    df = pd.DataFrame(rows, columns=["region", "share", "enr"]).groupby("region").mean()
    print(au, PLANTED_REGIONS[au])
    print(df.sort_values("enr", ascending=False).round(3).head(6).to_string())

print()
print("Ideal Grad-CAM (the pixel change itself) at each map size: rank of the planted region")
print("by mean enrichment over the faces, and the region that leads.")
table = pd.DataFrame(ideal, columns=["unit", "map_px", "region", "enr"])
rows = []
for (au, px), g in table.groupby(["unit", "map_px"], sort=False):
    mean = g.groupby("region")["enr"].mean().sort_values(ascending=False)
    planted = min(list(mean.index).index(r) + 1 for r in PLANTED_REGIONS[au] if r in mean.index)
    lead = mean.index[0]
    rows.append((au, f"{px}x{px}", planted, f"{lead} {mean.iloc[0]:.2f}", f"{mean.index[1]} {mean.iloc[1]:.2f}"))
print(
    pd.DataFrame(rows, columns=["unit", "map", "planted rank", "first", "second"])
    .pivot(index="unit", columns="map", values="planted rank")
    .to_string()
)
print()
print(pd.DataFrame(rows, columns=["unit", "map", "planted rank", "first", "second"]).to_string(index=False))
