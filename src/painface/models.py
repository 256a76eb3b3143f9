"""Networks (the paper's CNN, a torchvision backbone) and the ``PainClassifier`` LightningModule.

Every network splits ``forward_features`` (convolutions) from ``head`` (pooling and
fully connected layers), as timm does, so Grad-CAM's target layer and the features
for embeddings are one attribute away (``net.target_layer``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchmetrics
from torch import nn
from torchmetrics import classification as C

from painface.errors import PainfaceError
from painface.scoring import is_pain


class ModelError(PainfaceError):
    pass


NETS: dict[str, type[nn.Module]] = {}


def register_net(name: str):
    """Make a network selectable as ``model.net.name=NAME`` (as timm's ``register_model``).

    The class takes ``num_classes`` and its own settings as keyword arguments (no ``**kwargs``:
    the config's keys are checked against the signature) and exposes ``forward_features``,
    ``head``, ``blocks`` and ``target_layer``.
    """

    def add(cls):
        if name in NETS:
            raise ModelError(f"model.net.name: '{name}' is registered twice ({NETS[name].__name__}, {cls.__name__})")
        NETS[name] = cls
        return cls

    return add


@register_net("paper")
class PaperCNN(nn.Module):
    """Paper step 5: six blocks of conv 3x3 (stride 1) + ReLU + BatchNorm + MaxPool 2x2,
    then global average pooling and three fully connected blocks.

    Table S1 of the paper (exact widths and input size) is not available; the widths
    and input size are config values (see conf/model/paper.yaml).
    """

    def __init__(
        self,
        channels=(16, 32, 64, 64, 128, 128),
        fc=(128, 64),
        num_classes: int = 2,
        in_channels: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(channels) != 6:
            raise ModelError(f"model.net.channels: the paper's CNN has six conv blocks, got {len(channels)} widths")
        blocks, c_in = [], in_channels
        for c in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 3, stride=1, padding=1),
                    nn.ReLU(inplace=True),
                    nn.BatchNorm2d(c),
                    nn.MaxPool2d(2, 2),
                )
            )
            c_in = c
        self.features = nn.Sequential(*blocks)
        f1, f2 = fc
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c_in, f1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(f1, f2),
            nn.ReLU(inplace=True),
            nn.Linear(f2, num_classes),
        )

    @property
    def blocks(self) -> list[nn.Module]:
        """Each conv block's activations after ReLU+BN, before pooling: Grad-CAM's choices.
        Block k's map is input_size / 2**(k-1) pixels wide (96 px: 96, 48, ..., 3)."""
        return [b[2] for b in self.features]

    @property
    def target_layer(self) -> nn.Module:
        # Grad-CAM on the last conv layer (paper step 8)
        return self.blocks[-1]

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x):
        return self.head(self.forward_features(x))


class TorchvisionNet(nn.Module):
    """A torchvision ResNet, never downloading weights; ``weights`` loads a local file."""

    arch = "resnet18"

    def __init__(self, num_classes: int = 2, weights: str | None = None, dropout: float = 0.0):
        super().__init__()
        import torchvision

        name = self.arch
        base = getattr(torchvision.models, name)(weights=None)
        if weights:
            path = Path(weights)
            if not path.is_file():
                raise ModelError(f"model.net.weights: file not found: {path}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.get("state_dict", state).items() if not k.startswith("fc.")}
            missing, unexpected = base.load_state_dict(state, strict=False)
            if unexpected or [m for m in missing if not m.startswith("fc.")]:
                raise ModelError(
                    f"{path}: weights do not fit {name} (missing {missing[:3]}, unexpected {unexpected[:3]})"
                )
        self.features = nn.Sequential(
            base.conv1, base.bn1, base.relu, base.maxpool, base.layer1, base.layer2, base.layer3, base.layer4
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(base.fc.in_features, num_classes)
        )

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.features[4:])  # layer1 .. layer4

    @property
    def target_layer(self) -> nn.Module:
        return self.blocks[-1]

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x):
        return self.head(self.forward_features(x))


