"""The ``PainClassifier`` LightningModule, and loading it from a checkpoint.

The networks it wraps live in ``painface.nets`` (no Lightning there, so bad settings fail
fast); they are re-exported here, so ``painface.models.register_net`` and
``painface.models.PaperCNN`` keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchmetrics
from torch import nn
from torchmetrics import classification as C

from painface.nets import (  # noqa: F401 (re-exported: painface.models is the documented path)
    NETS,
    FeaturesHead,
    ModelError,
    PaperCNN,
    ResNet18,
    ResNet34,
    ResNet50,
    TorchvisionNet,
    build_net,
    check_fit,
    checkpoint_hparams,
    net_arguments,
    net_class,
    register_net,
)
from painface.scoring import is_pain


def _stage_metrics() -> torchmetrics.MetricCollection:
    return torchmetrics.MetricCollection(
        {
            "acc": C.BinaryAccuracy(),
            "sensitivity": C.BinaryRecall(),  # recall of pain
            "specificity": C.BinarySpecificity(),
            "auroc": C.BinaryAUROC(),
            "ece": C.BinaryCalibrationError(n_bins=10),
        }
    )


class PainClassifier(L.LightningModule):
    """p(pain) for a face crop. Takes config values only, so ``load_from_checkpoint(path)``
    needs no other arguments."""

    def __init__(
        self,
        net: dict | None = None,
        optimizer: Any = None,
        group_by: list[str] | None = None,
        init_from: str | None = None,
        label_smoothing: float = 0.0,
        metrics: dict | None = None,
    ):
        super().__init__()
        # ``metrics.group_by`` is how the config says it (conf/model/*.yaml); ``group_by`` is kept
        # so that checkpoints written before ``instantiate(cfg.model)`` still load
        group_by = list(group_by or (metrics or {}).get("group_by") or [])
        self.save_hyperparameters(ignore=["metrics"])  # records the group_by just computed
        net = dict(net or {"name": "paper"})
        self.input_size = int(net.pop("input_size", 96))
        # channels_last: on a 2-core CPU the paper CNN trained 1.2-1.35x and ran 2-2.8x faster
        # (max-pooling was slower than the convolutions in the default layout); p(pain) is
        # the same up to float rounding (benchmarks/memory_format.py)
        self.net = build_net(**net).to(memory_format=torch.channels_last)
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)  # paper step 5: cross entropy
        # ModuleDict keys may not shadow nn.Module attributes ("train"), hence the suffix
        self.metrics = nn.ModuleDict({f"{s}_": _stage_metrics() for s in ("train", "val", "test")})
        self.confmat = nn.ModuleDict({f"{s}_": C.BinaryConfusionMatrix() for s in ("train", "val", "test")})
        self.group_by = list(group_by or [])
        self._outputs: dict[str, list] = {"val": [], "test": []}
        self.last_confmat: dict[str, torch.Tensor] = {}
        if init_from:
            load_weights_into(self, init_from)

    def setup(self, stage: str):
        # Under ddp_spawn on CPU the spawned ranks share the tensors they were pickled with.
        # Lightning un-shares parameters and buffers, but metric states are neither, so
        # both ranks would add into one confusion matrix; reset gives each rank its own.
        for m in self.modules():
            if isinstance(m, torchmetrics.Metric):
                m.reset()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Everything needed to use the checkpoint correctly, beside the hyper-parameters."""
        checkpoint["painface"] = describe_training(self)

    def forward(self, x):
        return self.net(x)

    def predict_proba(self, x) -> torch.Tensor:
        """p(pain) per image (softmax, paper step 5)."""
        return torch.softmax(self(x), dim=1)[:, 1]

    def _step(self, batch, stage: str):
        logits = self(batch["image"])
        y = batch["label"]
        loss = self.loss(logits, y)
        prob = torch.softmax(logits.detach().float(), dim=1)[:, 1]
        self.metrics[stage + "_"].update(prob, y)
        self.confmat[stage + "_"].update(prob, y)  # probabilities, not logits (torchmetrics would sigmoid floats > 1)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=stage != "train",
        )
        if stage in self._outputs and self.group_by:
            self._outputs[stage].append((prob, y, batch["groups"]))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return {"crop_id": list(batch["crop_id"]), "p_pain": self.predict_proba(batch["image"]).float().cpu()}

    def _epoch_end(self, stage: str):
        values = self.metrics[stage + "_"].compute()
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, sync_dist=True, prog_bar=stage != "train")
        self.metrics[stage + "_"].reset()
        cm = self.confmat[stage + "_"].compute()  # synced across ranks by torchmetrics
        self.last_confmat[stage] = cm.detach().cpu()
        for (i, j), name in {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}.items():
            self.log(f"{stage}/confmat_{name}", cm[i, j].float(), sync_dist=False)
        self.confmat[stage + "_"].reset()
        if stage in self._outputs and self._outputs[stage]:
            self._log_groups(stage)
            self._outputs[stage].clear()

    def _log_groups(self, stage: str):
        """The stage's metrics per value of each ``group_by`` column (e.g. per sex)."""
        prob = torch.cat([o[0] for o in self._outputs[stage]])
        y = torch.cat([o[1] for o in self._outputs[stage]])
        groups = torch.cat([o[2] for o in self._outputs[stage]])
        if self.trainer.world_size > 1:
            prob, y, groups = (self.all_gather(t).reshape(-1, *t.shape[1:]) for t in (prob, y, groups))
        levels = getattr(self.trainer.datamodule, "group_levels", {}) if self.trainer.datamodule else {}
        for g, col in enumerate(self.group_by):
            names = levels.get(col, [])
            for code in torch.unique(groups[:, g]).tolist():
                mask = groups[:, g] == code
                name = names[code] if code < len(names) else str(code)
                p, t = prob[mask], y[mask]
                pred = is_pain(p).long()
                self.log(f"{stage}/acc_{col}={name}", (pred == t).float().mean(), sync_dist=False)
                for cell, (truth, guess) in {"tp": (1, 1), "fn": (1, 0), "fp": (0, 1), "tn": (0, 0)}.items():
                    self.log(
                        f"{stage}/confmat_{cell}_{col}={name}",
                        ((t == truth) & (pred == guess)).sum().float(),
                        sync_dist=False,
                    )
                if (t == 1).any():
                    self.log(f"{stage}/sensitivity_{col}={name}", (pred[t == 1] == 1).float().mean(), sync_dist=False)
                if (t == 0).any():
                    self.log(f"{stage}/specificity_{col}={name}", (pred[t == 0] == 0).float().mean(), sync_dist=False)

    def on_train_epoch_end(self):
        self._epoch_end("train")

    def on_validation_epoch_end(self):
        self._epoch_end("val")

    def on_test_epoch_end(self):
        self._epoch_end("test")

    def configure_optimizers(self):
        # paper step 5: Adam at 1e-3; the optimizer config is a partial finished here
        opt = self.hparams.optimizer
        if opt is None:
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        if callable(opt):
            return opt(params=self.parameters())
        from hydra.utils import instantiate

        built = instantiate(opt)
        return (
            built(params=self.parameters())
            if callable(built) and not isinstance(built, torch.optim.Optimizer)
            else built
        )


