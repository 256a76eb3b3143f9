"""Callbacks that render and log; the LightningModule owns the metrics.

Each callback writes to every logger present: an image file beside a CSV logger,
``add_image`` for TensorBoard, ``wandb.Image`` for W&B. Only rank 0 logs.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from painface.errors import PainfaceError
from painface.gradcam import gradcam_maps, overlay, tensor_to_rgb01


class CallbackError(PainfaceError):
    pass


def log_image(trainer: L.Trainer, key: str, image_rgb: np.ndarray, extra: dict | None = None) -> list[Path]:
    """Send one RGB uint8 image to each logger in the way that logger understands."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    written = []
    step = trainer.current_epoch
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image_rgb, step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log({key: wandb.Image(image_rgb), "epoch": step})
        elif isinstance(logger, CSVLogger):
            out = Path(logger.log_dir) / "images" / f"{key.replace('/', '_')}_epoch{step:03d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            _save_png(out, image_rgb)
            if extra is not None:
                out.with_suffix(".json").write_text(json.dumps(extra, indent=2))
            written.append(out)
    return written


def _save_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    tmp = path.with_name(path.stem + ".tmp.png")
    cv2.imwrite(str(tmp), rgb[..., ::-1])
    tmp.replace(path)


def _require_logger(trainer, name):
    if not trainer.loggers:
        raise CallbackError(f"callbacks.{name} needs a logger (set logger=default, logger=csv or logger=wandb)")


def confusion_matrix_figure(cm: np.ndarray, title: str) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=100)
    ax.imshow(cm, cmap="Blues")
    names = ["no pain", "pain"]
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("weak label")
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                color="black" if cm[i, j] < cm.max() / 2 else "white",
            )
    ax.set_title(title)
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


class ConfusionMatrixCallback(L.Callback):
    """Logs the confusion matrix (image + numbers) every ``every_n_epochs`` and after testing."""

    def __init__(self, every_n_epochs: int = 1):
        self.every_n_epochs = every_n_epochs

    def setup(self, trainer, pl_module, stage=None):
        _require_logger(trainer, "confusion_matrix")

    def _log(self, trainer, pl_module, stage):
        cm = pl_module.last_confmat.get(stage)
        if cm is None or not trainer.is_global_zero:
            return
        cm = cm.numpy()
        numbers = {
            "tn": int(cm[0, 0]),
            "fp": int(cm[0, 1]),
            "fn": int(cm[1, 0]),
            "tp": int(cm[1, 1]),
            "epoch": trainer.current_epoch,
        }
        log_image(
            trainer,
            f"{stage}/confusion_matrix",
            confusion_matrix_figure(cm, f"{stage}, epoch {trainer.current_epoch}"),
            numbers,
        )

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._log(trainer, pl_module, "val")

    def on_test_end(self, trainer, pl_module):
        self._log(trainer, pl_module, "test")


class GradCamCallback(L.Callback):
    """Grad-CAM over a fixed set of validation crops of each class, every N epochs."""

    def __init__(self, every_n_epochs: int = 1, n_per_class: int = 4, method: str = "gradcam"):
        self.every_n_epochs, self.n_per_class, self.method = every_n_epochs, n_per_class, method
        self.batch = None

    def setup(self, trainer, pl_module, stage=None):
        _require_logger(trainer, "gradcam")
        if getattr(pl_module.net, "target_layer", None) is None:
            raise CallbackError("callbacks.gradcam: the model has no conv target layer")

    def on_fit_start(self, trainer, pl_module):
        dm = trainer.datamodule
        ds = dm._dataset(dm.val_index, train=False)
        picks = []
        for label in (0, 1):
            where = np.flatnonzero(ds.labels == label)
            rng = np.random.default_rng(0)
            picks += list(rng.choice(where, size=min(self.n_per_class, len(where)), replace=False))
        items = [ds[int(i)] for i in picks]
        self.batch = (torch.stack([it["image"] for it in items]), [it["label"] for it in items])

    @rank_zero_only
    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.batch is None or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        images, labels = self.batch
        images = images.to(pl_module.device)
        with torch.no_grad():
            probs = pl_module.predict_proba(images).cpu().numpy()
        maps = gradcam_maps(pl_module.net, images, targets=[1] * len(images), method=self.method)
        self.last_maps = maps
        tiles = []
        for img, cam, lab, p in zip(images, maps, labels, probs):
            rgb = tensor_to_rgb01(img)
            tiles.append(np.vstack([(rgb * 255).astype(np.uint8), overlay(rgb, cam)]))
            _caption(tiles[-1], f"{'pain' if lab else 'none'} {p:.2f}")
        log_image(trainer, "val/gradcam", np.hstack(tiles))


def _caption(tile: np.ndarray, text: str) -> None:
    import cv2

    cv2.putText(tile, text, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 0), 1, cv2.LINE_AA)


class RunSettingsLogger(L.Callback):
    """Logs the run's seed and trainer settings beside the model's and datamodule's hparams.

    It logs from ``setup``, inside the training processes: logging before ``ddp_spawn``
    starts them leaves the CSV logger's state inconsistent.
    """

    def __init__(self, settings: dict):
        self.settings = settings

    def setup(self, trainer, pl_module, stage):
        for lg in trainer.loggers:
            lg.log_hyperparams(self.settings)