@register_net("resnet18")
class ResNet18(TorchvisionNet):
    arch = "resnet18"


@register_net("resnet34")
class ResNet34(TorchvisionNet):
    arch = "resnet34"


@register_net("resnet50")
class ResNet50(TorchvisionNet):
    arch = "resnet50"


def net_class(name: str) -> type[nn.Module]:
    """A registered name (``paper``), or the dotted path of a class in the user's own module
    (``my_lab.nets.TinyNet``), so a lab's network needs no change to painface."""
    if name in NETS:
        return NETS[name]
    if "." in name:
        import importlib

        module, _, attr = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"model.net.name: cannot import '{name}' ({exc})") from None
    raise ModelError(f"model.net.name: unknown model '{name}' (known: {', '.join(sorted(NETS))})")


def net_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments the network ``name`` accepts."""
    params = inspect.signature(net_class(name).__init__).parameters
    return {k: p for k, p in params.items() if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_net(name: str = "paper", **kw) -> nn.Module:
    """The registered network ``name``; an argument it does not take fails naming the key."""
    allowed = net_arguments(name)
    for key in kw:
        if key not in allowed:
            raise ModelError(
                f"model.net.{key}: the '{name}' network has no setting '{key}' (it takes: {', '.join(allowed)})"
            )
    return net_class(name)(**kw)


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


def checkpoint_hparams(ckpt_path: str | Path) -> dict:
    """The saved hyper-parameters of a painface checkpoint, checked to describe its network.

    A file that is not a checkpoint, or one without the network settings (it would be
    rebuilt with default sizes and give plausible but wrong probabilities), fails here.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise ModelError(f"ckpt_path: checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty file, not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and torch raise many kinds for a damaged file
        raise ModelError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelError(f"{path}: not a Lightning checkpoint (no state_dict)")
    hp = ckpt.get("hyper_parameters") or {}
    net = hp.get("net") or {}
    missing = [k for k in ("name", "input_size") if k not in net]
    if missing:
        raise ModelError(
            f"{path}: the checkpoint does not record its network's {' and '.join(missing)} "
            f"(hyper_parameters.net); it cannot be rebuilt safely"
        )
    return {**hp, "painface": ckpt.get("painface", {})}


def check_fit(provenance: dict, crop_size: int | None = None, strains=None, source: str = "") -> list[str]:
    """Where the data a model is applied to differ from what it was trained on: one line each."""
    trained = (provenance or {}).get("training_data") or {}
    notes = []
    if crop_size is not None and trained.get("crop_size") not in (None, crop_size):
        notes.append(
            f"note: {source} holds {crop_size} px crops, the model was trained on {trained['crop_size']} px crops"
        )
    new = sorted(set(map(str, [] if strains is None else strains)) - set(trained.get("strains") or []))
    if trained.get("strains") and new:
        notes.append(
            f"note: {source} has strain(s) {', '.join(new)} the model never saw (trained on "
            f"{', '.join(trained['strains'])}); the paper's BALB/c model fails on C57BL/6"
        )
    return notes


def load_classifier(ckpt_path: str | Path, map_location="cpu") -> PainClassifier:
    """A Lightning checkpoint, or a folder exported by ``painface model export`` (no pickle)."""
    path = Path(ckpt_path)
    if path.is_dir():
        from painface.bundle import load_bundle

        return load_bundle(path)
    hp = checkpoint_hparams(path)
    # checkpoints written before the net registry carried every net key for every net
    allowed = net_arguments(hp["net"]["name"])
    net = {k: v for k, v in hp["net"].items() if k in allowed or k in ("name", "input_size")}
    try:
        model = PainClassifier.load_from_checkpoint(path, map_location=map_location, weights_only=False, net=net)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a painface PainClassifier checkpoint ({str(exc).splitlines()[0]})") from None
    model.provenance = hp.get("painface", {})
    return model