def load_weights_into(model: PainClassifier, ckpt_path: str | Path) -> None:
    """Fine-tuning start point (``model.init_from``): copy a checkpoint's network weights."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ModelError(f"model.init_from: checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = {k[len("net.") :]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("net.")}
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1] if len(str(exc).splitlines()) > 1 else str(exc)
        raise ModelError(f"{path}: checkpoint is of another architecture ({first.strip()})") from None


def describe_training(model: PainClassifier) -> dict:
    """The checkpoint's provenance: package version, input and normalisation, and the data it
    was trained on (store crop size and schema, strains, mice, sessions)."""
    from painface import __version__
    from painface.data import MEAN, STD

    out = {
        "painface_version": __version__,
        "input_size": model.input_size,
        "normalisation": {"mean": [float(v) for v in MEAN], "std": [float(v) for v in STD]},
    }
    dm = getattr(getattr(model, "_trainer", None), "datamodule", None)
    index = getattr(dm, "train_index", None)
    if dm is not None and index is not None:
        from painface.store import store_meta

        meta = store_meta(dm.store)
        out["training_data"] = {
            "store": str(dm.store),
            "store_id": meta.get("store_id"),
            "crop_size": meta.get("crop_size"),
            "schema_version": meta.get("schema_version"),
            "strains": sorted(map(str, index["strain"].unique())),
            "mice": sorted(map(str, index["mouse_id"].unique())),
            "sessions": int(index["session_id"].nunique()),
            "crops": int(len(index)),
            "labels": {str(k): int(v) for k, v in index["label"].value_counts().items()},
        }
    return out


def load_classifier(ckpt_path: str | Path, map_location="cpu", hparams: dict | None = None) -> PainClassifier:
    """A Lightning checkpoint, or a folder exported by ``painface model export`` (no pickle).

    ``hparams``: what ``checkpoint_hparams`` already returned for this file (callers check
    the checkpoint before importing Lightning, and need not read it twice)."""
    path = Path(ckpt_path)
    if path.is_dir():
        from painface.bundle import load_bundle

        return load_bundle(path)
    hp = hparams or checkpoint_hparams(path)
    # checkpoints written before the net registry carried every net key for every net
    allowed = net_arguments(hp["net"]["name"])
    net = {k: v for k, v in hp["net"].items() if k in allowed or k in ("name", "input_size")}
    try:
        model = PainClassifier.load_from_checkpoint(path, map_location=map_location, weights_only=False, net=net)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a painface PainClassifier checkpoint ({str(exc).splitlines()[0]})") from None
    model.provenance = hp.get("painface", {})
    return model
