"""Fill a manifest's keypoint column by running DeepLabCut on each video (way (b))."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from painface.dlc import analyze_video
from painface.manifest import read_manifest, write_manifest


def add_keypoints(manifest: str | Path, config: str | Path, out: str | Path, shuffle: int = 1,
                  analysis_height: int = 720, device: str = "cpu") -> Path:
    """Analyze every video lacking keypoints; write ``out/manifest.csv`` pointing at the results.

    Videos taller than ``analysis_height`` are analysed on a 16:9-preserving downscaled
    copy (the paper analysed 4K video at 1280x720), then scaled back.
    """
    df = read_manifest(manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(len(df)), desc="DeepLabCut", unit="video"):
        if not pd.isna(df.at[i, "keypoints"]):
            continue
        import cv2

        cap = cv2.VideoCapture(df.at[i, "video"])
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        cap.release()
        size = (int(round(w * analysis_height / h)), analysis_height) if h > analysis_height else None
        df.at[i, "keypoints"] = str(analyze_video(config, df.at[i, "video"], out, shuffle=shuffle, analysis_size=size,
                                                  device=device))
    target = out / "manifest.csv"
    write_manifest(df, target)
    return target
