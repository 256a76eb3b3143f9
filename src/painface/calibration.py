"""Calibration beyond the paper: temperature scaling fitted on held-out mice, the expected
calibration error, and the reliability diagram. Torch is imported only where a model runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from painface.errors import PainfaceError
from painface.figures import PALETTE, pyplot, save_figure
from painface.files import write_json


class CalibrationError(PainfaceError):
    pass


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017) on held-out mice: the T that minimises NLL."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, float)
    labels = np.asarray(labels, int)

    def nll(log_t):
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(labels)), labels].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def apply_temperature(p_pain: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale p(pain) by a fitted temperature: sigmoid(logit(p) / T)."""
    if not temperature > 0:
        raise CalibrationError(f"temperature must be positive, got {temperature}")
    p = np.clip(np.asarray(p_pain, float), 1e-7, 1 - 1e-7)
    return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE of p(pain) against binary labels: over equal-width bins of p, the share-weighted
    |observed pain fraction - mean p(pain)| (torchmetrics' binary calibration error, the
    same metric the training logs as ``test/ece``)."""
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    p, y = torch.as_tensor(np.asarray(p, float)), torch.as_tensor(np.asarray(y, int))
    return float(binary_calibration_error(p, y, n_bins=n_bins))


def run_temperature(ckpt_path: str | Path) -> float:
    """The temperature that training fitted on held-out mice, from <run>/calibration.json."""
    path = Path(ckpt_path).resolve().parent.parent / "calibration.json"
    if not path.is_file():
        raise CalibrationError(
            f"{ckpt_path}: temperature 'auto' needs {path} (written when train.py tests on held-out mice)"
        )
    return float(json.loads(path.read_text())["temperature"])


def reliability_figure(p: np.ndarray, y: np.ndarray, out: Path, n_bins: int = 10, title: str = "") -> Path:
    """Reliability diagram: observed pain frequency against predicted p(pain)."""
    plt = pyplot()
    bins = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(p, bins) - 1, 0, n_bins - 1)
    conf = np.array([p[which == b].mean() if (which == b).any() else np.nan for b in range(n_bins)])
    freq = np.array([y[which == b].mean() if (which == b).any() else np.nan for b in range(n_bins)])
    count = np.bincount(which, minlength=n_bins)
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.plot(conf, freq, "o-", color=PALETTE[2])
    for c, f, n in zip(conf, freq, count):
        if n:
            ax.annotate(str(n), (c, f), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_xlabel("predicted p(pain)")
    ax.set_ylabel("observed fraction pain")
    ax.set_title(title)
    return save_figure(fig, out)


def calibration_report(trainer, model, dm, out: Path) -> dict:
    """Reliability diagram and temperature scaling on the held-out mice (beyond the paper)."""
    from painface.data import LABELS
    from painface.predict import predict_trainer

    if not trainer.is_global_zero:
        return {}
    # one device, in this process: under DDP each rank would see only its shard, and
    # under ddp_spawn this process's DataModule was never set up
    dm.setup("fit")
    single = predict_trainer(
        "gpu" if trainer.strategy.root_device.type == "cuda" else "cpu",
        1,
        progress=trainer.progress_bar_callback is not None,
    )
    batches = single.predict(model, dataloaders=dm.val_dataloader())
    if not batches:
        return {}
    p = np.concatenate([b["p_pain"].numpy() for b in batches]).clip(1e-6, 1 - 1e-6)
    ids = [c for b in batches for c in b["crop_id"]]
    y = dm.val_index.set_index("crop_id").loc[ids, "label"].map(LABELS).to_numpy()
    logit = np.log(p / (1 - p))
    t = fit_temperature(np.column_stack([np.zeros_like(logit), logit]), y)
    p_t = apply_temperature(p, t)
    result = {
        "temperature": t,
        "ece": expected_calibration_error(p, y),
        "ece_temperature_scaled": expected_calibration_error(p_t, y),
        "n_crops": int(len(y)),
        "held_out_mice": sorted(dm.val_index["mouse_id"].unique().tolist()),
    }
    out.mkdir(parents=True, exist_ok=True)
    reliability_figure(p, y, out / "reliability.png", title=f"held-out mice, ECE {result['ece']:.3f}")
    write_json(out / "calibration.json", result)
    return result
