"""Per-frame scoring: p(pain) for every crop of a store (or a folder of images).

Uses ``Trainer.predict``, so the same code runs on CPU, one GPU or several under DDP.
Writes one Parquet row per crop: session, camera, frame, time, p_pain, p_no_pain; the
file's metadata names the store it came from and the checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from painface.calibration import apply_temperature, run_temperature
from painface.nets import precheck_model

# the file format lives in predictions.py (torch-free); these names stay importable from here
from painface.predictions import PredictionError, _plain, file_digest, read_predictions, write_predictions  # noqa: F401
from painface.store import StoreError, check_version, select_index

PRED_COLUMNS = (
    "crop_id",
    "session_id",
    "mouse_id",
    "treatment",
    "phase",
    "camera",
    "frame",
    "time_s",
    "label",
    "p_pain",
    "p_no_pain",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: below this, an image cannot show the features the network was trained on
MIN_IMAGE_PX = 16


def folder_notes(files) -> list[str]:
    """One line each for what scoring a folder will silently change: non-square images are
    centre-cropped, greyscale ones repeated to three channels (the model saw colour crops)."""
    from PIL import Image

    non_square, grey = [], []
    for f in files:
        try:
            with Image.open(f) as im:  # reads the header only
                if im.width != im.height:
                    non_square.append(f.name)
                if im.mode in ("L", "LA", "I", "I;16", "1"):
                    grey.append(f.name)
        except Exception:  # unreadable: reported when it is scored
            continue
    notes = []
    if non_square:
        notes.append(f"note: {len(non_square)} image(s) are not square and are centre-cropped (e.g. {non_square[0]})")
    if grey:
        notes.append(
            f"note: {len(grey)} image(s) are greyscale; the model was trained on colour crops (e.g. {grey[0]})"
        )
    return notes


class FolderDataset(Dataset):
    """A plain folder of PNG/JPEG images (photographs, DeepLabCut labelled frames)."""

    def __init__(self, folder: str | Path, input_size: int):
        self.folder = Path(folder)
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise PredictionError(f"{self.folder}: no images (png/jpg) to score")
        self.size = input_size
        for note in folder_notes(self.files):
            print(note, file=sys.stderr)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path = self.files[i]
        data = path.read_bytes()
        # OpenCV decodes a truncated file as a partly grey image without a word: check the end marker
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            raise PredictionError(f"{path}: corrupt or unreadable image")
        ends = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND"}.get(path.suffix.lower())
        if ends and ends not in data[-16:]:
            raise PredictionError(f"{path}: truncated image (no end-of-image marker)")
        h, w = img.shape[:2]
        if min(h, w) < MIN_IMAGE_PX:
            raise PredictionError(
                f"{path}: {w}x{h} pixels is too small to hold a face (need at least {MIN_IMAGE_PX} px on each side)"
            )
        from painface.data import augment_and_resize, to_tensor

        s = min(h, w)  # centre square, as the face crops are square
        img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        return {
            "image": to_tensor(augment_and_resize(img, self.size, None)),
            "label": -1,
            "groups": torch.zeros(0, dtype=torch.long),
            "crop_id": self.files[i].name,
        }


def predict_trainer(accelerator="auto", devices=1, progress: bool = True):
    """A Trainer for ``predict``: no logger, no checkpoints."""
    import logging

    import lightning as L

    # "GPU available: False ..." and a logger tip before every prediction: noise for a command-line tool
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        logger=False,
        enable_progress_bar=progress,
        enable_checkpointing=False,
        enable_model_summary=False,
    )


def score(
    ckpt_path: str | Path,
    store: str | Path | None = None,
    out: str | Path | None = None,
    images: str | Path | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int = 1,
    query: str | None = None,
    temperature: float | str | None = None,
) -> pd.DataFrame:
    """Score a store (or a folder of ``images``) with a checkpoint; optionally write Parquet.

    ``temperature``: a float, or "auto" for the one fitted on the run's held-out mice
    (``calibration.json`` of the checkpoint's run), to calibrate p(pain).
    """
    if temperature == "auto":
        temperature = run_temperature(ckpt_path)
    if temperature is not None:
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise PredictionError(f"--temperature: expected a positive number or 'auto', got {temperature!r}") from None
        if not temperature > 0:
            raise PredictionError(f"--temperature: must be > 0, got {temperature!r}")
    # a bad checkpoint fails before Lightning is imported (painface.data and painface.models
    # import it: 6 s on 2 cores)
    hparams = precheck_model(ckpt_path)
    from painface.data import CropDataset
    from painface.models import load_classifier

    model = load_classifier(ckpt_path, hparams=hparams)
    model.eval()
    if images is not None:
        ds = FolderDataset(images, model.input_size)
        index = pd.DataFrame({"crop_id": [p.name for p in ds.files], "path": [str(p) for p in ds.files]})
        meta = {"source": str(Path(images).resolve())}
    else:
        smeta = check_version(store)
        try:
            index = select_index(store, query)
        except StoreError as exc:
            raise PredictionError(f"{exc}, nothing to score") from None
        from painface.nets import check_fit

        for note in check_fit(
            getattr(model, "provenance", {}), smeta.get("crop_size"), index["strain"].unique(), str(store)
        ):
            print(note, file=sys.stderr)
        ds = CropDataset(store, index, model.input_size, train=False)
        meta = {
            "store": str(Path(store).resolve()),
            "store_id": smeta.get("store_id", ""),
            "schema_version": smeta.get("schema_version"),
        }
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    batches = predict_trainer(accelerator, devices).predict(model, dataloaders=loader)
    p = torch.cat([b["p_pain"] for b in batches]).numpy().astype(float)
    if temperature is not None:
        p = apply_temperature(p, temperature)
    ids = [c for b in batches for c in b["crop_id"]]
    pred = pd.DataFrame({"crop_id": ids, "p_pain": p, "p_no_pain": 1.0 - p})
    keep = [c for c in PRED_COLUMNS if c in index.columns and c not in ("p_pain", "p_no_pain")] or ["crop_id"]
    extra = ["path"] if "path" in index.columns else []
    pred = index[keep + extra].merge(pred, on="crop_id", how="inner", validate="one_to_one")
    meta.update(
        {
            "temperature": temperature,
            "checkpoint": str(Path(ckpt_path).resolve()),
            "checkpoint_sha": file_digest(ckpt_path),
            "hparams": json.dumps(_plain(dict(model.hparams))),
        }
    )
    if out is not None:
        write_predictions(pred, out, meta)
    pred.attrs.update(meta)
    return pred


def predict_from_config(cfg) -> pd.DataFrame:
    """``predict.py``: ckpt_path=..., data.store=..., out=..."""
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True)
    if not c.get("ckpt_path"):
        from painface.config import ConfigError

        raise ConfigError("config key 'ckpt_path': predict.py needs ckpt_path=PATH")
    pred = score(
        c["ckpt_path"],
        store=(c.get("data") or {}).get("store"),
        images=c.get("images"),
        out=c["out"],
        batch_size=c.get("batch_size", 256),
        num_workers=c.get("num_workers", 0),
        temperature=c.get("temperature"),
        accelerator=c.get("accelerator", "auto"),
        devices=c.get("devices", 1),
        query=c.get("query"),
    )
    print(f"scored {len(pred)} crops -> {c['out']}")
    return pred


__all__ = ["score", "read_predictions", "write_predictions", "PredictionError", "FolderDataset"]
