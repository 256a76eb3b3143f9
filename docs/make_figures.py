"""Regenerate the README's example figures from a trained checkpoint (e.g. the demo's).

    python docs/make_figures.py --ckpt-path logs/train/runs/<date>/checkpoints/<best>.ckpt [--work /tmp/figs]

Runs a scaled-down synthetic AC dose-response study end to end with that checkpoint,
then Grad-CAM, the embedding/pairs/region analysis and an MGS round trip (the sheet is
filled from the synthetic ground truth, as a stand-in for a blind human scorer), and
copies the figures into docs/.
"""

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from painface.interpret import explain, interpret_store
from painface.mgs import MGS_UNITS, compare, sample
from painface.study_run import run_study

DOCS = Path(__file__).resolve().parent
p = argparse.ArgumentParser()
p.add_argument("--ckpt-path", required=True)
p.add_argument("--work", default="/tmp/painface_figures")
p.add_argument("--mice-per-group", type=int, default=5)
p.add_argument("--time-scale", type=float, default=0.1)
p.add_argument(
    "--signal", type=float, default=2.0, help="planted expression scale; the demo checkpoint is trained at 2.0"
)
args = p.parse_args()
work = Path(args.work)

study = work / "ac_study"
run_study(
    DOCS.parent / "experiments/ac_dose_response.yaml",
    args.ckpt_path,
    study,
    mice_per_group=args.mice_per_group,
    time_scale=args.time_scale,
    fps=10,
    signal=args.signal,
)
shutil.copy(study / "results/time_course.png", DOCS / "ac_time_course.png")
shutil.copy(study / "results/window_average.png", DOCS / "ac_window_average.png")
store = study / "store"

# three-panel Grad-CAM (original, heatmap, overlay) for pain and no-pain crops
panels = []
for query in ("label == 'pain'", "label == 'no_pain'"):
    out = explain(args.ckpt_path, work / f"explain_{query.split()[-1].strip(chr(39))}", store=store, n=3, query=query)
    panels += [cv2.imread(str(f)) for f in sorted((out / "panels").glob("*.png"))]
cv2.imwrite(str(DOCS / "gradcam_panels.png"), np.vstack(panels))

interp = interpret_store(args.ckpt_path, store, work / "interpret", n=400, embedding="umap")
for name in ("embedding.png", "pairs.png", "regions.png", "regions_random.png", "regions_contrast.png"):
    shutil.copy(interp / name, DOCS / f"interpret_{name}")

# MGS round trip, the sheet filled from the planted intensity (round(2 * intensity) per unit)
kit = sample(store, work / "mgs_kit", n=200, seed=0)
sheet = pd.read_csv(kit / "scoring_sheet.csv")
key = pd.read_csv(kit / "KEY_do_not_open_until_scored.csv").set_index("image")["crop_id"]
truth = pd.concat(pd.read_parquet(f) for f in (study / "videos").glob("*_truth.parquet"))
truth = truth.drop_duplicates(["session_id", "frame"]).set_index(["session_id", "frame"])["intensity"]
rng = np.random.default_rng(0)
for i, image in enumerate(sheet["image"]):
    session, _, frame = key[image].split("/")
    for unit in MGS_UNITS:  # a scorer who sees the planted intensity, with some disagreement
        sheet.loc[i, unit] = int(np.clip(round(2 * truth[(session, int(frame))] + rng.normal(0, 0.4)), 0, 2))
sheet.to_csv(kit / "filled.csv", index=False)
compare(
    kit / "filled.csv",
    kit / "KEY_do_not_open_until_scored.csv",
    work / "mgs",
    predictions=study / "predictions.parquet",
)
shutil.copy(work / "mgs/mgs_agreement.png", DOCS / "mgs_agreement.png")
print(f"figures written to {DOCS}")
